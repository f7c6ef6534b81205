"""Formula engine (SPEC §2). Runs under CPython (pytest) and MicroPython (tools/run_micropython_tests.py)."""

from chargemanager.core.formula import FormulaError, UnknownName, compile_formula, MAX_DEPTH, MAX_LENGTH

NAMES = {"AVAIL": 50, "TARIF": 1, "M1.current_l1_ma": 12000, "E2.power_w": 7400, "IN1": 1, "ZERO": 0}


def lookup(name):
    if name in NAMES:
        return NAMES[name]
    raise UnknownName(name)


def value(text):
    return compile_formula(text).evaluate(lookup)


def error_of(text, evaluate=True):
    try:
        formula = compile_formula(text)
        if evaluate:
            formula.evaluate(lookup)
    except FormulaError as exc:
        return exc
    raise AssertionError("no error for %r" % text)


# (formula, expected value): one row per operator or rule
CASES = [
    ("1.5", 1.5),                        # decimal constant
    ("55000 * AVAIL / 100", 27500),      # the seed's house connection example
    ("2 + 3 * 4", 14),                   # * before +
    ("(2 + 3) * 4", 20),                 # parentheses
    ("10 - 4 - 3", 3),                   # left associative
    ("7 % 3", 1),                        # modulo
    ("2 ^ 3 ^ 2", 512),                  # ^ is right associative
    ("-2 ^ 2", -4),                      # unary minus binds weaker than ^
    ("2 ^ -1", 0.5),                     # negative exponent
    ("6 & 3", 2),                        # bitwise and
    ("6 | 3", 7),                        # bitwise or
    ("1 == 1", 1), ("1 != 1", 0), ("1 < 2", 1), ("2 <= 2", 1), ("1 > 2", 0), ("3 >= 4", 0),
    ("!0", 1), ("!5", 0),                # logical not
    ("1 && 0", 0), ("1 || 0", 1),        # logical and/or give 1/0
    ("0 && (1 / 0)", 0),                 # && short-circuits
    ("1 || (1 / 0)", 1),                 # || short-circuits
    ("TARIF == 1 ? 11000 : 3700", 11000),  # conditional
    ("0 ? 1 : 0 ? 2 : 3", 3),            # nested conditional, right associative
    ("IN1 ? 25000 : 55000", 25000),      # ripple control input in a limit
    ("min(3, 1, 2)", 1), ("max(3, 1, 2)", 3), ("abs(-4)", 4),
    ("clamp(20, 6, 16)", 16), ("clamp(2, 6, 16)", 6),
    ("round(2.5)", 3), ("round(2.567, 2)", 2.57), ("floor(2.7)", 2), ("ceil(2.1)", 3), ("sqrt(16)", 4),
    ("M1.current_l1_ma / 1000", 12),     # dotted device value
    ("E2.power_w + 0", 7400),
    ("exists(AVAIL)", 1), ("exists(NOPE)", 0), ("exists(M1.current_l1_ma)", 1),
    ("1e3 + .5", 1000.5),                # exponent and leading dot
    ("  1 +\n 2 ", 3),                   # whitespace and newlines
]


def test_values():
    for text, expected in CASES:
        got = value(text)
        assert abs(got - expected) < 1e-9, (text, got, expected)


def test_names_are_collected_once():
    formula = compile_formula("AVAIL + AVAIL * M1.current_l1_ma + min(TARIF, 1)")
    assert formula.names == ["AVAIL", "M1.current_l1_ma", "TARIF"], formula.names


def test_constant_is_known():
    assert compile_formula("42").constant == 42
    assert compile_formula("AVAIL").constant is None


# (formula, 1-based position of the problem): syntax errors name where
SYNTAX = [
    ("1 +", 4),           # end of formula after an operator
    ("(1 + 2", 7),        # missing )
    ("1 2", 3),           # two numbers in a row
    ("1 + * 2", 5),       # operator where an operand belongs
    ("AVAIL $ 2", 7),     # unknown character
    ("foo(1)", 1),        # unknown function
    ("min()", 1),         # too few arguments
    ("abs(1, 2)", 1),     # too many arguments
    ("1.2.3", 1),         # malformed number
    ("2e", 2),            # malformed exponent
    ("exists(1)", 8),     # exists takes a name
    ("1 ? 2", 6),         # conditional without :
    (")", 1),             # stray )
    ("", 1),              # empty
]


def test_syntax_errors_name_the_position():
    for text, position in SYNTAX:
        exc = error_of(text, evaluate=False)
        assert exc.position == position, (text, exc.position, str(exc))
        if position is not None:
            assert ("position %d" % position) in str(exc), str(exc)


def test_evaluation_errors():
    assert "division by zero" in str(error_of("1 / ZERO"))
    assert "modulo by zero" in str(error_of("1 % 0"))
    assert "unknown name 'NOPE'" in str(error_of("NOPE + 1"))
    assert "negative" in str(error_of("sqrt(-1)"))
    assert "range" in str(error_of("10 ^ 400"))
    assert error_of("1 / 0").position is None


def test_bounds():
    assert "longer" in str(error_of("1" + "+1" * (MAX_LENGTH // 2), evaluate=False))
    deep = "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1)
    assert "nested deeper" in str(error_of(deep, evaluate=False))
    deep_unary = "-" * (MAX_DEPTH + 1) + "1"
    assert "nested deeper" in str(error_of(deep_unary, evaluate=False))
    ok = "(" * (MAX_DEPTH - 2) + "1" + ")" * (MAX_DEPTH - 2)
    assert value(ok) == 1


def test_hostile_power_towers_stay_bounded():
    assert "range" in str(error_of("9 ^ 9 ^ 9 ^ 9"))
    assert "range" in str(error_of("floor(10 ^ 301)"))


def test_no_python_is_executed():
    for text in ("__import__('os')", "open('x')", "AVAIL.__class__", "[1]", "lambda: 1", "'a'"):
        try:
            value(text)
        except FormulaError:
            continue
        raise AssertionError("accepted %r" % text)
