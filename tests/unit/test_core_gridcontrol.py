"""core.gridcontrol: §14a minimum and dimming evidence, dual-controlled boxes
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
