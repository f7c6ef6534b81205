"""End to end in one manager: the grid operator's `set_cm_vars AVAIL=0` arrives through the simulated Smart Meter
Gateway (mutual TLS on the CLS listener) and reaches two wallboxes as a zero limit — one on wss:// with security
profile 2, one on plain ws:// with profile 0, both on the one OCPP port in `detect` mode."""

import asyncio
import ssl
import threading
import time

from ocpp.v16 import call as ocall
from websockets.asyncio.client import connect

from chargemanager.adapters.certs import CertStore
from chargemanager.adapters.store import DataStore
from chargemanager.core.config import default_config, validate_config
from chargemanager.runtime import Runtime
from ocpp_pybox import PyBox, basic_auth_header, close_box

from .tls_helpers import load_tool, loose_client_context, read

smgw_sim = load_tool("smgw_sim")
PASSWORD = "0123456789abcdef0123"
WAIT_S = 20  # only to stop a broken run from hanging


def _limit(profile):
    return profile["charging_schedule"]["charging_schedule_period"][0]["limit"]


async def _next_limit(box, want):
    """Profiles arrive in order; the first one with limit `want` (intermediate ramps are allowed)."""
    while True:
        _, profile = await asyncio.wait_for(box.profiles.get(), WAIT_S)
        if _limit(profile) == want:
            return profile


async def _open(uri, cbid, password=None, ssl_ctx=None):
    headers = basic_auth_header(cbid, password) if password else None
    kw = {"ssl": ssl_ctx} if ssl_ctx is not None else {}
    ws = await connect(uri + cbid, subprotocols=["ocpp1.6"], additional_headers=headers, compression=None, **kw)
    box = PyBox(cbid, ws)
    return box, ws, asyncio.get_running_loop().create_task(box.start())


def _wait_running(rt):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if rt.http is not None and rt.smgw.listener.port and rt.ocpp.server is not None and \
                rt.ocpp.server.port:
            return
        time.sleep(0.05)
    raise AssertionError("manager did not start")


def test_grid_operator_avail_zero_through_the_smgw_reaches_the_wallboxes(tmp_path):
    sim = smgw_sim.SmgwSim(str(tmp_path / "smgw"))
    data = str(tmp_path / "data")
    # Certificates and configuration are in place before the manager starts, as on an installed appliance.
    certs = CertStore(data)
    ca_id = certs.import_cert("ca", read(sim.ca_path))[0]["id"]
    sim.trust(certs.certificate_pem("self-rsa"))
    doc = default_config()
    doc["site"] = dict(doc["site"], max_current_ma="32000 * AVAIL / 100", max_power_w=100000)
    doc["evses"] = [
        {"dev_id": "E1", "type": "ocpp16", "address": "WSS-BOX", "id": 1, "phases": 3, "security_profile": 2},
        {"dev_id": "E2", "type": "ocpp16", "address": "WS-BOX", "id": 1, "phases": 3, "security_profile": 0},
    ]
    doc["ocpp"] = {"server": dict(doc["ocpp"]["server"], tls="detect", password=PASSWORD)}
    doc["smgw"] = {"enabled": True, "address": "127.0.0.1", "trust": ca_id, "f2_grid_power": True}
    clean, errors = validate_config(doc)
    assert errors == [], errors
    DataStore(data).save_config(clean)
    rt = Runtime(data, http_port=0, ocpp_port=0, host="127.0.0.1")
    rt.smgw.cls_port = 0
    loop_thread = threading.Thread(target=rt.run, name="control-loop")
    loop_thread.start()
    try:
        _wait_running(rt)
        cls = "https://127.0.0.1:%d/cnf?" % rt.smgw.listener.port
        assert sim.cls_request(cls + "cmd=set_cm_vars&name=AVAIL&val=100")[0] == 200
        port = rt.ocpp.server.port
        pin = rt.certs.certificate_pem("self-rsa") + rt.certs.certificate_pem("self-ec")

        async def main():
            tls_box = await _open("wss://127.0.0.1:%d/" % port, "WSS-BOX", PASSWORD, loose_client_context(pin))
            plain_box = await _open("ws://127.0.0.1:%d/" % port, "WS-BOX", PASSWORD)
            boxes = (tls_box, plain_box)
            for box, _, _ in boxes:
                assert (await box.boot()).status == "Accepted"
                await _next_limit(box, 0)  # the default profile forbids charging
                await box.call(ocall.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            for box, _, _ in boxes:
                await _next_limit(box, 16.0)  # 32 A shared, each capped at its 16 A
            status, _ = await asyncio.to_thread(sim.cls_request, cls + "cmd=set_cm_vars&name=AVAIL&val=0")
            assert status == 200
            for box, _, _ in boxes:
                await _next_limit(box, 0)
            for _, ws, task in boxes:
                await close_box(ws, task)

        asyncio.run(main())
        audit = rt.smgw.audit.read()
        assert [(e["cmd"], e["query"].get("val"), e["status"]) for e in audit] == \
            [("set_cm_vars", "100", 200), ("set_cm_vars", "0", 200)]
        info = rt.load_manager.site_status()
        assert info["limit_reason"] == "grid_operator"
    finally:
        rt.stop()
        loop_thread.join(WAIT_S)


def test_gateway_link_to_the_billing_backend_through_the_smgw(tmp_path):
    """SMGW function 1 in the whole manager: a wallbox's OCPP gateway link to its wss:// backend runs TLS to the
    simulated SMGW (our client certificate), SOCKS5 CONNECT, then the backend's TLS; the backend (the `ocpp`
    package) answers the box's BootNotification through it."""
    from cryptography.hazmat.primitives import serialization
    from websockets.asyncio.server import serve

    from chargemanager.adapters.certs import make_self_signed
    from gateway_peers import Backend, wait_for

    sim = smgw_sim.SmgwSim(str(tmp_path / "smgw"))
    data = str(tmp_path / "data")
    cert, key = make_self_signed("ec", time.time(), ["localhost"], ["127.0.0.1"])
    backend_crt, backend_key = tmp_path / "backend.crt", tmp_path / "backend.key"
    backend_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    backend_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    certs = CertStore(data)
    smgw_ca = certs.import_cert("ca", read(sim.ca_path), name="SMGW")[0]["id"]
    certs.import_cert("ca", read(str(backend_crt)), name="backend")
    sim.trust(certs.certificate_pem("self-rsa"))

    async def main():
        backend = Backend(password=PASSWORD)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(backend_crt), str(backend_key))
        backend.server = await serve(backend._handler, "127.0.0.1", 0, ssl=ctx, subprotocols=["ocpp1.6"],
                                     process_request=backend._check, compression=None)
        backend.port = backend.server.sockets[0].getsockname()[1]
        proxy_port = await sim.start_proxy()
        doc = default_config()
        doc["evses"] = [{"dev_id": "E1", "type": "ocpp16", "address": "WB-SMGW", "id": 1, "phases": 3,
                         "gateway": {"url": "wss://localhost:%d/cs/" % backend.port, "password": PASSWORD,
                                     "client_id": "backend-wb1"}}]
        doc["smgw"] = {"enabled": True, "address": "127.0.0.1", "proxy_port": proxy_port, "trust": smgw_ca,
                       "f1_ocpp_gateway": True}
        clean, errors = validate_config(doc)
        assert errors == [], errors
        DataStore(data).save_config(clean)
        rt = Runtime(data, http_port=0, ocpp_port=0, host="127.0.0.1")
        loop_thread = threading.Thread(target=rt.run, name="control-loop")
        loop_thread.start()
        try:
            await asyncio.to_thread(_wait_ocpp, rt)
            await wait_for(lambda: (rt.ocpp.gateway_status().get("E1") or {}).get("connected"), what="backend link")
            box, ws, task = await _open("ws://127.0.0.1:%d/" % rt.ocpp.server.port, "WB-SMGW")
            res = await box.boot()
            assert res.current_time == "2026-01-01T00:00:00Z"  # the backend's answer, not a local one
            assert backend.actions("backend-wb1") == ["BootNotification"]
            await close_box(ws, task)
        finally:
            rt.stop()
            await asyncio.to_thread(loop_thread.join, WAIT_S)
            await sim.stop_proxy()
            await backend.stop()
        return backend.paths

    paths = asyncio.run(main())
    assert sim.connections and set(sim.connections) == {("localhost", sim.connections[0][1])}
    assert paths and all(p == "/cs/backend-wb1" for p in paths)


def _wait_ocpp(rt):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if rt.ocpp.server is not None and rt.ocpp.server.port and rt.ocpp.gateway is not None:
            return
        time.sleep(0.05)
    raise AssertionError("OCPP server did not start")
