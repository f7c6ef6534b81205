"""core.limits: phase mapping and unit conversions (also runs under MicroPython)."""

from chargemanager.core.limits import (
    box_to_grid_ma, current_to_power_w, floor_step, limit_power_to_current_ma, load_power_to_current_ma, phase_set,
    section_14a_min_power_w,
)


def test_phase_rotation():
    assert phase_set(1, 3) == (0, 1, 2)
    assert phase_set(2, 3) == (1, 2, 0)
    assert phase_set(3, 1) == (2,)
    assert phase_set(3, 2) == (2, 0)


def test_phase_set_on_a_single_phase_site_folds_onto_l1():
    assert phase_set(2, 3, 1) == (0,)


def test_limits_round_down_loads_round_up():
    assert limit_power_to_current_ma(27500, 230, 3) == 39855
    assert load_power_to_current_ma(27500, 230, 3) == 39856
    assert load_power_to_current_ma(690, 230, 3) == 1000
    assert limit_power_to_current_ma(4600, 230, 1) == 20000
    assert limit_power_to_current_ma(-5, 230, 3) == 0
    assert current_to_power_w(16000, 230, 3) == 11040


def test_floor_step():
    assert floor_step(19927, 100) == 19900
    assert floor_step(-1, 100) == 0
    assert floor_step(1234, 1) == 1234


def test_box_currents_land_on_grid_phases():
    assert box_to_grid_ma([10000, 11000, 12000], (1, 2, 0)) == [12000, 10000, 11000]
    assert box_to_grid_ma([16000, 0, 0], (1,)) == [0, 16000, 0]
    assert box_to_grid_ma([-300, None], (0, 1, 2)) == [0, 0, 0]
    assert box_to_grid_ma(None, (0, 1, 2)) == [0, 0, 0]


def test_section_14a_minimum():
    assert section_14a_min_power_w(0) == 0
    assert section_14a_min_power_w(1) == 4200
    assert section_14a_min_power_w(2) == 7560
    assert section_14a_min_power_w(3) == 10500
    assert section_14a_min_power_w(9) == 4200 + 8 * 1890
    assert section_14a_min_power_w(20) == 4200 + 19 * 1890
