"""The Smart Meter Gateway channel against the SMGW simulator (tools/smgw_sim.py), over loopback with real TLS.

- CLS listener: the simulator's certificate is accepted and may call set_cm_vars/get_cm_vars without a password;
  other commands only with function 4; a self-made certificate and no certificate are refused at the handshake.
- Proxy channel (function 1): an OCPP link from a charge point id to a backend through TLS + SOCKS5 (and the
  HTTP CONNECT variant), the backend's own TLS inside; the backend is the independent `ocpp` package.
- Failsafe: AVAIL falls to its failsafe value, the grid operator's next write ends it, both audited with the site
  power; the state survives a restart.
"""

import asyncio
import http.client
import json
import socket
import ssl
import time

import pytest
from cryptography.hazmat.primitives import serialization
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, RegistrationStatus
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve

from chargemanager.adapters import tls
from chargemanager.adapters.certs import make_self_signed
from chargemanager.core.config import validate_config
from chargemanager.runtime import Runtime
from chargemanager.shim.clock import monotonic_ms

from .tls_helpers import load_tool, read

smgw_sim = load_tool("smgw_sim")


def _make_runtime(data, sim, **smgw):
    rt = Runtime(str(data), http_port=0, ocpp_port=0, host="127.0.0.1")
    ca_id = rt.certs.import_cert("ca", read(sim.ca_path), name="SMGW Test-CA")[0]["id"]
    settings = {"enabled": True, "address": "127.0.0.1", "trust": ca_id, "cert": "self-rsa", "f2_grid_power": True}
    settings.update(smgw)
    doc = dict(rt.config)
    doc["smgw"] = settings
    doc["meters"] = [{"dev_id": "M1", "type": "eastron_sdm630", "role": "grid"}]
    clean, errors = validate_config(doc)
    assert errors == []
    rt.apply_config(clean)
    rt.smgw.cls_port = 0
    sim.trust(rt.certs.certificate_pem("self-rsa"))
    return rt


@pytest.fixture
def sim(tmp_path):
    return smgw_sim.SmgwSim(str(tmp_path / "smgw"))


@pytest.fixture
def runtime(tmp_path, sim):
    rt = _make_runtime(tmp_path / "data", sim)
    rt.start()
    yield rt
    rt.shutdown()


def _url(rt, query):
    return "https://127.0.0.1:%d/cnf?%s" % (rt.smgw.listener.port, query)


def test_grid_operator_sets_avail_through_the_cls_channel_without_password(runtime, sim):
    runtime.readings.publish("M1", {"power_w": 7360}, monotonic_ms())
    status, doc = sim.cls_request(_url(runtime, "cmd=set_cm_vars&name=AVAIL&val=0"))
    assert (status, doc["ok"]) == (200, True)
    # The variable the house connection formula reads is now 0, and the loop was woken.
    assert runtime.variables.evaluate()["AVAIL"] == 0
    assert runtime.wake.is_set()
    status, doc = sim.cls_request(_url(runtime, "cmd=get_cm_vars"))
    assert status == 200
    assert {"name": "AVAIL", "expr": 0, "val": 0} in doc["vars"]
    # The seed's multi-variable POST through the SMGW, too.
    status, doc = sim.cls_request(_url(runtime, "cmd=set_cm_vars"), "POST",
                                  {"vars": [{"name": "TARIF", "expr": 1}, {"name": "PWR", "expr": 70}]})
    assert status == 200 and doc["set"] == ["TARIF", "PWR"]
    audit = runtime.smgw.audit.read()
    assert [e["cmd"] for e in audit] == ["set_cm_vars", "get_cm_vars", "set_cm_vars"]
    first = audit[0]
    assert first["kind"] == "command" and first["status"] == 200 and first["site_power_w"] == 7360
    assert first["query"] == {"cmd": "set_cm_vars", "name": "AVAIL", "val": "0"}
    assert "CN=1ESY1160012345" in first["peer"] and "Messstellenbetrieb Köln GmbH" in first["peer"]
    assert json.loads(audit[2]["body"])["vars"][1] == {"name": "PWR", "expr": 70}


def test_other_commands_need_function_4(tmp_path, sim):
    rt = _make_runtime(tmp_path / "data", sim)
    rt.start()
    try:
        status, doc = sim.cls_request(_url(rt, "cmd=get_config"))
        assert status == 403 and "function 4" in doc["error"]
        status, doc = sim.cls_request(_url(rt, "cmd=get_certs"))
        assert status == 403
        cfg = dict(rt.config)
        cfg["smgw"] = dict(cfg["smgw"], f4_admin=True)
        rt.apply_config(validate_config(cfg)[0])
        status, doc = sim.cls_request(_url(rt, "cmd=get_certs"))
        assert status == 200
        assert {"self-rsa", "self-ec"} <= {c["id"] for c in doc["certs"]}
        assert "PRIVATE" not in json.dumps(doc)
    finally:
        rt.shutdown()


def test_self_made_and_missing_certificates_refused_at_the_handshake(runtime, sim, tmp_path):
    cert, key = sim.self_made(str(tmp_path / "impostor"))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        sim.cls_request(_url(runtime, "cmd=set_cm_vars&name=AVAIL&val=0"), cert=cert, key=key)
    # The manager's own home-network client (no certificate at all).
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", runtime.smgw.listener.port, context=ctx, timeout=30)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn.request("GET", "/cnf?cmd=get_cm_vars")
        conn.getresponse().read()
    conn.close()
    # Nothing reached the variables or the audit log.
    assert "AVAIL" not in runtime.variables.evaluate()
    assert runtime.smgw.audit.read() == []
    # The simulator's real certificate still works afterwards.
    assert sim.cls_request(_url(runtime, "cmd=get_cm_vars"))[0] == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1")
def test_tls11_refused_on_the_cls_listener(runtime, sim):
    ctx = sim.client_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    conn = http.client.HTTPSConnection("127.0.0.1", runtime.smgw.listener.port, context=ctx, timeout=30)
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):  # the server's alert, not a client-side refusal
        conn.request("GET", "/cnf?cmd=get_cm_vars")
    conn.close()


def test_home_network_api_still_needs_the_password(runtime):
    conn = http.client.HTTPConnection("127.0.0.1", runtime.http_port, timeout=30)
    conn.request("GET", "/cnf?cmd=set_cm_vars&name=AVAIL&val=0")
    resp = conn.getresponse()
    assert resp.status == 403  # no admin password set yet: nothing is accepted without one
    resp.read()
    conn.close()


# --- failsafe ------------------------------------------------------------------------------------------------------

def test_failsafe_entry_and_exit_audited_and_survive_restart(tmp_path, sim):
    failsafe = [{"name": "AVAIL", "timeout_s": 60, "value": "round(4200 * 100 / 55000)"}]
    rt = _make_runtime(tmp_path / "data", sim, failsafe=failsafe)
    rt.start()
    try:
        rt.readings.publish("M1", {"power_w": 11000}, monotonic_ms())
        assert sim.cls_request(_url(rt, "cmd=set_cm_vars&name=AVAIL&val=100"))[0] == 200
        rt.smgw.failsafe.tick(monotonic_ms() + 59000)
        assert rt.variables.evaluate()["AVAIL"] == 100
        rt.smgw.failsafe.tick(monotonic_ms() + 61000)
        assert rt.variables.evaluate()["AVAIL"] == 8  # 4.2 kW of 55 kW
        state = rt.smgw.status()["failsafe"][0]
        assert state["active"] is True
        kinds = [(e["kind"], e.get("variable")) for e in rt.smgw.audit.read()]
        assert kinds[-1] == ("failsafe_enter", "AVAIL")
        assert rt.smgw.audit.read()[-1]["site_power_w"] == 11000
    finally:
        rt.shutdown()
    # Restart: still in failsafe (EEBUS LPC-TS-017), value kept.
    rt2 = Runtime(str(tmp_path / "data"), http_port=0, ocpp_port=0, host="127.0.0.1")
    rt2.smgw.cls_port = 0
    rt2.start()
    try:
        assert rt2.smgw.status()["failsafe"][0]["active"] is True
        assert rt2.variables.evaluate()["AVAIL"] == 8
        # An admin write from the home network does not end it; the grid operator's does.
        rt2.variables.set_batch([("AVAIL", 50)], source="admin")
        assert rt2.smgw.status()["failsafe"][0]["active"] is True
        assert sim.cls_request(_url(rt2, "cmd=set_cm_vars&name=AVAIL&val=60"))[0] == 200
        assert rt2.smgw.status()["failsafe"][0]["active"] is False
        assert rt2.variables.evaluate()["AVAIL"] == 60
        kinds = [e["kind"] for e in rt2.smgw.audit.read()]
        assert kinds[-2:] == ["failsafe_exit", "command"]
    finally:
        rt2.shutdown()


# --- proxy channel (function 1) ------------------------------------------------------------------------------------

class _Backend(ChargePoint):
    @on(Action.boot_notification)
    def on_boot(self, charge_point_vendor, charge_point_model, **kwargs):
        return call_result.BootNotification(current_time="2026-11-22T03:00:00Z", interval=300,
                                            status=RegistrationStatus.accepted)


def _backend_cert(tmp_path):
    cert, key = make_self_signed("ec", time.time(), ["localhost"], ["127.0.0.1"])
    c, k = tmp_path / "backend.crt", tmp_path / "backend.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


@pytest.mark.parametrize("method,api", [
    ("socks5", "connect"),       # SmgwChannel.connect: drop-in for websockets' connect
    ("socks5", "socket"),        # SmgwChannel.socket_connector: the OCPP gateway's `connector(host, port)` hook
    ("http_connect", "connect"),
    ("http_connect", "socket"),
])
def test_ocpp_link_through_the_smgw_proxy_end_to_end(tmp_path, sim, method, api):
    backend_crt, backend_key = _backend_cert(tmp_path)
    rt = _make_runtime(tmp_path / "data", sim, f1_ocpp_gateway=True, proxy_method=method)
    seen = {}

    async def handler(connection):
        seen["path"] = connection.request.path
        seen["tls"] = tls.peer_info(connection.transport)["tls"]
        seen["peer"] = connection.remote_address[0]
        cp = _Backend(connection.request.path.strip("/"), connection)
        try:
            await cp.start()
        except Exception:
            pass

    async def main():
        backend_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        backend_ctx.load_cert_chain(backend_crt, backend_key)
        backend = await serve(handler, "127.0.0.1", 0, ssl=backend_ctx, subprotocols=["ocpp1.6"])
        backend_port = backend.sockets[0].getsockname()[1]
        proxy_port = await sim.start_proxy()
        cfg = dict(rt.config)
        cfg["smgw"] = dict(cfg["smgw"], proxy_port=proxy_port)
        rt.apply_config(validate_config(cfg)[0])
        try:
            client_ctx = tls.client_context(ca_pem=read(backend_crt))
            uri = "wss://localhost:%d/ocpp/WB-0815" % backend_port
            if api == "connect":
                link = rt.smgw.channel.connect(uri, ssl=client_ctx, subprotocols=["ocpp1.6"], open_timeout=20)
            else:
                sock = await rt.smgw.channel.socket_connector("localhost", backend_port)
                link = ws_connect(uri, sock=sock, ssl=client_ctx, proxy=None, subprotocols=["ocpp1.6"],
                                  open_timeout=20)
            async with link as ws:
                cp = ChargePoint("WB-0815", ws)
                task = asyncio.ensure_future(cp.start())
                result = await cp.call(call.BootNotification(charge_point_vendor="Köln Wallbox",
                                                             charge_point_model="T1"))
                task.cancel()
                return result
        finally:
            await sim.stop_proxy()
            backend.close()
            await backend.wait_closed()

    try:
        result = asyncio.run(main())
    finally:
        rt.shutdown()
    assert result.status == RegistrationStatus.accepted
    assert sim.connections == [("localhost", int(sim.connections[0][1]))]
    assert seen["path"] == "/ocpp/WB-0815" and seen["tls"] is True


def test_proxy_refuses_a_manager_it_does_not_trust(tmp_path, sim):
    rt = _make_runtime(tmp_path / "data", sim, f1_ocpp_gateway=True)
    sim.trust(rt.certs.certificate_pem("self-ec"))  # the SMGW admin pinned another certificate

    async def main():
        port = await sim.start_proxy()
        cfg = dict(rt.config)
        cfg["smgw"] = dict(cfg["smgw"], proxy_port=port)
        rt.apply_config(validate_config(cfg)[0])
        try:
            async with rt.smgw.channel.connect("ws://127.0.0.1:9/x", open_timeout=20):
                return "connected"
        except Exception as exc:
            return exc
        finally:
            await sim.stop_proxy()

    try:
        outcome = asyncio.run(main())
    finally:
        rt.shutdown()
    assert isinstance(outcome, (ssl.SSLError, ConnectionError, OSError)), outcome
    assert sim.connections == []


def test_unreachable_backend_gives_a_clear_socks_error(tmp_path, sim):
    rt = _make_runtime(tmp_path / "data", sim, f1_ocpp_gateway=True)

    async def main():
        port = await sim.start_proxy()
        cfg = dict(rt.config)
        cfg["smgw"] = dict(cfg["smgw"], proxy_port=port)
        rt.apply_config(validate_config(cfg)[0])
        # A port nobody listens on: bind one, note it, close it.
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        dead_port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        try:
            await rt.smgw.channel.socket_connector("127.0.0.1", dead_port)
            return None
        except ConnectionError as exc:
            return exc
        finally:
            await sim.stop_proxy()

    try:
        exc = asyncio.run(main())
    finally:
        rt.shutdown()
    assert exc is not None and "connection refused" in str(exc)


def test_function_1_off_connects_directly(tmp_path, sim):
    rt = _make_runtime(tmp_path / "data", sim, f1_ocpp_gateway=False)

    async def main():
        got = []
        arrived = asyncio.Event()

        async def accept(reader, writer):
            got.append(await reader.readexactly(5))
            arrived.set()
            writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sock = await rt.smgw.channel.socket_connector("127.0.0.1", port)
        sock.sendall(b"hello")
        await arrived.wait()
        sock.close()
        server.close()
        await server.wait_closed()
        return got

    try:
        assert asyncio.run(main()) == [b"hello"]
    finally:
        rt.shutdown()
    assert sim.connections == []


def test_avail_zero_through_the_smgw_stops_the_charging_at_the_next_tick(tmp_path, sim):
    """The seed's example: house connection power `55000 * AVAIL / 100`; the grid operator sets AVAIL=0 through
    the SMGW; the woken control loop grants the charging car 0 A, bound by the grid operator."""
    rt = _make_runtime(tmp_path / "data", sim)
    cfg = dict(rt.config)
    cfg["site"] = dict(cfg["site"], max_power_w="55000 * AVAIL / 100", max_current_ma=80000)
    cfg["evses"] = [{"dev_id": "E1", "type": "ocpp16", "address": "WB1", "id": 1, "phases": 3}]
    clean, errors = validate_config(cfg)
    assert errors == []
    rt.apply_config(clean)
    rt.start()
    try:
        def tick():
            now = monotonic_ms()
            rt.readings.publish("M1", {"power_w": 3000, "current_l1_ma": 4300, "current_l2_ma": 4300,
                                       "current_l3_ma": 4300}, now)
            rt.readings.publish("E1", {"online": True, "wants": True, "current_l1_ma": 0, "current_l2_ma": 0,
                                       "current_l3_ma": 0, "power_w": 0}, now)
            rt.tick(now)
            return rt.load_manager.decision.evses["E1"]

        assert sim.cls_request(_url(rt, "cmd=set_cm_vars&name=AVAIL&val=100"))[0] == 200
        before = tick()
        assert before.current_ma >= 16000, before.to_dict()
        rt.wake.clear()
        assert sim.cls_request(_url(rt, "cmd=set_cm_vars&name=AVAIL&val=0"))[0] == 200
        assert rt.wake.is_set()  # the loop runs at once, not at the next regular tick
        after = tick()
        assert after.current_ma == 0 and after.enable is False, after.to_dict()
        assert rt.load_manager.site_status()["limit_reason"] == "grid_operator"
    finally:
        rt.shutdown()


def test_an_idle_connection_does_not_hold_up_the_grid_operator(runtime, sim):
    """Someone on the home network opens the CLS port and sends nothing: the SMGW's request is still served (the
    TLS handshake runs per connection, not in the accepting thread)."""
    idle = socket.create_connection(("127.0.0.1", runtime.smgw.listener.port))
    try:
        assert sim.cls_request(_url(runtime, "cmd=get_cm_vars"))[0] == 200
        # The idle connection is still open, so the request did not wait for the idle one to time out first (with
        # the handshake in the accepting thread it would have been closed before the request was even accepted).
        idle.setblocking(False)
        with pytest.raises(BlockingIOError):
            idle.recv(1)
    finally:
        idle.close()
