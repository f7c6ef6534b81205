"""core.tick: the parts of a tick the JSON vectors do not show (also runs under MicroPython)."""

import json

from chargemanager.core.config import validate_config
from chargemanager.core.formula import UnknownName
from chargemanager.core.tick import (
    REASONS, Decision, State, prepare, reset_max_overdraft, snapshot_from_readings, tick,
)


def _plan(site=None, evses=None, meters=None):
    doc = {"site": site or {}, "evses": evses or [], "meters": meters or []}
    for i, e in enumerate(doc["evses"]):
        e.setdefault("address", "BOX%d" % i)
    clean, errors = validate_config(doc)
    assert errors == [], errors
    return prepare(clean)


def _wants(*dev_ids):
    return {"evses": dict((d, {"wants": True}) for d in dev_ids)}


def test_defaults_house_of_11_kw():
    decision, _ = tick(_plan(evses=[{"dev_id": "E1"}]), {}, _wants("E1"), None, 0)
    assert decision.site.get("limit_ma") == [15942, 15942, 15942]
    assert decision.site.get("limit_reason") == "site_power"
    assert decision.evses["E1"].current_ma == 15900


def test_evse_readings_map_through_l1_phase_when_computing_house_load():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000},
                 [{"dev_id": "E1", "phases": 1, "l1_phase": 3, "max_current_ma": 16000}],
                 [{"dev_id": "M1", "type": "eastron_sdm630"}])
    snapshot = {"meters": {"M1": {"current_ma": [5000, 5000, 21000], "age_ms": 0}},
                "evses": {"E1": {"wants": True, "current_ma": [16000, 0, 0], "age_ms": 0}}}
    decision, _ = tick(plan, {}, snapshot, None, 0)
    assert decision.site.get("house_ma") == [5000, 5000, 5000]
    assert decision.evses["E1"].phase_current_ma == [0, 0, 16000]


def test_stale_evse_reading_counts_as_no_ev_load():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000, "evse_max_age_ms": 5000},
                 [{"dev_id": "E1", "max_current_ma": 32000}], [{"dev_id": "M1", "type": "eastron_sdm630"}])
    snapshot = {"meters": {"M1": {"current_ma": [20000, 20000, 20000], "age_ms": 0}},
                "evses": {"E1": {"wants": True, "current_ma": [16000, 16000, 16000], "age_ms": 6000}}}
    decision, _ = tick(plan, {}, snapshot, None, 0)
    assert decision.site.get("house_ma") == [20000, 20000, 20000]
    assert decision.evses["E1"].current_ma == 12000


def test_grid_meter_with_power_only_spreads_it_over_the_phases():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000},
                 [{"dev_id": "E1", "max_current_ma": 32000}], [{"dev_id": "M1", "type": "eastron_sdm630"}])
    snapshot = {"meters": {"M1": {"power_w": 6900, "age_ms": 0}}, "evses": {"E1": {"wants": True}}}
    decision, _ = tick(plan, {}, snapshot, None, 0)
    assert decision.site.get("house_ma") == [10000, 10000, 10000]


def test_meter_role_other_is_not_the_grid():
    plan = _plan({"max_current_ma": 16000, "max_power_w": 100000}, [{"dev_id": "E1"}],
                 [{"dev_id": "M2", "type": "eastron_sdm630", "role": "other"}])
    decision, _ = tick(plan, {}, _wants("E1"), None, 0)
    assert decision.site.get("meter_stale") is False
    assert decision.evses["E1"].current_ma == 16000


def test_meter_max_age_overrides_the_site_default():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000, "meter_max_age_ms": 60000},
                 [{"dev_id": "E1"}], [{"dev_id": "M1", "type": "eastron_sdm630", "max_age_ms": 2000}])
    snapshot = {"meters": {"M1": {"current_ma": [0, 0, 0], "age_ms": 3000}}, "evses": {"E1": {"wants": True}}}
    decision, _ = tick(plan, {}, snapshot, None, 0)
    assert decision.site.get("meter_stale") is True
    assert decision.evses["E1"].reason == "meter_stale"


def test_values_may_be_a_callable_lookup():
    plan = _plan({"max_current_ma": "LIMIT", "max_power_w": 100000}, [{"dev_id": "E1", "max_current_ma": 32000}])

    def lookup(name):
        if name == "LIMIT":
            return 12000
        raise UnknownName(name)
    decision, _ = tick(plan, lookup, _wants("E1"), None, 0)
    assert decision.evses["E1"].current_ma == 12000
    assert decision.evses["E1"].reason == "grid_operator"


def test_evse_max_formula_error_falls_back_to_its_minimum():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000},
                 [{"dev_id": "E1", "max_current_ma": "EMAX * 1000"}])
    decision, _ = tick(plan, {}, _wants("E1"), None, 0)
    assert decision.evses["E1"].current_ma == 6000
    assert decision.evses["E1"].reason == "formula_error"
    assert decision.evses["E1"].errors == ["evses.E1.max_current_ma: unknown name 'EMAX'"]
    decision, _ = tick(plan, {"EMAX": 10}, _wants("E1"), None, 0)
    assert decision.evses["E1"].current_ma == 10000


def test_evse_max_power_on_a_single_phase_box():
    plan = _plan({"max_current_ma": 63000, "max_power_w": 100000},
                 [{"dev_id": "E1", "phases": 1, "max_current_ma": 32000, "max_power_w": 3680}])
    decision, _ = tick(plan, {}, _wants("E1"), None, 0)
    assert decision.evses["E1"].current_ma == 16000
    assert decision.evses["E1"].reason == "evse_max"


def test_override_can_switch_rules_off():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000},
                 [{"dev_id": "E1", "rules": [{"action": "pause"}]}])
    decision, _ = tick(plan, {}, _wants("E1"), None, 0)
    assert decision.evses["E1"].reason == "rule"
    snapshot = _wants("E1")
    snapshot["overrides"] = {"E1": {"rules": False}}
    decision, _ = tick(plan, {}, snapshot, None, 0)
    assert decision.evses["E1"].current_ma == 16000


def test_override_disable_does_not_start_a_minimum_pause():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000}, [{"dev_id": "E1"}])
    _, state = tick(plan, {}, _wants("E1"), None, 0)
    snapshot = _wants("E1")
    snapshot["overrides"] = {"E1": {"charging": False}}
    decision, state = tick(plan, {}, snapshot, state, 1000)
    assert decision.evses["E1"].reason == "override"
    decision, state = tick(plan, {}, _wants("E1"), state, 2000)
    assert decision.evses["E1"].current_ma == 16000


def test_unplugging_does_not_start_a_minimum_pause():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000}, [{"dev_id": "E1"}])
    _, state = tick(plan, {}, _wants("E1"), None, 0)
    _, state = tick(plan, {}, {"evses": {"E1": {"wants": False}}}, state, 1000)
    decision, _ = tick(plan, {}, _wants("E1"), state, 2000)
    assert decision.evses["E1"].current_ma == 16000


def test_two_phase_box_and_single_phase_site():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000, "phases": 1},
                 [{"dev_id": "E1", "phases": 1, "l1_phase": 1, "max_current_ma": 32000}])
    decision, _ = tick(plan, {}, _wants("E1"), None, 0)
    assert decision.site.get("limit_ma") == [32000, 0, 0]
    assert decision.evses["E1"].current_ma == 32000
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000},
                 [{"dev_id": "E1", "phases": 2, "l1_phase": 3, "max_current_ma": 16000}])
    decision, _ = tick(plan, {}, _wants("E1"), None, 0)
    assert decision.evses["E1"].phase_current_ma == [16000, 0, 16000]


def test_bad_rules_in_an_unvalidated_config_are_reported_not_raised():
    plan = prepare({"site": {"max_current_ma": 16000, "max_power_w": 100000},
                    "evses": [{"dev_id": "E1", "rules": [{"action": "nope"}]}]})
    decision, _ = tick(plan, {}, _wants("E1"), None, 0)
    assert decision.evses["E1"].current_ma == 16000
    assert decision.evses["E1"].errors[0].startswith("rule 0: action must be one of")


def test_plain_config_dict_and_dict_state_are_accepted():
    config, _ = validate_config({"site": {"max_current_ma": 16000, "max_power_w": 100000},
                                 "evses": [{"dev_id": "E1", "address": "B"}]})
    decision, state = tick(config, {}, _wants("E1"), None, 0)
    decision2, _ = tick(config, {}, _wants("E1"), state.to_dict(), 1000)
    assert decision2.evses["E1"].changed is False


def test_decision_and_state_round_trip_through_json():
    plan = _plan({"max_current_ma": 16000, "max_power_w": 100000}, [{"dev_id": "E1"}, {"dev_id": "E2"}])
    decision, state = tick(plan, {}, _wants("E1", "E2"), None, 0)
    again = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again.to_dict() == decision.to_dict()
    assert State.from_dict(json.loads(json.dumps(state.to_dict()))).to_dict() == state.to_dict()
    for d in decision.evses.values():
        assert d.reason in REASONS


def test_reset_max_overdraft_on_the_state():
    state = State(max_overdraft_ma=5000, max_overdraft_at_ms=10)
    cleared = reset_max_overdraft(state)
    assert cleared.max_overdraft_ma == 0
    assert cleared.max_overdraft_at_ms is None
    assert state.max_overdraft_ma == 5000


def test_state_is_not_mutated():
    plan = _plan({"max_current_ma": 16000, "max_power_w": 100000}, [{"dev_id": "E1"}])
    _, state = tick(plan, {}, _wants("E1"), None, 0)
    before = json.dumps(state.to_dict())
    tick(plan, {}, {"evses": {"E1": {"wants": False}}}, state, 1000)
    assert json.dumps(state.to_dict()) == before


def test_snapshot_from_readings():
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000},
                 [{"dev_id": "E1"}, {"dev_id": "E2"}], [{"dev_id": "M1", "type": "eastron_sdm630"}])
    readings = {
        "M1": ({"current_l1_ma": 9000, "current_l2_ma": 8000, "current_l3_ma": None, "power_w": 4600}, 900, 15000),
        "E1": ({"online": True, "wants": True, "current_l1_ma": 7000, "current_l2_ma": 7000,
                "current_l3_ma": 7000}, 500, 15000),
    }
    snapshot = snapshot_from_readings(plan, readings, 1000, minute_of_day=61, weekday=2)
    assert snapshot["meters"]["M1"] == {"current_ma": None, "power_w": 4600, "age_ms": 100}
    assert snapshot["evses"]["E1"]["current_ma"] == [7000, 7000, 7000]
    assert snapshot["evses"]["E1"]["age_ms"] == 500
    assert "E2" not in snapshot["evses"]
    assert snapshot["time"] == {"minute_of_day": 61, "weekday": 2}
    decision, _ = tick(plan, {}, snapshot, None, 1000)
    assert decision.evses["E2"].reason == "offline"
    assert decision.evses["E1"].current_ma > 0


def test_negative_formula_limits_count_as_zero():
    plan = _plan({"max_current_ma": "IMAX", "max_power_w": 100000}, [{"dev_id": "E1", "max_current_ma": "EMAX"}])
    decision, _ = tick(plan, {"IMAX": -5, "EMAX": 16000}, _wants("E1"), None, 0)
    assert decision.site.get("limit_ma") == [0, 0, 0]
    decision, _ = tick(plan, {"IMAX": 32000, "EMAX": -5}, _wants("E1"), None, 0)
    assert decision.evses["E1"].current_ma == 0
    assert decision.evses["E1"].reason == "evse_max"


def test_config_refuses_bad_rules_with_their_path():
    base = {"dev_id": "E1", "address": "B"}
    spec = dict(base, rules=[{"action": "pause"}, {"action": "limit"}])
    _, errors = validate_config({"evses": [spec]})
    assert errors == [{"field": "evses[0].rules[1]", "error": "action limit needs current_ma or power_w"}]
    spec = dict(base, rules=[{"action": "pause", "time": {"from": "25:00", "to": "06:00"}}])
    _, errors = validate_config({"evses": [spec]})
    assert errors[0]["field"] == "evses[0].rules[0]"
    assert "25:00" in errors[0]["error"]
    spec = dict(base, rules=[{"action": "pause", "condition": "TARIF =="}])
    _, errors = validate_config({"evses": [spec]})
    assert errors[0]["field"] == "evses[0].rules[0]"
    spec = dict(base, rules=[{"action": "pause", "time": {"weekdays": [0]}}])
    _, errors = validate_config({"evses": [spec]})
    assert errors[0]["field"] == "evses[0].rules[0].time.weekdays[0]"


def test_quantities_from_ocpp_state_and_their_age():
    from chargemanager.core.tick import quantities_from_ocpp_state
    state = {"dev_id": "E1", "connected": True, "booted": True, "status": "SuspendedEVSE",
             "current_ma": [1000, 2000, 3000], "power_w": 1380, "energy_wh": 5, "meter_age_ms": 1200}
    q = quantities_from_ocpp_state(state)
    assert q == {"online": True, "wants": True, "state": "SuspendedEVSE", "energy_wh": 5, "meter_age_ms": 1200,
                 "power_w": 1380, "current_l1_ma": 1000, "current_l2_ma": 2000, "current_l3_ma": 3000}
    plan = _plan({"max_current_ma": 32000, "max_power_w": 100000}, [{"dev_id": "E1"}])
    snapshot = snapshot_from_readings(plan, {"E1": (q, 9000, 15000)}, 10000)
    assert snapshot["evses"]["E1"]["age_ms"] == 2200
    assert snapshot["evses"]["E1"]["current_ma"] == [1000, 2000, 3000]
    q = quantities_from_ocpp_state(dict(state, status="Available", meter_age_ms=None))
    assert q == {"online": True, "wants": False, "state": "Available", "energy_wh": 5}
    assert quantities_from_ocpp_state(dict(state, booted=False))["online"] is False
    assert quantities_from_ocpp_state(dict(state, connected=False))["online"] is False
    for status in ("Preparing", "Charging", "SuspendedEV"):
        assert quantities_from_ocpp_state(dict(state, status=status))["wants"] is True
    for status in ("Available", "Finishing", "Faulted", "Unavailable", "Reserved"):
        assert quantities_from_ocpp_state(dict(state, status=status))["wants"] is False
