"""Failsafe variables (§14a, REFERENCE A6): entry after the timeout, exit on the grid operator's next write.
Runs under CPython and MicroPython."""

from chargemanager.core.failsafe import FailsafeMonitor

AVAIL = {"name": "AVAIL", "timeout_s": 900, "value": 15, "refresh_by": "smgw"}


def monitor(entries=None, now_ms=0):
    m = FailsafeMonitor()
    m.configure(entries if entries is not None else [AVAIL], now_ms)
    return m


def test_enters_once_after_the_timeout_from_start():
    m = monitor()
    assert m.tick(899999) == []
    assert m.tick(900000) == [("AVAIL", 15)]
    assert m.is_active("avail")
    assert m.tick(2000000) == []  # reported once


def test_grid_operator_write_resets_the_timer_and_ends_failsafe():
    m = monitor()
    assert m.written(["avail"], "smgw", 500000) == []
    assert m.tick(1399999) == []
    assert m.tick(1400000) == [("AVAIL", 15)]
    assert m.written(["AVAIL"], "smgw", 1500000) == ["AVAIL"]
    assert not m.is_active("AVAIL")
    assert m.tick(2399999) == []
    assert m.tick(2400000) == [("AVAIL", 15)]


def test_admin_and_failsafe_writes_do_not_refresh_an_smgw_variable():
    m = monitor()
    assert m.written(["AVAIL"], "admin", 800000) == []
    assert m.written(["AVAIL"], "failsafe", 850000) == []
    assert m.tick(900000) == [("AVAIL", 15)]
    assert m.written(["AVAIL"], "admin", 950000) == []
    assert m.is_active("AVAIL")


def test_refresh_by_any_accepts_the_admin():
    m = monitor([{"name": "TARIF", "timeout_s": 60, "value": 0, "refresh_by": "any"}])
    assert m.written(["TARIF"], "admin", 50000) == []
    assert m.tick(109999) == []
    assert m.tick(110000) == [("TARIF", 0)]
    assert m.written(["tarif"], "admin", 120000) == ["TARIF"]


def test_other_variables_do_not_touch_the_timer():
    m = monitor()
    assert m.written(["TARIF", "PWR"], "smgw", 800000) == []
    assert m.tick(900000) == [("AVAIL", 15)]


def test_reconfigure_keeps_state_of_kept_variables_and_starts_new_ones_now():
    m = monitor()
    assert m.tick(900000) == [("AVAIL", 15)]
    m.configure([AVAIL, {"name": "TARIF", "timeout_s": 10, "value": 0, "refresh_by": "smgw"}], 1000000)
    assert m.is_active("AVAIL")
    assert m.tick(1009999) == []
    assert m.tick(1010000) == [("TARIF", 0)]
    m.configure([], 1020000)
    assert m.status(1020000) == []


def test_restore_after_restart():
    m = monitor()
    m.written(["AVAIL"], "smgw", 100000)
    saved = m.persistent_state(400000)
    assert saved == {"AVAIL": {"active": False, "since_write_ms": 300000}}
    # After a restart the monotonic clock starts elsewhere; the time since the last write carries over.
    m2 = monitor(now_ms=5000)
    m2.restore(saved, 5000)
    assert m2.tick(604999) == []
    assert m2.tick(605000) == [("AVAIL", 15)]
    # A variable that was in failsafe stays in it (EEBUS LPC-TS-017), until the grid operator writes.
    m3 = monitor(now_ms=0)
    m3.restore({"AVAIL": {"active": True, "since_write_ms": None}}, 0)
    assert m3.is_active("AVAIL")
    assert m3.tick(10 ** 9) == []
    assert m3.written(["AVAIL"], "smgw", 10 ** 9) == ["AVAIL"]


def test_status_shows_remaining_time():
    m = monitor()
    s = m.status(300000)[0]
    assert s["name"] == "AVAIL" and s["active"] is False
    assert s["remaining_s"] == 600 and s["since_write_s"] == 300
