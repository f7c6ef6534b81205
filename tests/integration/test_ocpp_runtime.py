"""The whole manager process with wallboxes built on the Python `ocpp` package: the grid operator's `set_cm_vars
AVAIL=50` changes the charging profiles the boxes receive; get_dev_info, clear_profiles, override_device."""

import asyncio
import time

from httpclient import call
from ocpp.v16 import call as ocall

from ocpp_pybox import close_box, open_box

WAIT_S = 20  # only to stop a broken run from hanging


def cnf(manager, query, **kw):
    return call(manager.url + "/cnf?" + query, **kw)


def ocpp_port(manager):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status = cnf(manager, "cmd=get_status")[2]
        if status.get("ocpp", {}).get("running"):
            return status["ocpp"]["port"]
        time.sleep(0.05)
    raise AssertionError("OCPP server not running: %r" % status.get("ocpp"))


def configure(manager, password="", ping_interval_s=30):
    config = cnf(manager, "cmd=get_config")[2]["config"]
    config["site"].update({"max_current_ma": "32000 * AVAIL / 100", "max_power_w": 100000})
    config["evses"] = [{"dev_id": "E1", "type": "ocpp16", "address": "BOX1", "id": 1, "phases": 3},
                       {"dev_id": "E2", "type": "ocpp16", "address": "BOX2", "id": 1, "phases": 3}]
    config["ocpp"]["server"]["password"] = password
    config["ocpp"]["server"]["ping_interval_s"] = ping_interval_s
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=config)
    assert status == 200, body


def _limit(profile):
    return profile["charging_schedule"]["charging_schedule_period"][0]["limit"]


async def next_limit(box, want):
    """Profiles arrive in order; return the first one with limit `want` (intermediate ramps are allowed)."""
    while True:
        _, profile = await asyncio.wait_for(box.profiles.get(), WAIT_S)
        if _limit(profile) == want:
            return profile


def test_set_cm_vars_avail_changes_the_profiles(manager):
    assert cnf(manager, "cmd=set_cm_vars&name=AVAIL&val=100")[0] == 200
    configure(manager)
    port = ocpp_port(manager)

    async def main():
        b1, ws1, t1 = await open_box(port, "BOX1")
        b2, ws2, t2 = await open_box(port, "BOX2")
        for box in (b1, b2):
            assert (await box.boot()).status == "Accepted"
            await next_limit(box, 0)  # the default profile forbids charging
            await box.call(ocall.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        # 32 A per phase shared by two cars, each capped at its 16 A maximum
        await next_limit(b1, 16.0)
        await next_limit(b2, 16.0)
        # the grid operator halves the connection: 16 A for both, 8 A each
        status, _, _ = await asyncio.to_thread(cnf, manager, "cmd=set_cm_vars&name=AVAIL&val=50")
        assert status == 200
        await next_limit(b1, 8.0)
        await next_limit(b2, 8.0)

        # The box has the profile; its answer reaches the manager's record a moment later.
        for _ in range(200):
            info = (await asyncio.to_thread(cnf, manager, "cmd=get_dev_info"))[2]
            devices = dict((d["dev_id"], d) for d in info["devices"])
            if (devices["E1"]["ocpp"].get("profile") or {}).get("limit") == 8.0:
                break
            await asyncio.sleep(0.05)
        assert devices["E1"]["last_set_charging_cur"] == 8000
        assert devices["E1"]["ocpp"]["connected"] is True and devices["E1"]["ocpp"]["status"] == "Charging"
        assert devices["E1"]["ocpp"]["profile"]["limit"] == 8.0
        assert devices["E1"]["ocpp"]["capabilities"]["max_stack_level"] == 8
        assert devices["E1"]["ocpp"]["boot"]["vendor"] == "Test"
        assert devices["E1"]["state"] == "Charging"

        # charging disabled for E2 by the admin: its profile goes to 0, E1 may take more (up to its 16 A)
        status, _, _ = await asyncio.to_thread(cnf, manager, "cmd=override_device&dev_id=E2&flags=C")
        assert status == 200
        await next_limit(b2, 0)
        await next_limit(b1, 16.0)

        status, _, body = await asyncio.to_thread(cnf, manager, "cmd=clear_profiles&dev_id=E1")
        assert status == 200 and body == {"ok": True, "dev_id": "E1", "status": "Accepted"}
        assert await asyncio.wait_for(b1.clears.get(), WAIT_S) == {}
        await close_box(ws1, t1)
        await close_box(ws2, t2)

    asyncio.run(main())
    assert cnf(manager, "cmd=clear_profiles&dev_id=E1")[0] == 409  # not connected any more
    assert cnf(manager, "cmd=clear_profiles&dev_id=E7")[0] == 404
    assert cnf(manager, "cmd=clear_profiles")[0] == 400
    deadline = time.monotonic() + WAIT_S
    while True:  # the next tick sees the box gone
        devices = dict((d["dev_id"], d) for d in cnf(manager, "cmd=get_dev_info")[2]["devices"])
        if devices["E1"]["reason"] == "offline" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert devices["E1"]["state"] == "Offline" and devices["E1"]["reason"] == "offline"


def test_server_password_and_seen_unconfigured(manager):
    config = cnf(manager, "cmd=get_config")[2]["config"]
    config["ocpp"]["server"]["ping_interval_s"] = 60  # must stay below 60 s
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=config)
    assert status == 400 and body["fields"][0]["field"] == "ocpp.server.ping_interval_s", body
    configure(manager, password="0123456789abcdef0123", ping_interval_s=0)  # pings off (boxes that never pong)
    port = ocpp_port(manager)

    async def main():
        try:
            await open_box(port, "BOX1", password="wrong-password-xyz")
            raise AssertionError("wrong password accepted")
        except Exception as e:
            assert getattr(getattr(e, "response", None), "status_code", None) == 401, e
        try:
            await open_box(port, "STRANGER")
            raise AssertionError("unknown box accepted")
        except Exception as e:
            assert getattr(getattr(e, "response", None), "status_code", None) == 404, e
        box, ws, task = await open_box(port, "BOX1", password="0123456789abcdef0123")
        assert (await box.boot()).status == "Accepted"
        await close_box(ws, task)

    asyncio.run(main())
    status = cnf(manager, "cmd=get_status")[2]["ocpp"]
    assert [s["chargebox_id"] for s in status["seen_unconfigured"]] == ["STRANGER"]
    assert "0123456789abcdef0123" not in str(cnf(manager, "cmd=get_config")[2])


def test_busy_ocpp_port_leaves_the_api_running(tmp_path):
    import os
    import re
    import socket
    import subprocess
    import sys

    class Started:
        url = None

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy_port = blocker.getsockname()[1]
    data = str(tmp_path / "data")
    os.makedirs(data)
    subprocess.run([sys.executable, "-m", "chargemanager", "set-password", "--data", data, "--password-stdin"],
                   input="1234abcd\n", text=True, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "chargemanager", "run", "--data", data, "--host", "127.0.0.1",
                             "--http-port", "0", "--ocpp-port", str(busy_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in proc.stdout:
            match = re.search(r"http listening on port (\d+)", line)
            if match:
                Started.url = "http://127.0.0.1:%s" % match.group(1)
                break
        assert Started.url, "the manager did not start its HTTP API"
        status = cnf(Started, "cmd=get_status")[2]["ocpp"]
        assert status["running"] is False
        assert "cannot listen on OCPP port %d" % busy_port in status["error"]
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
        blocker.close()


def test_tls_detect_serves_ws_and_wss_on_one_port(manager):
    import ssl

    from websockets.asyncio.client import connect

    from ocpp_pybox import PyBox

    config = cnf(manager, "cmd=get_config")[2]["config"]
    config["evses"] = [{"dev_id": "E1", "type": "ocpp16", "address": "BOX1", "id": 1},
                       {"dev_id": "E2", "type": "ocpp16", "address": "BOX2", "id": 1}]
    config["ocpp"]["server"]["tls"] = "detect"
    status, _, body = cnf(manager, "cmd=set_config", method="POST", body=config)
    assert status == 200, body
    port = ocpp_port(manager)
    assert cnf(manager, "cmd=get_status")[2]["ocpp"]["tls"] == "detect"
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE  # the manager's self-signed certificate; the TLS tests check trust

    async def main():
        for cbid, url, kw in (("BOX1", "ws://127.0.0.1:%d/BOX1" % port, {}),
                              ("BOX2", "wss://127.0.0.1:%d/BOX2" % port, {"ssl": client_ctx})):
            ws = await connect(url, subprotocols=["ocpp1.6"], compression=None, **kw)
            box = PyBox(cbid, ws)
            task = asyncio.get_running_loop().create_task(box.start())
            assert (await box.boot()).status == "Accepted"
            await next_limit(box, 0)
            await close_box(ws, task)

    asyncio.run(main())
