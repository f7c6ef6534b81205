"""The whole manager (real process, HTTP API) with Modbus RTU devices on a socat pty pair: the allocation
follows the simulated grid meter, a silent meter leads to the error-case budget, a switching input changes
the site limit at once (it wakes the control loop), §14a dimming with audit entries, the installer's raw read.
"""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
sys.path.insert(0, os.path.dirname(__file__))
from modbus_sim import PtyPair, SimDevice, SimServer  # noqa: E402
from httpclient import call  # noqa: E402
from test_modbus_rtu import wait_until  # noqa: E402
from chargemanager.core.ocpp_profiles import parse_iso_utc  # noqa: E402


def cnf(manager, query, **kw):
    return call(manager.url + "/cnf?" + query, **kw)


def wait_manager_reads(manager, dev_id, quantity, value):
    """Until the manager's own last good reading of a device shows the simulator's new value."""
    def seen():
        for d in cnf(manager, "cmd=get_status")[2]["modbus"]:
            if d["dev_id"] == dev_id and (d["last_good"] or {}).get(quantity) == value:
                return True
        return False
    wait_until(seen, what="%s.%s == %r in the manager" % (dev_id, quantity, value))


@pytest.fixture
def site(manager, tmp_path):
    with PtyPair() as pty:
        meter = SimDevice("eastron_sdm630", 1, {"current_l1_ma": 5000, "current_l2_ma": 5000,
                                                "current_l3_ma": 5000, "power_w": 3450})
        box = SimDevice("heidelberg_ec", 2, {"state_code": 7})
        evse_meter = SimDevice("eastron_sdm630", 3, {"current_l1_ma": 10000, "current_l2_ma": 10000,
                                                     "current_l3_ma": 10000, "power_w": 6900})
        server = SimServer("rtu", [meter, box, evse_meter], port=pty.a).start()
        bus = pty.b + ",19200,8,N,1"
        in1 = tmp_path / "in1"
        in1.write_text("0")
        in2 = tmp_path / "in2"
        in2.write_text("0")

        def configure(evse_meter=False, **site_fields):
            config = cnf(manager, "cmd=get_config")[2]["config"]
            config["site"].update({"max_current_ma": 25000, "max_power_w": 1000000, "min_pause_s": 0,
                                   "fallback_current_ma": 6000, "meter_max_age_ms": 1500, "tick_ms": 200})
            config["site"].update(site_fields)
            config["meters"] = [{"dev_id": "M1", "type": "eastron_sdm630", "role": "grid", "address": bus, "id": 1,
                                 "poll_interval_ms": 100, "max_age_ms": 1500}]
            if evse_meter:
                config["meters"].append({"dev_id": "M2", "type": "eastron_sdm630", "role": "evse", "evse": "E1",
                                         "address": bus, "id": 3, "poll_interval_ms": 100})
            config["evses"] = [{"dev_id": "E1", "type": "heidelberg_ec", "address": bus, "id": 2,
                                "poll_interval_ms": 100, "max_current_ma": 16000, "failsafe_current_ma": 6000}]
            config["inputs"] = [{"name": "IN1", "source": "file", "path": str(in1)},
                                {"name": "IN2", "source": "file", "path": str(in2)}]
            status, _, body = cnf(manager, "cmd=set_config", method="POST", body=config)
            assert status == 200, body
            wait_until(lambda: all(d["counters"]["ok"] > 0 for d in cnf(manager, "cmd=get_status")[2]["modbus"]),
                       what="both devices read")

        yield configure, meter, box, in1, in2
        server.stop()


def test_allocation_follows_the_grid_meter_and_silent_meter_gives_fallback(site, manager):
    configure, meter, box, _, _ = site
    configure()
    # house 5 A per phase, fuse 25 A: the box may take its 16 A maximum
    wait_until(lambda: box.register(3, 261) == 160, what="16 A")
    assert box.register(3, 262) == 60 and box.register(3, 257) == 15000, "failsafe 6 A, watchdog 15 s"
    meter.set_values({"current_l1_ma": 14000, "current_l2_ma": 12000, "current_l3_ma": 11000})
    wait_until(lambda: box.register(3, 261) == 110, what="25 A - 14 A house load on the worst phase")
    meter.silent = True  # the grid meter stops answering: unknown load, the fallback budget applies
    wait_until(lambda: box.register(3, 261) == 60, what="fallback 6 A")
    def e1_status():
        status = cnf(manager, "cmd=get_status")[2]
        e1 = [e for e in status["evses"] if e["dev_id"] == "E1"][0]
        return (status, e1) if e1["modbus"]["setpoint"]["current_ma"] == 6000 else None
    status, e1 = wait_until(e1_status, what="status shows the fallback setpoint")
    assert e1["decision"]["reason"] == "meter_stale"
    m1 = [d for d in status["modbus"] if d["dev_id"] == "M1"][0]
    assert m1["counters"]["timeout"] > 0 and m1["last_good"]["current_l1_ma"] == 14000
    meter.silent = False
    wait_until(lambda: box.register(3, 261) == 110, timeout_s=60, what="measured room again")


def test_evse_meter_replaces_the_box_report(site, manager):
    configure, meter, box, _, _ = site
    meter.set_values({"current_l1_ma": 15000, "current_l2_ma": 15000, "current_l3_ma": 15000})
    configure()
    # the box reports 0 A: all 15 A on the grid look like house load, 25 - 15 = 10 A for the box
    wait_until(lambda: box.register(3, 261) == 100, what="10 A without the EVSE meter")
    configure(evse_meter=True)
    # M2 measures 10 A in the box's line: house load is 5 A, the box may take its 16 A
    wait_until(lambda: box.register(3, 261) == 160, what="16 A with the EVSE meter")


def test_input_switch_changes_the_site_limit_at_once(site, manager):
    configure, meter, box, in1, _ = site
    # ticks a minute apart: only the input's wake-up can bring the new limit within this test's deadline
    configure(tick_ms=60000, max_power_w="IN1 ? 6900 : 1000000")
    meter.set_values({"current_l1_ma": 0, "current_l2_ma": 0, "current_l3_ma": 0, "power_w": 0})
    wait_manager_reads(manager, "M1", "power_w", 0)
    before = box.register(3, 261)
    in1.write_text("1")
    wait_until(lambda: box.register(3, 261) == 100, what="6900 W / 3 / 230 V = 10 A")
    assert before != 100
    assert [i for i in cnf(manager, "cmd=get_status")[2]["inputs"] if i["name"] == "IN1"][0]["value"] == 1


def test_p14a_dimming_limits_evses_and_logs_evidence(site, manager):
    configure, meter, box, _, in2 = site
    configure(p14a_input="IN2")
    meter.set_values({"current_l1_ma": 0, "current_l2_ma": 0, "current_l3_ma": 0, "power_w": 1234})
    wait_manager_reads(manager, "M1", "power_w", 1234)
    wait_until(lambda: box.register(3, 261) == 160, what="undimmed 16 A")
    in2.write_text("1")
    wait_until(lambda: box.register(3, 261) == 60, what="4200 W for one device = 6.0 A per phase")
    assert cnf(manager, "cmd=get_status")[2]["p14a"]["active"] is True
    in2.write_text("0")
    wait_until(lambda: box.register(3, 261) == 160, what="released")
    in2.unlink()  # the control box cannot be read: counts as dimming active
    wait_until(lambda: box.register(3, 261) == 60, what="fail-safe dimming")
    with open(os.path.join(manager.data_dir, "audit.log")) as f:
        events = [json.loads(line) for line in f]
    events = [e for e in events if e["kind"].startswith("p14a")]
    assert [e["kind"] for e in events] == ["p14a_dimming_on", "p14a_dimming_off", "p14a_dimming_on"]
    assert events[0]["site_power_w"] == 1234 and events[0]["limit_w"] == 4200 and events[0]["input"] == "IN2"
    assert all(e["time"].endswith("Z") for e in events)


def test_raw_modbus_read_command(site, manager):
    configure, meter, box, _, _ = site
    configure()
    status, _, body = cnf(manager, "cmd=modbus&dev_id=M1&func=4&addr=0x34&cnt=2")
    assert status == 200 and body["values"] == [0x4557, 0xA000] and body["hex"] == ["0x4557", "0xA000"]  # 3450.0
    status, _, body = cnf(manager, "cmd=modbus&dev_id=E1&func=4&addr=5")
    assert status == 200 and body["values"] == [7]
    assert cnf(manager, "cmd=modbus&dev_id=M1&func=6&addr=0")[0] == 400
    assert cnf(manager, "cmd=modbus&dev_id=M9&addr=0")[0] == 404
    assert cnf(manager, "cmd=modbus&dev_id=M1")[0] == 400
    status, _, body = cnf(manager, "cmd=modbus&dev_id=M1&id=77&addr=0&func=4")
    assert status == 504 and "no valid answer" in body["error"]
    assert cnf(manager, "cmd=modbus&dev_id=M1&addr=0", password=None)[0] == 401


def test_bad_modbus_configuration_is_rejected_whole(site, manager):
    configure, meter, box, _, _ = site
    configure()
    config = cnf(manager, "cmd=get_config")[2]["config"]
    bad = json.loads(json.dumps(config))
    bad["meters"][0]["address"] = config["meters"][0]["address"].replace("19200", "9600")
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=bad)
    assert status == 400 and "other serial settings" in json.dumps(body)
    bad = json.loads(json.dumps(config))
    bad["evses"][0]["address"] = "wallbox.local:99999"
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=bad)
    assert status == 400 and "no Modbus TCP interface" in json.dumps(body)
    bad = json.loads(json.dumps(config))
    bad["evses"][0]["type"] = "heidelberg"
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=bad)
    assert status == 400 and body["fields"][0]["field"] == "evses[0].type" and "heidelberg_ec" in body["fields"][0]["error"]
    bad = json.loads(json.dumps(config))
    bad["evses"][0]["failsafe_current_ma"] = 32000  # more than the 25 A fuse if the manager stops
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=bad)
    assert status == 400 and "failsafe currents add up to 32000 mA" in body["fields"][0]["error"]
    bad = json.loads(json.dumps(config))
    bad["site"]["p14a_input"] = "IN7"
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=bad)
    assert status == 400 and body["fields"] == [{"field": "site.p14a_input",
                                                 "error": "IN7 is not one of the configured inputs[]"}]
    assert cnf(manager, "cmd=get_config")[2]["config"]["meters"] == config["meters"]


def test_overdraft_record_and_cut_survive_a_restart(site, manager):
    configure, meter, box, _, _ = site
    configure(overdraft_delay_s=0, overdraft_hold_s=600)
    # 30 A on L1 through a 25 A connection: 5 A overdraft, cut for 10 minutes
    meter.set_values({"current_l1_ma": 30000, "current_l2_ma": 5000, "current_l3_ma": 5000})

    def site_status():
        return cnf(manager, "cmd=get_status")[2]["site"]
    wait_until(lambda: site_status().get("max_overdraft_ma") == 5000, what="overdraft recorded")
    meter.set_values({"current_l1_ma": 5000})
    wait_manager_reads(manager, "M1", "current_l1_ma", 5000)
    before = site_status()
    assert before["overdraft_cut_ma"][0] == 5000 and before["max_overdraft_at"].endswith("Z")

    assert manager.stop() == 0
    manager.start()
    wait_until(lambda: site_status().get("grid_ma"), what="first tick after the restart")
    after = site_status()
    assert after["max_overdraft_ma"] == 5000
    # the same moment (the status shows whole seconds; the clocks are read a few ms apart)
    assert abs(parse_iso_utc(after["max_overdraft_at"]) - parse_iso_utc(before["max_overdraft_at"])) <= 2000
    assert after["overdraft_cut_ma"][0] == 5000, "the fuse is still warm: the cut goes on after a restart"
    # the box's room still carries the cut: 25 A - 5 A house - 5 A cut
    wait_until(lambda: box.register(3, 261) == 150, what="15 A with the cut kept")

    assert cnf(manager, "cmd=reset_overdraft")[0] == 200
    wait_until(lambda: site_status().get("max_overdraft_ma") == 0, what="record reset")
    assert manager.stop() == 0
    manager.start()
    wait_until(lambda: site_status().get("grid_ma"), what="first tick after the second restart")
    assert site_status()["max_overdraft_ma"] == 0
