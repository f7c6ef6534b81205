"""core.gridcontrol: §14a minimum, grid meter staleness, household load, dual-controlled boxes
(plain asserts: also runs under MicroPython)."""
from chargemanager.core import gridcontrol as g


def test_p14a_minimum_for_one_and_several_devices():
    assert g.p14a_min_power_w(1) == 4200
    assert g.p14a_min_power_w(2) == 4200 + 3360       # factor 0.8
    assert g.p14a_min_power_w(3) == 4200 + 2 * 3150   # 0.75
    assert g.p14a_min_power_w(8) == 4200 + 7 * 2100   # 0.5
    assert g.p14a_min_power_w(9) == 4200 + 8 * 1890   # 0.45 from 9 on
    assert g.p14a_min_power_w(20) == 4200 + 19 * 1890
    assert g.p14a_min_power_w(0) == 4200


def test_grid_load_from_fresh_reading_and_unknown_when_stale():
    q = {"current_l1_ma": 10000, "current_l2_ma": 5000, "current_l3_ma": 0, "power_w": 3450}
    assert g.grid_load((q, 1000, 5000), 6000) == {"current_ma": [10000, 5000, 0], "power_w": 3450}
    assert g.grid_load((q, 1000, 5000), 6001) is None
    assert g.grid_load(None, 0) is None


def test_grid_load_needs_every_phase_and_sums_phase_powers():
    q = {"current_l1_ma": 1, "current_l2_ma": None, "current_l3_ma": 1, "power_w": 1}
    assert g.grid_load((q, 0, 10), 0) is None
    q = {"current_l1_ma": 1000, "current_l2_ma": 0, "current_l3_ma": 0,
         "power_l1_w": 230, "power_l2_w": 0, "power_l3_w": -100}
    assert g.grid_load((q, 0, 10), 0)["power_w"] == 130


def test_household_load_subtracts_evses_with_phase_rotation():
    grid = {"current_ma": [20000, 16000, 6000], "power_w": 9660}
    draw = g.evse_draw_on_grid([16000, 0, 0], 2)  # single-phase car on the box's L1, wired to grid L2
    assert draw == [0, 16000, 0]
    assert g.household_load(grid, [(draw, 3680)]) == {"current_ma": [20000, 0, 6000], "power_w": 5980}
    assert g.household_load(grid, [([30000, 0, 0], 10000)])["current_ma"][0] == 0  # never negative
    assert g.household_load(None, []) is None


def test_site_limit_falls_back_when_grid_meter_is_unknown():
    assert g.site_power_limit_w(22000, {"current_ma": [0, 0, 0], "power_w": 0}, 4200) == (22000, "site limit")
    assert g.site_power_limit_w(22000, None, 4200) == (4200, "grid meter stale: error-case limit")
    assert g.site_power_limit_w(3000, None, 4200)[0] == 3000


def test_dual_controlled_box_gets_minimum_and_needs_both_enables():
    assert g.dual_controlled_limit_ma(16000, True, 10000, True) == (10000, True)
    assert g.dual_controlled_limit_ma(8000, True, None, None) == (8000, True)
    assert g.dual_controlled_limit_ma(16000, True, 16000, False) == (0, False)
    assert g.dual_controlled_limit_ma(16000, False, 16000, True) == (0, False)


def test_dimming_records_activation_and_release_once():
    d = g.Dimming14a()
    assert d.update(False, 2, 5000, 0) == []
    ev = d.update(True, 2, 12345, 1000)
    assert ev == [{"event": "p14a_dimming_on", "at_ms": 1000, "site_power_w": 12345, "limit_w": 7560,
                   "devices": 2}]
    assert d.update(True, 2, 9000, 2000) == []
    assert d.evse_cap_w(2) == 7560
    ev = d.update(False, 2, 7000, 3000)
    assert ev[0]["event"] == "p14a_dimming_off" and ev[0]["site_power_w"] == 7000
    assert d.evse_cap_w(2) is None
