"""The garbage-collection policy of the running manager (adapters/gcpolicy.py) on the real collector."""

import gc

from chargemanager.adapters.gcpolicy import GcPolicy


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_install_freezes_live_objects_and_uninstall_restores():
    before = gc.get_threshold()
    policy = GcPolicy(young_threshold=12345, clock=FakeClock())
    policy.install()
    try:
        assert gc.get_threshold()[0] == 12345
        assert gc.get_freeze_count() > 0
        assert policy.refreshes == 1
        assert policy.status()["frozen"] == gc.get_freeze_count()
    finally:
        policy.uninstall()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_refresh_when_a_full_collection_was_expensive_but_not_more_often_than_min_gap():
    clock = FakeClock()
    policy = GcPolicy(expensive_ms=0.0, min_gap_s=10, refresh_s=900, clock=clock)
    policy.install()
    try:
        assert not policy.refresh_due()
        policy.last_refresh_ms = 0.0  # as if the refresh had been instant: any full collection is worth the next
        gc.collect()  # a full collection: with expensive_ms=0 it counts as expensive
        assert policy.expensive
        clock.now += 5
        policy.after_tick()
        assert policy.refreshes == 1  # within the minimum gap
        clock.now += 5
        policy.after_tick()
        assert policy.refreshes == 2
        assert not policy.expensive or policy.last_full_ms > 0
    finally:
        policy.uninstall()


def test_refresh_at_the_latest_after_refresh_s_and_cyclic_garbage_is_freed():
    clock = FakeClock()
    policy = GcPolicy(expensive_ms=1e9, min_gap_s=10, refresh_s=900, clock=clock)
    policy.install()
    try:
        class Node:
            pass
        pairs = []
        for _ in range(1000):
            a, b = Node(), Node()
            a.other, b.other = b, a
            pairs.append(a)
        del a, b
        policy.refresh()  # the pairs are now frozen
        frozen = gc.get_freeze_count()
        del pairs         # cyclic garbage among frozen objects: kept until the next refresh
        clock.now += 899
        policy.after_tick()
        assert policy.refreshes == 2
        clock.now += 1
        policy.after_tick()
        assert policy.refreshes == 3
        assert gc.get_freeze_count() <= frozen - 2000
    finally:
        policy.uninstall()


def test_the_control_loop_collects_young_garbage_between_ticks():
    policy = GcPolicy(young_threshold=10 ** 6, young_collect=500, clock=FakeClock())
    policy.install()
    try:
        class Node:
            pass
        probe = Node()
        probe.self = probe
        import weakref
        alive = weakref.ref(probe)
        for _ in range(1000):  # young objects, above young_collect
            n = Node()
            n.self = n
        del probe, n
        assert alive() is not None  # the automatic threshold is far away: nothing collected it yet
        policy.after_tick()
        assert policy.between_ticks == 1
        assert policy.collections[0] + policy.collections[1] + policy.collections[2] >= 1
        assert alive() is None
        policy.after_tick()  # nothing young left to speak of: no collection
        assert policy.between_ticks == 1
    finally:
        policy.uninstall()


def test_a_full_collection_cheaper_than_half_a_refresh_does_not_refresh():
    clock = FakeClock()
    policy = GcPolicy(expensive_ms=0.0, min_gap_s=10, refresh_s=900, clock=clock)
    policy.install()
    try:
        policy.last_refresh_ms = 10 ** 6  # as if the refresh had taken very long
        gc.collect()
        assert not policy.expensive
        clock.now += 60
        policy.after_tick()
        assert policy.refreshes == 1
    finally:
        policy.uninstall()
