"""Real TLS handshakes over loopback against the OCPP listener modes (SPEC §4, REFERENCE A1).

The server here is websockets' own ``serve`` with our ``tls.serve_kwargs``: exactly what the OCPP server uses.
The handler reports what the connection's transport says about its security, so each test sees the server's view.
"""

import asyncio
import json
import ssl
import subprocess

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidMessage

from chargemanager.adapters import tls
from chargemanager.adapters.certs import CertStore

from .tls_helpers import loose_client_context, read


async def _report(connection):
    info = tls.peer_info(connection.transport)
    info["path"] = connection.request.path
    info["cn"] = tls.cert_common_name(info["peer_cert"])
    info.pop("peer_cert")
    await connection.send(json.dumps(info))


def _store(tmp_path, seed_pki=None):
    store = CertStore(str(tmp_path / "data"))
    if seed_pki:
        store.import_cert("ca", read(seed_pki["dir"] + "/rootCA.crt"))
    return store


async def _ask(uri, **kw):
    async with connect(uri, open_timeout=10, **kw) as ws:
        return json.loads(await ws.recv())


async def _serve(store, mode, client_cert="none"):
    def ctx():
        return tls.server_context(store, client_ca_pem=store.ca_pem() or None, client_cert=client_cert)
    return await serve(_report, "127.0.0.1", 0, **tls.serve_kwargs(mode, ctx))


def _server_cert_pem(store):
    return "".join(store.certificate_pem(i) for i in ("self-rsa", "self-ec"))


def test_detect_serves_plain_and_tls_wallbox_on_one_port(tmp_path):
    store = _store(tmp_path)

    async def main():
        server = await _serve(store, "detect")
        port = server.sockets[0].getsockname()[1]
        try:
            plain = await _ask("ws://127.0.0.1:%d/CP-PLAIN" % port)
            secure = await _ask("wss://127.0.0.1:%d/CP-TLS" % port,
                                ssl=loose_client_context(_server_cert_pem(store)))
            # And the plain one again after a TLS one: the listener keeps telling them apart.
            plain2 = await _ask("ws://127.0.0.1:%d/CP-PLAIN2" % port)
        finally:
            server.close()
            await server.wait_closed()
        return plain, secure, plain2

    plain, secure, plain2 = asyncio.run(main())
    assert plain == {"tls": False, "version": None, "cipher": None, "path": "/CP-PLAIN", "cn": None}
    assert plain2["tls"] is False and plain2["path"] == "/CP-PLAIN2"
    assert secure["tls"] is True and secure["path"] == "/CP-TLS"
    assert secure["version"] in ("TLSv1.2", "TLSv1.3")


def test_mode_on_refuses_plain_and_off_refuses_tls(tmp_path):
    store = _store(tmp_path)

    async def main():
        on = await _serve(store, "on")
        off = await _serve(store, "off")
        on_port = on.sockets[0].getsockname()[1]
        off_port = off.sockets[0].getsockname()[1]
        results = {}
        try:
            results["on_tls"] = await _ask("wss://127.0.0.1:%d/A" % on_port,
                                           ssl=loose_client_context(_server_cert_pem(store)))
            try:
                await _ask("ws://127.0.0.1:%d/B" % on_port)
                results["on_plain"] = "accepted"
            except (InvalidMessage, OSError, EOFError) as e:
                results["on_plain"] = type(e).__name__
            try:
                await _ask("wss://127.0.0.1:%d/C" % off_port, ssl=loose_client_context(_server_cert_pem(store)))
                results["off_tls"] = "accepted"
            except (ssl.SSLError, OSError, InvalidMessage) as e:
                results["off_tls"] = type(e).__name__
            results["off_plain"] = await _ask("ws://127.0.0.1:%d/D" % off_port)
        finally:
            for s in (on, off):
                s.close()
                await s.wait_closed()
        return results

    r = asyncio.run(main())
    assert r["on_tls"]["tls"] is True
    assert r["on_plain"] != "accepted"
    assert r["off_tls"] != "accepted"
    assert r["off_plain"]["tls"] is False


@pytest.mark.parametrize("cipher,cert_type", [
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "ec"),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "ec"),
    ("AES128-GCM-SHA256", "rsa"),
    ("AES256-GCM-SHA384", "rsa"),
])
def test_white_paper_cipher_suites_negotiate_over_tls12(tmp_path, cipher, cert_type):
    """A00.FR.317: each of the four required suites works on its own (hence an RSA and an ECDSA certificate)."""
    store = _store(tmp_path)
    pin = store.certificate_pem("self-" + cert_type)

    async def main():
        server = await _serve(store, "detect")
        port = server.sockets[0].getsockname()[1]
        try:
            ctx = loose_client_context(pin, max_version=ssl.TLSVersion.TLSv1_2, ciphers=cipher)
            return await _ask("wss://127.0.0.1:%d/CP" % port, ssl=ctx)
        finally:
            server.close()
            await server.wait_closed()

    r = asyncio.run(main())
    assert r["version"] == "TLSv1.2"
    assert r["cipher"] == cipher


def _openssl_client(port, *args):
    proc = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-brief"] + list(args),
                          input="", capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("version_flag", ["-tls1", "-tls1_1"])
def test_tls10_and_tls11_refused_by_the_server(tmp_path, version_flag, caplog):
    """The client is OpenSSL at security level 0, so it really offers the old version; the server refuses it
    (A00.FR.314). asyncio closes without flushing the alert, so the client sees an EOF; the server's log says why."""
    store = _store(tmp_path)

    async def main():
        server = await _serve(store, "detect")
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.to_thread(_openssl_client, port, version_flag, "-cipher", "DEFAULT:@SECLEVEL=0")
        finally:
            server.close()
            await server.wait_closed()

    rc, out = asyncio.run(main())
    assert rc != 0
    assert "Protocol version:" not in out, out
    assert any("UNSUPPORTED_PROTOCOL" in r.getMessage() for r in caplog.records), caplog.text


def test_cbc_only_client_refused(tmp_path, caplog):
    store = _store(tmp_path)

    async def main():
        server = await _serve(store, "on")
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.to_thread(_openssl_client, port, "-tls1_2", "-cipher", "AES128-SHA:ECDHE-RSA-AES128-SHA")
        finally:
            server.close()
            await server.wait_closed()

    rc, out = asyncio.run(main())
    assert rc != 0
    assert "Cipher is" not in out, out
    assert any("NO_SHARED_CIPHER" in r.getMessage() for r in caplog.records), caplog.text


def test_profile3_client_certificate_from_seed_recipe(tmp_path, seed_pki):
    """Profile 3 in detect mode: the seed's client certificate is verified against the imported root CA; without a
    certificate the connection stays possible but carries none (the OCPP server then refuses a profile-3 box); a
    certificate from another CA is refused at the handshake."""
    store = _store(tmp_path, seed_pki)
    d, other = seed_pki["dir"], seed_pki["other"]

    async def main():
        server = await _serve(store, "detect", client_cert="optional")
        port = server.sockets[0].getsockname()[1]
        uri = "wss://127.0.0.1:%d/CP3" % port
        pin = _server_cert_pem(store)
        out = {}
        try:
            out["good"] = await _ask(uri, ssl=loose_client_context(pin, d + "/client.crt", d + "/client.key"))
            out["none"] = await _ask(uri, ssl=loose_client_context(pin))
            try:
                await _ask(uri, ssl=loose_client_context(pin, other + "/client.crt", other + "/client.key"))
                out["wrong_ca"] = "accepted"
            except (ssl.SSLError, OSError, InvalidMessage, EOFError) as e:
                out["wrong_ca"] = type(e).__name__
        finally:
            server.close()
            await server.wait_closed()
        return out

    out = asyncio.run(main())
    assert out["good"]["cn"] == "Wallbox Köln 0815"
    assert out["none"]["tls"] is True and out["none"]["cn"] is None
    assert out["wrong_ca"] != "accepted"


def test_security_profile_decisions():
    plain = {"tls": False, "version": None, "cipher": None, "peer_cert": None}
    tls_no_cert = {"tls": True, "version": "TLSv1.3", "cipher": "x", "peer_cert": None}
    cert = {"subject": ((("commonName", "CP3"),),)}
    tls_cert = dict(tls_no_cert, peer_cert=cert)
    # Rows: (profile, transport info, basic auth result, identity, expected: accepted?)
    rows = [
        (0, plain, None, "CP0", True),          # no profile: plain and no password
        (1, plain, True, "CP1", True),          # profile 1: ws + right password
        (1, plain, False, "CP1", False),        # profile 1: wrong password
        (2, plain, True, "CP2", False),         # profile 2 over ws: refused even with the right password
        (2, tls_no_cert, True, "CP2", True),    # profile 2 over wss with password
        (2, tls_no_cert, None, "CP2", False),   # profile 2 needs a password
        (3, plain, True, "CP3", False),         # profile 3 over ws
        (3, tls_no_cert, True, "CP3", False),   # profile 3 without client certificate
        (3, tls_cert, None, "CP3", True),       # profile 3 with a verified certificate
    ]
    for profile, info, basic, ident, ok in rows:
        reason = tls.check_security_profile(profile, info, basic, ident)
        assert (reason is None) == ok, (profile, info, basic, reason)
    assert tls.check_security_profile(3, tls_cert, None, "OTHER", require_cn=True) is not None


def test_detect_closes_a_client_that_sends_nothing_or_leaves(tmp_path):
    """Slow-loris protection: a connection that sends no first byte within the peek timeout is closed; one that
    closes before sending is cleaned up; the listener keeps serving."""
    store = _store(tmp_path)

    def ctx():
        return tls.server_context(store)

    async def main():
        factory = tls.detect_connection_factory(ctx, peek_timeout_s=0.5)
        server = await serve(_report, "127.0.0.1", 0, create_connection=factory)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            silent = await reader.read()          # b"": the server closed the silent connection
            writer.close()
            _, quitter = await asyncio.open_connection("127.0.0.1", port)
            quitter.close()
            await quitter.wait_closed()
            after = await _ask("ws://127.0.0.1:%d/AFTER" % port)
        finally:
            server.close()
            await server.wait_closed()
        return silent, after

    silent, after = asyncio.run(main())
    assert silent == b""
    assert after["path"] == "/AFTER"
