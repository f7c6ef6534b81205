"""Property tests (hypothesis): random and hostile formulas and variable batches never crash, never run Python,
and always give either a number or a clear FormulaError/VariableError."""

import math

from hypothesis import given, settings, strategies as st

from chargemanager.core.formula import FormulaError, UnknownName, compile_formula
from chargemanager.core.variables import VariableError, VariableTable

ATOMS = st.sampled_from(["0", "1", "2.5", "AVAIL", "TARIF", "M1.power_w", "1e308", "-1", "NOPE", ".5"])
OPS = st.sampled_from(["+", "-", "*", "/", "%", "^", "&", "|", "==", "!=", "<", "<=", ">", ">=", "&&", "||"])
FUNCS = st.sampled_from(["min", "max", "abs", "clamp", "round", "floor", "ceil", "sqrt", "exists", "nope"])


@st.composite
def expressions(draw, depth=0):
    if depth > 4 or draw(st.booleans()):
        return draw(ATOMS)
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return "%s %s %s" % (draw(expressions(depth + 1)), draw(OPS), draw(expressions(depth + 1)))
    if kind == 1:
        return "(%s)" % draw(expressions(depth + 1))
    if kind == 2:
        return "%s ? %s : %s" % tuple(draw(expressions(depth + 1)) for _ in range(3))
    if kind == 3:
        return "%s%s" % (draw(st.sampled_from(["-", "!", "+"])), draw(expressions(depth + 1)))
    args = ", ".join(draw(expressions(depth + 1)) for _ in range(draw(st.integers(0, 3))))
    return "%s(%s)" % (draw(FUNCS), args)


def lookup(name):
    values = {"AVAIL": 50, "TARIF": 1, "M1.power_w": 4200}
    if name in values:
        return values[name]
    raise UnknownName(name)


def check(text):
    try:
        formula = compile_formula(text)
    except FormulaError as exc:
        assert exc.position is not None and str(exc).startswith("at position")
        return
    try:
        result = formula.evaluate(lookup)
    except FormulaError as exc:
        assert exc.message
        return
    assert isinstance(result, (int, float)) and not isinstance(result, bool)
    assert not (isinstance(result, float) and (math.isinf(result) or math.isnan(result)))


@settings(max_examples=600, deadline=None)
@given(expressions())
def test_generated_expressions_give_a_number_or_a_clear_error(text):
    check(text)


@settings(max_examples=600, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_a_number_or_a_clear_error(text):
    check(text)


HOSTILE = ["__import__('os').system('true')", "().__class__.__bases__", "open('/etc/passwd')",
           "(" * 5000, "-" * 5000 + "1", "1" + "+1" * 600, "9^9^9^9^9", "exists(" + "a" * 100 + ")",
           "1 ? " * 100 + "1" + " : 1" * 100, "\x00", "\u00e4 + 1", "1e999999", "AVAIL.__dict__"]


def test_hostile_expressions():
    for text in HOSTILE:
        check(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=12), st.one_of(st.integers(), st.floats(), st.text(max_size=30),
                                                          st.none(), st.booleans())), max_size=8))
def test_random_batches_are_all_or_nothing(entries):
    table = VariableTable()
    table.set("KEEP", 1)
    before = table.stored_entries()
    try:
        table.set_batch(entries, clear=True)
    except VariableError as exc:
        assert exc.message
        assert table.stored_entries() == before
        return
    table.evaluate(lookup)
    for var in table.variables():
        assert (var.value is None) == (var.error is not None)
