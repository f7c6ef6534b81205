"""A wallbox driven over Modbus for load management that also talks OCPP to its billing backend through our server
(SPEC section 7, seed 004: the cFos Power Brain way). The whole manager process; the box's Modbus side is a
simulated Heidelberg on a socat pty pair, its OCPP side a charge point built on the Python `ocpp` package, its
backend a Python `ocpp` central system reached through the manager's gateway. The box gets the minimum of the load
management's limit and the backend's, on both sides, and charges only if both allow."""

import asyncio
import os
import sys

from ocpp.v16 import call

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
sys.path.insert(0, os.path.dirname(__file__))
from modbus_sim import PtyPair, SimDevice, SimServer  # noqa: E402
from gateway_peers import Backend, wait_for  # noqa: E402
from httpclient import call as http  # noqa: E402
from ocpp_pybox import close_box, open_box  # noqa: E402
from test_ocpp_runtime import next_limit, ocpp_port  # noqa: E402

BOX = "PB-1"
SETPOINT = (3, 261)  # Heidelberg: maximal current command, 0.1 A


def cnf(manager, query, **kw):
    return http(manager.url + "/cnf?" + query, **kw)


def backend_profile(limit_a):
    return {"chargingProfileId": 501, "stackLevel": 5, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {
                "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}]}}


def test_modbus_box_on_our_ocpp_server_gets_the_minimum_with_its_backend(manager):
    with PtyPair() as pty:
        box = SimDevice("heidelberg_ec", 2, {"state_code": 7})  # C2: a car is charging
        server = SimServer("rtu", [box], port=pty.a).start()
        try:
            asyncio.run(_scenario(manager, box, pty.b + ",19200,8,N,1"))
        finally:
            server.stop()


async def _scenario(manager, box, bus):
    backend = Backend()
    await backend.start()
    config = (await asyncio.to_thread(cnf, manager, "cmd=get_config"))[2]["config"]
    config["site"].update({"max_current_ma": 32000, "max_power_w": 1000000, "min_pause_s": 0, "tick_ms": 200})
    config["evses"] = [{"dev_id": "E1", "type": "heidelberg_ec", "address": bus, "id": 2, "poll_interval_ms": 100,
                        "max_current_ma": 16000, "ocpp_id": BOX, "ocpp_connector_id": 1,
                        "gateway": {"url": "ws://127.0.0.1:%d/cs/" % backend.port}}]
    status, _, body = await asyncio.to_thread(cnf, manager, "cmd=set_config", method="POST", body=config)
    assert status == 200, body
    pybox = ws = task = None
    try:
        await wait_for(lambda: box.register(*SETPOINT) == 160, what="Modbus side: the load management's 16 A")
        port = await asyncio.to_thread(ocpp_port, manager)
        # the box's ChargeBox ID is its EVSE's ocpp_id: accepted (not "unknown id"), and its traffic goes to the
        # backend through the gateway
        pybox, ws, task = await open_box(port, BOX)
        assert (await pybox.boot()).status == "Accepted"
        await wait_for(lambda: BOX in backend.stations, what="backend link")
        assert "BootNotification" in backend.actions(BOX)
        # the OCPP side's own profile is the same grant, not the zero default that blocks a box we do not manage
        await next_limit(pybox, 16.0)

        station = backend.stations[BOX]
        res = await station.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=backend_profile(10.0)))
        assert res.status == "Accepted"
        await wait_for(lambda: box.register(*SETPOINT) == 100, what="Modbus side: the backend's 10 A binds")
        profile = await next_limit(pybox, 10.0)
        assert profile["charging_profile_id"] == 501  # the backend's own profile, capped by the gateway

        # the backend forbids charging: the Modbus side stops the box too
        res = await station.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=backend_profile(0)))
        assert res.status == "Accepted"
        await wait_for(lambda: box.register(*SETPOINT) == 0, what="Modbus side: stopped while the backend says 0")

        # the backend lifts its limit: back to the load management's 16 A
        res = await station.call(call.ClearChargingProfile(id=501))
        assert res.status == "Accepted"
        await wait_for(lambda: box.register(*SETPOINT) == 160, what="Modbus side: 16 A again")

        # the load management lowers the site: both sides follow
        config["site"]["max_current_ma"] = 8000
        status, _, body = await asyncio.to_thread(cnf, manager, "cmd=set_config", method="POST", body=config)
        assert status == 200, body
        await wait_for(lambda: box.register(*SETPOINT) == 80, what="Modbus side: 8 A")
        await next_limit(pybox, 8.0)

        # the readings of the EVSE stay the Modbus box's own; the OCPP side is shown beside them
        info = (await asyncio.to_thread(cnf, manager, "cmd=get_dev_info"))[2]
        e1 = [d for d in info["devices"] if d["dev_id"] == "E1"][0]
        assert e1["reading"]["state"] == "C" and e1["reading"]["state_code"] == 7, e1
        assert e1["modbus"]["setpoint"] == {"current_ma": 8000, "enable": True}, e1
        assert e1["ocpp"]["connected"] is True and e1["ocpp"]["booted"] is True, e1
    finally:
        if ws is not None:
            await close_box(ws, task)
        await backend.stop()
