"""The OCPP server's TLS modes and per-box security profiles, with wallboxes built on the `ocpp` package
(REFERENCE A1: white paper profiles; A00.FR.002: a box is refused on any other profile than configured)."""

import asyncio
import ssl

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from chargemanager.adapters import tls
from chargemanager.adapters.certs import CertStore
from chargemanager.adapters.ocpp_server import OcppServer
from chargemanager.core.config import validate_config
from ocpp_pybox import PyBox, basic_auth_header, close_box

from .tls_helpers import loose_client_context, read

PASSWORD = "0123456789abcdef0123"
EVSES = [
    {"dev_id": "E1", "type": "ocpp16", "address": "PLAIN0", "id": 1, "security_profile": 0},
    {"dev_id": "E2", "type": "ocpp16", "address": "BASIC1", "id": 1, "security_profile": 1},
    {"dev_id": "E3", "type": "ocpp16", "address": "TLS2", "id": 1, "security_profile": 2},
    {"dev_id": "E4", "type": "ocpp16", "address": "CERT3", "id": 1, "security_profile": 3},
]


def _server(tmp_path, seed_pki, mode, password=PASSWORD):
    store = CertStore(str(tmp_path / "data"))
    store.import_cert("ca", read(seed_pki["dir"] + "/rootCA.crt"))
    doc = {"ocpp": {"server": {"tls": mode, "password": password or ""}}, "evses": EVSES}
    clean, errors = validate_config(doc)
    assert errors == [], errors
    srv = OcppServer(clean["evses"], host="127.0.0.1", port=0, password=password, tls_mode=mode,
                     ssl_context_fn=tls.store_context_fn(store))
    srv.start()
    return srv, store


def _pin(store):
    return store.certificate_pem("self-rsa") + store.certificate_pem("self-ec")


async def _boot(uri, cbid, password=None, ssl_ctx=None):
    """Connect as the wallbox `cbid`, boot, disconnect; returns the BootNotification status."""
    headers = basic_auth_header(cbid, password) if password else None
    kw = {"ssl": ssl_ctx} if ssl_ctx is not None else {}
    ws = await connect(uri + cbid, subprotocols=["ocpp1.6"], additional_headers=headers, compression=None,
                       open_timeout=15, **kw)
    box = PyBox(cbid, ws)
    task = asyncio.get_running_loop().create_task(box.start())
    try:
        return (await box.boot()).status
    finally:
        await close_box(ws, task)


async def _refused(uri, cbid, password=None, ssl_ctx=None):
    try:
        await _boot(uri, cbid, password, ssl_ctx)
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body.decode().strip()
    except (ssl.SSLError, OSError, InvalidMessage, EOFError) as exc:
        return "handshake", type(exc).__name__
    return None


@pytest.fixture
def detect(tmp_path, seed_pki):
    srv, store = _server(tmp_path, seed_pki, "detect")
    yield srv, store
    srv.stop()


def test_detect_plain_and_tls_wallboxes_on_one_port(detect):
    srv, store = detect
    ws_uri, wss_uri = "ws://127.0.0.1:%d/" % srv.port, "wss://127.0.0.1:%d/" % srv.port

    async def main():
        return [await _boot(ws_uri, "PLAIN0", PASSWORD),
                await _boot(ws_uri, "BASIC1", PASSWORD),
                await _boot(wss_uri, "TLS2", PASSWORD, loose_client_context(_pin(store)))]

    assert asyncio.run(main()) == ["Accepted", "Accepted", "Accepted"]


def test_profile_2_refused_over_plain_ws_even_with_password(detect):
    srv, _ = detect
    status = asyncio.run(_refused("ws://127.0.0.1:%d/" % srv.port, "TLS2", PASSWORD))
    assert status == (403, "security profile 2 needs TLS (wss://); plain ws:// refused")


def test_profile_3_needs_a_client_certificate_from_the_trusted_ca(detect, seed_pki):
    srv, store = detect
    wss = "wss://127.0.0.1:%d/" % srv.port
    d, other = seed_pki["dir"], seed_pki["other"]

    async def main():
        return {
            "plain": await _refused("ws://127.0.0.1:%d/" % srv.port, "CERT3"),
            "no_cert": await _refused(wss, "CERT3", ssl_ctx=loose_client_context(_pin(store))),
            "wrong_ca": await _refused(wss, "CERT3", ssl_ctx=loose_client_context(
                _pin(store), other + "/client.crt", other + "/client.key")),
            "seed_cert": await _boot(wss, "CERT3", ssl_ctx=loose_client_context(
                _pin(store), d + "/client.crt", d + "/client.key")),
        }

    r = asyncio.run(main())
    assert r["plain"][0] == 403 and "needs TLS" in r["plain"][1]
    assert r["no_cert"] == (403, "security profile 3 needs a client certificate issued by a trusted CA")
    assert r["wrong_ca"][0] == "handshake"
    assert r["seed_cert"] == "Accepted"


def test_profile_0_box_still_works_when_a_wallbox_offers_a_certificate(detect, seed_pki):
    """A box with a certificate the manager trusts may still be configured for profile 0/1 (it just isn't needed)."""
    srv, store = detect
    d = seed_pki["dir"]
    ctx = loose_client_context(_pin(store), d + "/client.crt", d + "/client.key")
    assert asyncio.run(_boot("wss://127.0.0.1:%d/" % srv.port, "PLAIN0", PASSWORD, ctx)) == "Accepted"


def test_mode_on_refuses_plain_wallboxes(tmp_path, seed_pki):
    srv, store = _server(tmp_path, seed_pki, "on")
    try:
        async def main():
            return (await _refused("ws://127.0.0.1:%d/" % srv.port, "PLAIN0", PASSWORD),
                    await _boot("wss://127.0.0.1:%d/" % srv.port, "TLS2", PASSWORD,
                                loose_client_context(_pin(store))))
        refused, ok = asyncio.run(main())
    finally:
        srv.stop()
    assert refused is not None and refused[0] == "handshake"
    assert ok == "Accepted"


def test_new_server_certificate_applies_without_restart(detect, seed_pki):
    """An imported server certificate is presented at the next handshake (the context is rebuilt on change)."""
    srv, store = detect
    d = seed_pki["dir"]
    store.import_cert("server", read(d + "/client.crt"), read(d + "/client.key"))
    ctx = loose_client_context(read(d + "/rootCA.crt"), max_version=ssl.TLSVersion.TLSv1_2,
                               ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    assert asyncio.run(_boot("wss://127.0.0.1:%d/" % srv.port, "TLS2", PASSWORD, ctx)) == "Accepted"


def test_config_refuses_profiles_the_server_settings_cannot_serve():
    doc = {"ocpp": {"server": {"tls": "off", "password": ""}}, "evses": EVSES}
    errors = validate_config(doc)[1]
    fields = sorted((e["field"], e["error"]) for e in errors)
    assert fields == [
        ("evses[1].security_profile", "profile 1 needs the OCPP server password (ocpp.server.password)"),
        ("evses[2].security_profile", "profile 2 needs TLS: set ocpp.server.tls to detect or on"),
        ("evses[2].security_profile", "profile 2 needs the OCPP server password (ocpp.server.password)"),
        ("evses[3].security_profile", "profile 3 needs TLS: set ocpp.server.tls to detect or on"),
    ]


def test_server_settings_changed_many_times_keep_one_store_listener(tmp_path, seed_pki):
    """Each change of ocpp.server rebuilds the server; the TLS context function (a certificate-store listener) is
    made once, so the store does not collect listeners, and TLS boxes still connect afterwards."""
    import threading
    import time

    from chargemanager.runtime import Runtime
    from chargemanager.adapters.store import DataStore
    data = str(tmp_path / "data")
    CertStore(data).import_cert("ca", read(seed_pki["dir"] + "/rootCA.crt"))
    clean, errors = validate_config({"ocpp": {"server": {"tls": "detect", "password": PASSWORD}}, "evses": EVSES})
    assert errors == [], errors
    DataStore(data).save_config(clean)
    rt = Runtime(data, http_port=0, ocpp_port=0, host="127.0.0.1")
    loop_thread = threading.Thread(target=rt.run, name="control-loop")
    loop_thread.start()
    try:
        deadline = time.monotonic() + 20
        while rt.http is None or rt.ocpp.server is None or not rt.ocpp.server.port:
            assert time.monotonic() < deadline, "manager did not start"
            time.sleep(0.05)
        listeners = len(rt.certs._listeners)
        for ping_s in (20, 25, 30):
            doc = dict(rt.config, ocpp={"server": dict(rt.config["ocpp"]["server"], ping_interval_s=ping_s)})
            rt.apply_config(validate_config(doc)[0])
        assert len(rt.certs._listeners) == listeners
        port = rt.ocpp.server.port
        status = asyncio.run(_boot("wss://127.0.0.1:%d/" % port, "TLS2", PASSWORD, loose_client_context(_pin(rt.certs))))
        assert status == "Accepted"
    finally:
        rt.stop()
        loop_thread.join(20)
