"""Variables (SPEC §2): batches, dependency order, errors per variable. Runs under CPython and MicroPython."""

from chargemanager.core.formula import UnknownName
from chargemanager.core.variables import MAX_NAME_LENGTH, VariableError, VariableTable, validate_name


def table(entries):
    t = VariableTable()
    t.set_batch(entries)
    t.evaluate()
    return t


def error_of(fn):
    try:
        fn()
    except VariableError as exc:
        return exc
    raise AssertionError("no VariableError")


def test_dependency_order_regardless_of_definition_order():
    t = table([("P", "55000 * AVAIL / 100"), ("AVAIL", 50), ("Q", "P / 2")])
    assert t.get("P").value == 27500
    assert t.get("Q").value == 13750


def test_names_are_case_insensitive_and_keep_latest_spelling():
    t = table([("tarif", 1)])
    t.set("TARIF", 0)
    t.evaluate()
    assert len(t) == 1
    assert t.get("Tarif").value == 0
    assert t.get("tarif").name == "TARIF"
    t.set("X", "tarif + 1")
    t.evaluate()
    assert t.get("X").value == 1


def test_cycle_gives_errors_not_a_crash():
    t = table([("A", "B + 1"), ("B", "A + 1"), ("C", "A * 2"), ("D", 5)])
    assert "cycle" in t.get("A").error and "cycle" in t.get("B").error
    assert "'A' has an error" in t.get("C").error
    assert t.get("D").value == 5


def test_self_reference_is_a_cycle():
    t = table([("A", "A + 1")])
    assert t.get("A").error == "cycle: A -> A"


def test_unknown_name_and_division_by_zero_are_per_variable():
    t = table([("A", "NOPE + 1"), ("B", "1 / 0"), ("C", 3)])
    assert "unknown name 'NOPE'" in t.get("A").error
    assert t.get("B").error == "division by zero"
    assert t.get("C").value == 3 and t.get("C").error is None


def test_external_lookup_for_device_values():
    t = VariableTable()
    t.set("LOAD", "M1.power_w / 1000")

    def lookup(name):
        if name == "M1.power_w":
            return 4200
        raise UnknownName(name)

    t.evaluate(lookup)
    assert t.get("LOAD").value == 4.2


def test_batch_is_all_or_nothing():
    t = table([("A", 1)])
    exc = error_of(lambda: t.set_batch([("B", 2), ("C", "1 +"), ("D", 4)], clear=True))
    assert exc.index == 1 and exc.position == 4, (exc.index, exc.position)
    assert t.get("A").value == 1 and t.get("B") is None
    exc = error_of(lambda: t.set_batch([("ok", 1), ("9bad", 2)]))
    assert exc.index == 1 and t.get("ok") is None


def test_clear_then_set():
    t = table([("A", 1), ("B", 2)])
    t.set_batch([("C", 3)], clear=True)
    assert t.get("A") is None and t.get("C") is not None


def test_string_numbers_become_numbers():
    t = table([("A", "123"), ("B", "-1.5"), ("C", " 7 ")])
    assert t.get("A").expr == 123 and t.get("B").expr == -1.5 and t.get("C").expr == 7


def test_name_validation():
    for bad in ("", "1A", "A-B", "A.B", "A B", "min", "x" * (MAX_NAME_LENGTH + 1), None, 5):
        error_of(lambda: validate_name(bad))
    for good in ("AVAIL", "_x", "tarif2", "a" * MAX_NAME_LENGTH):
        assert validate_name(good) == good


def test_bad_expressions():
    for bad in (None, True, [1], {"a": 1}, "", "1 +"):
        error_of(lambda: VariableTable().set("A", bad))


def test_temporary_writes_do_not_reach_the_stored_layer():
    t = table([("A", 1)])
    t.set("A", 2, persist=False)
    t.set("B", 3, persist=False)
    t.evaluate()
    assert t.get("A").value == 2
    assert t.stored_entries() == [{"name": "A", "expr": 1}]
    t.set("C", 4)
    assert t.stored_entries() == [{"name": "A", "expr": 1}, {"name": "C", "expr": 4}]


def test_load_stored_skips_invalid_entries():
    t = VariableTable()
    problems = t.load_stored([{"name": "A", "expr": 1}, {"name": "1x", "expr": 2}, "junk"])
    assert len(problems) == 2 and t.get("A") is not None


def test_generation_increases_on_every_change():
    t = VariableTable()
    g = t.generation
    t.set("A", 1)
    t.clear()
    assert t.generation == g + 2


def test_long_chain_evaluates_in_order():
    entries = [("V0", 1)] + [("V%d" % i, "V%d + 1" % (i - 1)) for i in range(1, 1000)]
    entries.reverse()
    t = table(entries)
    assert t.get("V999").value == 1000
