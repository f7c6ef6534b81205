"""core.allocate: sharing by priority, fair split, minimums, phases and phase skew (also runs under MicroPython)."""

from chargemanager.core.allocate import Demand, allocate

SITE = ["fuse", "fuse", "fuse"]
ALL = (0, 1, 2)


def _currents(grants):
    return dict((k, grants[k].current_ma) for k in grants)


def test_two_equal_boxes_split_evenly():
    grants = allocate([Demand("E1", ALL, 6000, 16000, "evse_max"), Demand("E2", ALL, 6000, 16000, "evse_max")],
                      [16000, 16000, 16000], SITE, 20000)
    assert _currents(grants) == {"E1": 8000, "E2": 8000}
    assert grants["E1"].reason == "fuse"


def test_box_that_reaches_its_target_names_its_own_reason():
    grants = allocate([Demand("E1", ALL, 6000, 10000, "rule"), Demand("E2", ALL, 6000, 32000, "evse_max")],
                      [32000, 32000, 32000], SITE, 20000)
    assert _currents(grants) == {"E1": 10000, "E2": 22000}
    assert grants["E1"].reason == "rule"
    assert grants["E2"].reason == "fuse"


def test_minimum_that_does_not_fit_pauses_with_ev_minimum():
    demands = [Demand("E%d" % i, ALL, 6000, 16000, "evse_max", order=i) for i in range(3)]
    grants = allocate(demands, [16000, 16000, 16000], SITE, 20000)
    assert _currents(grants) == {"E0": 8000, "E1": 8000, "E2": 0}
    assert grants["E2"].reason == "ev_minimum"


def test_charging_box_keeps_its_place_against_a_newcomer():
    demands = [Demand("E0", ALL, 6000, 16000, "evse_max", keep=False, order=0),
               Demand("E1", ALL, 6000, 16000, "evse_max", keep=True, order=1)]
    grants = allocate(demands, [10000, 10000, 10000], SITE, 20000)
    assert _currents(grants) == {"E0": 0, "E1": 10000}


def test_higher_priority_is_served_to_its_target_first():
    demands = [Demand("LOW", ALL, 6000, 16000, "evse_max", prio=1),
               Demand("HIGH", ALL, 6000, 16000, "evse_max", prio=5)]
    grants = allocate(demands, [20000, 20000, 20000], SITE, 20000)
    assert _currents(grants) == {"LOW": 0, "HIGH": 16000}
    grants = allocate(demands, [22000, 22000, 22000], SITE, 20000)
    assert _currents(grants) == {"LOW": 6000, "HIGH": 16000}


def test_single_phase_boxes_on_different_phases_do_not_share():
    demands = [Demand("A", (0,), 6000, 32000, "evse_max"), Demand("B", (1,), 6000, 32000, "evse_max")]
    grants = allocate(demands, [16000, 16000, 16000], SITE, 20000)
    assert _currents(grants) == {"A": 16000, "B": 16000}


def test_phase_skew_caps_a_single_phase_car():
    grants = allocate([Demand("S", (1,), 6000, 32000, "evse_max")], [63000, 63000, 63000], SITE, 20000)
    assert grants["S"].current_ma == 20000
    assert grants["S"].reason == "phase_skew"


def test_phase_skew_counts_uncontrolled_ev_load():
    grants = allocate([Demand("S", (1,), 6000, 32000, "evse_max")], [63000, 63000, 63000], SITE, 20000,
                      base_ma=[0, 10000, 0])
    assert grants["S"].current_ma == 10000


def test_phase_skew_blocks_a_minimum_that_would_unbalance():
    grants = allocate([Demand("S", (0,), 6000, 32000, "evse_max")], [63000, 63000, 63000], SITE, 5000)
    assert grants["S"].current_ma == 0
    assert grants["S"].reason == "phase_skew"


def test_three_phase_car_is_not_limited_by_skew():
    grants = allocate([Demand("T", ALL, 6000, 32000, "evse_max")], [63000, 63000, 63000], SITE, 0)
    assert grants["T"].current_ma == 32000


def test_target_below_minimum_pauses_with_the_target_reason():
    grants = allocate([Demand("E1", ALL, 6000, 4000, "rule")], [32000, 32000, 32000], SITE, 20000)
    assert grants["E1"].current_ma == 0
    assert grants["E1"].reason == "rule"


def test_negative_available_gives_nothing():
    grants = allocate([Demand("E1", ALL, 6000, 16000, "evse_max")], [-5000, 20000, 20000],
                      ["overdraft", "fuse", "fuse"], 20000)
    assert grants["E1"].current_ma == 0
    assert grants["E1"].reason == "ev_minimum"


def test_steps_and_the_leftover_goes_one_step_at_a_time():
    demands = [Demand("E%d" % i, ALL, 6000, 32000, "evse_max", order=i) for i in range(3)]
    grants = allocate(demands, [20200, 20200, 20200], SITE, 20000, step_ma=100)
    assert _currents(grants) == {"E0": 6800, "E1": 6700, "E2": 6700}


def test_sum_never_exceeds_a_phase_with_mixed_boxes():
    demands = [Demand("T", ALL, 6000, 32000, "evse_max", order=0),
               Demand("A", (0,), 6000, 32000, "evse_max", order=1),
               Demand("B", (0, 1), 6000, 32000, "evse_max", order=2)]
    available = [25000, 40000, 40000]
    grants = allocate(demands, available, SITE, 20000)
    load = [0, 0, 0]
    for d in demands:
        for p in d.phases:
            load[p] += grants[d.dev_id].current_ma
    for p in range(3):
        assert load[p] <= available[p]
    for d in demands:
        c = grants[d.dev_id].current_ma
        assert c == 0 or d.min_ma <= c <= d.target_ma


def test_single_phase_site():
    grants = allocate([Demand("E1", (0,), 6000, 32000, "evse_max")], [16000, 0, 0], SITE, 0, site_phases=(0,))
    assert grants["E1"].current_ma == 16000
