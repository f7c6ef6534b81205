"""core.rules: conditions, time windows, actions and stop (also runs under MicroPython)."""

from chargemanager.core.formula import UnknownName
from chargemanager.core.rules import RuleError, compile_rules, evaluate_rules, parse_hhmm


def _lookup(values):
    def lookup(name):
        if name not in values:
            raise UnknownName(name)
        return values[name]
    return lookup


def _run(specs, values=None, minute=600, weekday=1, phases=3):
    return evaluate_rules(compile_rules(specs), _lookup(values or {}), minute, weekday, 230, phases)


def test_charge_only_while_tarif_is_1():
    rules = [{"condition": "TARIF != 1", "action": "pause"}]
    assert _run(rules, {"TARIF": 0}).paused
    result = _run(rules, {"TARIF": 1})
    assert not result.paused
    assert result.limit_ma is None
    assert result.rule is None


def test_reduced_power_while_tarif_is_0():
    rules = [{"condition": "TARIF == 0", "action": "limit", "power_w": 4140}]
    result = _run(rules, {"TARIF": 0})
    assert result.limit_ma == 6000
    assert result.rule == 0
    assert _run(rules, {"TARIF": 0}, phases=1).limit_ma == 18000


def test_allow_then_stop_else_pause():
    rules = [{"condition": "TARIF == 1", "action": "set", "current_ma": 16000, "stop": True},
             {"action": "pause"}]
    assert _run(rules, {"TARIF": 1}).limit_ma == 16000
    assert not _run(rules, {"TARIF": 1}).paused
    assert _run(rules, {"TARIF": 0}).paused


def test_limit_only_lowers_set_replaces():
    rules = [{"action": "limit", "current_ma": 10000}, {"action": "limit", "current_ma": 12000}]
    assert _run(rules).limit_ma == 10000
    rules = [{"action": "limit", "current_ma": 10000}, {"action": "set", "current_ma": 12000}]
    assert _run(rules).limit_ma == 12000


def test_set_after_pause_allows_again():
    rules = [{"action": "pause"}, {"condition": "BOOST", "action": "set", "current_ma": 8000}]
    assert _run(rules, {"BOOST": 0}).paused
    result = _run(rules, {"BOOST": 1})
    assert not result.paused
    assert result.limit_ma == 8000


def test_value_may_be_a_formula_and_the_lower_of_current_and_power_binds():
    rules = [{"action": "limit", "current_ma": "PWR * 100", "power_w": 11040}]
    assert _run(rules, {"PWR": 70}).limit_ma == 7000
    assert _run(rules, {"PWR": 200}).limit_ma == 16000


def test_unknown_name_skips_the_rule_and_reports_it():
    result = _run([{"condition": "TARIF == 0", "action": "pause"}])
    assert not result.paused
    assert result.errors == ["rule 0: unknown name 'TARIF'"]


def test_disabled_rule_is_skipped():
    assert not _run([{"action": "pause", "enabled": False}]).paused


def test_time_window_within_a_day():
    rules = [{"time": {"from": "08:00", "to": "17:30", "weekdays": [1, 2, 3, 4, 5]}, "action": "pause"}]
    assert _run(rules, minute=8 * 60, weekday=1).paused
    assert not _run(rules, minute=17 * 60 + 30, weekday=1).paused
    assert not _run(rules, minute=7 * 60 + 59, weekday=1).paused
    assert not _run(rules, minute=12 * 60, weekday=6).paused


def test_time_window_past_midnight_belongs_to_its_start_day():
    rules = [{"time": {"from": "22:00", "to": "06:00", "weekdays": [7]}, "action": "pause"}]
    assert _run(rules, minute=23 * 60, weekday=7).paused
    assert _run(rules, minute=60, weekday=1).paused
    assert not _run(rules, minute=60, weekday=7).paused
    assert not _run(rules, minute=6 * 60, weekday=1).paused


def test_time_window_without_weekdays_and_whole_day():
    assert _run([{"time": {"from": "00:00", "to": "24:00"}, "action": "pause"}], minute=1439, weekday=3).paused
    assert _run([{"time": {"from": "10:00", "to": "10:00"}, "action": "pause"}], minute=0, weekday=3).paused


def test_time_window_without_a_time_is_an_error():
    result = _run([{"time": {"from": "10:00", "to": "12:00"}, "action": "pause"}], minute=None, weekday=None)
    assert not result.paused
    assert len(result.errors) == 1


def test_bad_rules_are_refused_with_their_index():
    bad = [
        {"action": "explode"},
        {"action": "limit"},
        {"condition": "TARIF ==", "action": "pause"},
        {"time": {"from": "25:00"}, "action": "pause"},
        {"time": {"from": "10:00", "to": "11:00", "weekdays": [0]}, "action": "pause"},
        {"action": "limit", "current_ma": -1},
        {"action": "set", "current_ma": True},
    ]
    for spec in bad:
        try:
            compile_rules([{"action": "pause"}, spec])
        except RuleError as exc:
            assert exc.index == 1
            assert str(exc).startswith("rule 1: ")
        else:
            assert False, "accepted %r" % (spec,)


def test_parse_hhmm():
    assert parse_hhmm("06:30") == 390
    assert parse_hhmm("24:00") == 1440
    for text in ("6", "06:60", "ab:cd", "25:00"):
        try:
            parse_hhmm(text)
        except ValueError:
            pass
        else:
            assert False, text
