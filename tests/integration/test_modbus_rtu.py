"""Modbus RTU with real frames: our bus owner on one end of a socat pty pair, a pymodbus server simulating an
Eastron SDM630 and a Heidelberg Energy Control on the other (tools/modbus_sim.py).

Serial settings: the pty here refuses parity (tcsetattr PARENB -> EINVAL), so the line runs 19200 8N1 instead
of the Heidelberg's 8E1; the frames are the same.
"""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from modbus_sim import PtyPair, SimDevice, SimServer  # noqa: E402

from chargemanager.adapters.modbus_bus import BusError, ModbusService  # noqa: E402
from chargemanager.adapters.readings import ReadingBoard  # noqa: E402


def wait_until(cond, timeout_s=20.0, what="condition"):
    """Bounded wait for a state change (not a timing assertion: the deadline only stops a hung test)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def rtu():
    """A pty pair, a simulator on end a with meter (unit 1) and wallbox (unit 2), a ModbusService on end b."""
    made = []

    def make(extra_devices=(), evse_options=None, meter_values=None):
        pty = PtyPair().__enter__()
        made.append(pty)
        meter = SimDevice("eastron_sdm630", 1, meter_values or {
            "voltage_l1_mv": 230000, "current_l1_ma": 12000, "current_l2_ma": 8000, "current_l3_ma": 4000,
            "power_w": 5520, "import_wh": 1234000})
        box = SimDevice("heidelberg_ec", 2, {"state_code": 7, "current_l1_ma": 16000, "current_l2_ma": 16000,
                                             "current_l3_ma": 16000, "power_w": 11000, "import_wh": 5000,
                                             "watchdog_timeout_ms": 0, "failsafe_current_ma": 0})
        devices = [meter, box] + list(extra_devices)
        server = SimServer("rtu", devices, port=pty.a, baud=19200).start()
        made.append(server)
        board = ReadingBoard()
        evse = {"dev_id": "E1", "type": "heidelberg_ec", "address": pty.b + ",19200,8,N,1", "id": 2,
                "poll_interval_ms": 100}
        evse.update(evse_options or {})
        config = {"meters": [{"dev_id": "M1", "type": "eastron_sdm630", "role": "grid",
                              "address": pty.b + ",19200,8,N,1", "id": 1, "poll_interval_ms": 100}]
                  + [{"dev_id": "M%d" % (i + 2), "type": d.model_id, "address": pty.b + ",19200,8,N,1",
                      "id": d.unit_id, "poll_interval_ms": 100, "timeout_ms": 200} for i, d in enumerate(extra_devices)],
                  "evses": [evse]}
        svc = ModbusService.from_config(config, board)
        svc.start()
        made.append(svc)
        return svc, board, meter, box, pty

    yield make
    for part in reversed(made):
        if isinstance(part, PtyPair):
            part.__exit__(None, None, None)
        else:
            part.stop()


def diag(svc, dev_id):
    return [d for d in svc.diagnostics() if d["dev_id"] == dev_id][0]


def test_meter_and_wallbox_readings_decoded_from_rtu_frames(rtu):
    svc, board, meter, box, _ = rtu()
    m1 = wait_until(lambda: board.get("M1"), what="meter reading")[0]
    assert m1["current_l1_ma"] == 12000 and m1["current_l2_ma"] == 8000 and m1["current_l3_ma"] == 4000
    assert m1["power_w"] == 5520 and m1["import_wh"] == 1234000 and m1["voltage_l1_mv"] == 230000
    e1 = wait_until(lambda: board.get("E1"), what="wallbox reading")[0]
    assert e1["state"] == "C" and e1["current_l1_ma"] == 16000 and e1["power_w"] == 11000
    meter.set_values({"power_w": -300})
    wait_until(lambda: board.get("M1")[0]["power_w"] == -300, what="changed meter value")
    d = diag(svc, "M1")
    assert d["counters"]["ok"] >= 1 and d["last_error"] is None and d["lane"] == "fast"
    assert d["last_good"]["power_w"] == -300 and d["age_ms"] >= 0


def test_setpoint_enable_and_stop_reach_the_heidelberg_registers(rtu):
    svc, board, meter, box, _ = rtu()
    wait_until(lambda: board.get("E1"), what="wallbox reading")
    svc.set_charge("E1", 10500, True)
    wait_until(lambda: box.register(3, 261) == 105, what="current 10.5 A in register 261")
    box.set_values({"current_limit_ma": 16000})  # the box rebooted with its default current: our setpoint is sent again
    wait_until(lambda: box.register(3, 261) == 105 and diag(svc, "E1")["counters"]["rewrites"] >= 1,
               what="setpoint restored")
    svc.set_charge("E1", 20000, True)  # above the box's 16 A maximum: clamped
    wait_until(lambda: box.register(3, 261) == 160, what="clamped current")
    svc.set_charge("E1", 16000, False)
    wait_until(lambda: box.register(3, 261) == 0, what="stop = 0 A")
    svc.set_charge("E1", 5000, True)  # below 6 A the box cannot charge: stop, not 5 A
    wait_until(lambda: diag(svc, "E1")["setpoint"] == {"current_ma": 5000, "enable": True}, what="written")
    assert box.register(3, 261) == 0
    assert all(fc == 16 for fc, _, _ in box.writes), "Heidelberg holding registers take FC16 only"


def test_watchdog_and_failsafe_are_set_so_the_box_falls_back_when_we_stop(rtu):
    svc, board, meter, box, _ = rtu(evse_options={"watchdog_timeout_ms": 1000, "failsafe_current_ma": 6000})
    # watchdog 1 s, failsafe 6 A, and standby off (4) so the bus stays reachable
    wait_until(lambda: [box.register(3, a) for a in (257, 258, 262)] == [1000, 4, 60], what="watchdog setup")
    svc.set_charge("E1", 16000, True)
    wait_until(lambda: box.register(3, 261) == 160, what="16 A")
    writes_before = len(box.writes)
    time.sleep(0.5)  # several polls later: setup registers are not rewritten while they read back right
    assert [w for w in box.writes[writes_before:] if w[1] in (257, 258, 262)] == []
    svc.stop()  # the manager dies: the box falls back to its failsafe current by itself
    wait_until(lambda: box.fell_back, what="box watchdog expiry")
    assert box.register(3, 261) == 60


def test_slow_responder_within_timeout_still_delivers(rtu):
    slow = SimDevice("eastron_sdm72", 3, {"power_w": 777}, delay_ms=120)
    svc, board, meter, box, _ = rtu(extra_devices=[slow])
    assert wait_until(lambda: board.get("M2"), what="slow meter reading")[0]["power_w"] == 777
    assert diag(svc, "M2")["lane"] == "fast"


def test_silent_device_goes_to_slow_lane_and_others_keep_being_polled(rtu):
    gone = SimDevice("eastron_sdm72", 3, {"power_w": 1}, silent=True)
    svc, board, meter, box, _ = rtu(extra_devices=[gone])
    wait_until(lambda: diag(svc, "M2")["lane"] == "slow", what="slow lane")
    ok_before = diag(svc, "M1")["counters"]["ok"]
    polls_silent_before = diag(svc, "M2")["counters"]["polls"]
    wait_until(lambda: diag(svc, "M1")["counters"]["ok"] >= ok_before + 20, what="20 more meter polls")
    # capped back-off: while the meter was polled 20 times, the silent one was tried only a few times
    assert diag(svc, "M2")["counters"]["polls"] - polls_silent_before <= 5
    assert board.get("M2") is None
    d = diag(svc, "M2")
    assert d["counters"]["timeout"] >= 2 and d["last_error"].startswith("timeout")
    gone.silent = False  # back on the bus: returns to the fast lane and publishes again
    wait_until(lambda: board.get("M2"), timeout_s=40, what="recovered device")
    assert diag(svc, "M2")["lane"] == "fast"


def test_crc_errors_are_counted_and_never_decoded(rtu):
    bad = SimDevice("eastron_sdm72", 3, {"power_w": 4242}, corrupt_crc=True)
    svc, board, meter, box, _ = rtu(extra_devices=[bad])
    wait_until(lambda: diag(svc, "M2")["counters"]["crc"] >= 2, what="CRC errors")
    assert board.get("M2") is None
    assert "CRC" in diag(svc, "M2")["last_error"]
    assert wait_until(lambda: board.get("M1"))[0]["power_w"] == 5520
    bad.corrupt_crc = False
    assert wait_until(lambda: board.get("M2"), timeout_s=40, what="clean answers")[0]["power_w"] == 4242


def test_raw_register_read_for_installers(rtu):
    svc, board, meter, box, pty = rtu()
    wait_until(lambda: board.get("M1"))
    assert svc.raw_read(None, 4, 5, 1, dev_id="E1") == [7]
    words = svc.raw_read(1, 4, 0x34, 2, bus_address=pty.b)
    assert words == [0x45AC, 0x8000]  # 5520.0 as float32
    with pytest.raises(BusError):
        svc.raw_read(9, 4, 0, 1, bus_address=pty.b)  # nobody answers unit 9
    with pytest.raises(LookupError):
        svc.raw_read(1, 4, 0, 1, bus_address="/dev/ttyNOPE")
    with pytest.raises(ValueError):
        svc.raw_read(1, 6, 0, 1, dev_id="M1")  # writes are not offered


def test_device_refusing_reads_across_holes_is_read_without_them(rtu):
    picky = SimDevice("abb_b23", 4, {"power_w": 1500, "voltage_l1_mv": 230000}, strict=True)
    picky.set_values({q: 0 for q in ("import_wh", "export_wh", "voltage_l2_mv", "voltage_l3_mv", "current_l1_ma",
                                     "current_l2_ma", "current_l3_ma", "power_l1_w", "power_l2_w", "power_l3_w",
                                     "frequency_mhz", "power_factor_permille", "power_factor_l1_permille",
                                     "power_factor_l2_permille", "power_factor_l3_permille")})
    svc, board, meter, box, _ = rtu(extra_devices=[picky])
    reading = wait_until(lambda: board.get("M2"), what="reading without holes")[0]
    assert reading["power_w"] == 1500 and reading["voltage_l1_mv"] == 230000
    d = diag(svc, "M2")
    assert d["contiguous_only"] is True and d["counters"]["exception"] >= 1 and d["reads_per_poll"] > 2


def test_monitor_mode_box_is_read_but_never_written(rtu):
    svc, board, meter, box, _ = rtu(evse_options={"mode": "monitor", "watchdog_timeout_ms": 1000})
    wait_until(lambda: diag(svc, "E1")["counters"]["ok"] >= 5, what="several polls")
    svc.set_charge("E1", 10000, True)
    wait_until(lambda: diag(svc, "E1")["counters"]["ok"] >= 10, what="more polls")
    assert box.writes == [], "monitor mode: no setup, no setpoint"
    assert board.get("E1")[0]["state"] == "C"


def test_box_on_modbus_and_ocpp_gets_the_minimum_of_both(tmp_path):
    """The load manager's decision for a Modbus box also connected to our OCPP server (ocpp_id) goes out as the
    minimum of both sides, and as a stop when either side forbids charging."""
    from chargemanager.adapters.store import atomic_write_json
    from chargemanager.core.tick import EvseDecision
    from chargemanager.runtime import Runtime
    with PtyPair() as pty:
        box = SimDevice("heidelberg_ec", 2, {"state_code": 6})
        server = SimServer("rtu", [box], port=pty.a).start()
        evse = {"dev_id": "E1", "type": "heidelberg_ec", "address": pty.b + ",19200,8,N,1", "id": 2,
                "poll_interval_ms": 100, "ocpp_id": "BOX-1"}
        data = tmp_path / "data"
        data.mkdir()
        atomic_write_json(str(data / "config.json"), {"version": 1, "evses": [evse]})
        rt = Runtime(str(data))
        allowed = {"BOX-1": (10000, True)}
        rt.fieldbus.ocpp_limit_provider = lambda evse: allowed[evse["ocpp_id"]]
        driver = rt.load_manager.drivers["heidelberg_ec"]
        rt.fieldbus.start()
        try:
            wait_until(lambda: rt.readings.get("E1"), what="box read")
            evse = rt.config["evses"][0]
            driver.apply(evse, EvseDecision("E1", 16000, [16000, 16000, 16000], True, "fuse", True))
            wait_until(lambda: box.register(3, 261) == 100, what="OCPP side's 10 A binds")
            driver.apply(evse, EvseDecision("E1", 8000, [8000, 8000, 8000], True, "fuse", True))
            wait_until(lambda: box.register(3, 261) == 80, what="load manager's 8 A binds")
            allowed["BOX-1"] = (None, False)
            driver.apply(evse, EvseDecision("E1", 8000, [8000, 8000, 8000], True, "fuse", True))
            wait_until(lambda: box.register(3, 261) == 0, what="OCPP side forbids: stop")
        finally:
            rt.fieldbus.stop()
            server.stop()
