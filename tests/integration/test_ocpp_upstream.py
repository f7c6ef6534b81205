"""The backend link (adapters/ocpp_upstream.py) against real websockets backends over loopback: path and client id,
Basic auth, subprotocol, TLS with openssl-made certificates (profiles 2 and 3), reconnect, an injected connector."""
import asyncio
import base64
import socket
import ssl
import subprocess

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from chargemanager.adapters.ocpp_upstream import Backoff, UpstreamLink, UpstreamConfigError, backend_uri
from gateway_peers import wait_for


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=Test Backend CA/O=Tiefgarage K\u00f6ln GmbH", "-utf8", cwd=d)
    for name, cn, ext in (("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                          ("client", "WB-01", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + cn, cwd=d)
        (d / (name + ".ext")).write_text(ext + "\n")
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".crt", "-days", "2", "-sha256", "-extfile", name + ".ext", cwd=d)
    return d


class EchoBackend:
    """A websockets backend that records the upgrade request and echoes every frame back."""

    def __init__(self, ssl_ctx=None, password=None):
        self.ssl = ssl_ctx
        self.password = password
        self.requests = []
        self.port = 0
        self.server = None

    def _check(self, connection, request):
        self.requests.append(request)
        if self.password is not None:
            client = request.path.rsplit("/", 1)[-1]
            want = "Basic " + base64.b64encode(("%s:%s" % (client, self.password)).encode()).decode()
            if request.headers.get("Authorization") != want:
                return Response(401, "Unauthorized", Headers([("Content-Length", "0")]), b"")
        return None

    async def _handler(self, ws):
        async for text in ws:
            await ws.send("echo:" + text)

    async def start(self):
        self.server = await serve(self._handler, "127.0.0.1", self.port, subprotocols=["ocpp1.6"],
                                  process_request=self._check, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()


class Recorder:
    def __init__(self):
        self.events = []

    def kwargs(self):
        return {"on_open": lambda: self.events.append("open"), "on_text": lambda t: self.events.append(t),
                "on_close": lambda r: self.events.append("close")}


def test_backend_uri_and_config_errors():
    assert backend_uri("ws://b.example/path/to/resource/", "WB 01/x") == "ws://b.example/path/to/resource/WB%2001%2Fx"
    assert backend_uri("wss://xyz123.backend.com/", "WB1") == "wss://xyz123.backend.com/WB1"
    for url in ("http://b/", "ws:///x", "ws://b/?q=1", ""):
        with pytest.raises(UpstreamConfigError):
            backend_uri(url, "WB1")


def test_backoff_doubles_from_5s_to_5min_with_jitter():
    lo = Backoff(rng=lambda: 0.0)
    assert [lo.next_s() for _ in range(8)] == [2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 150.0, 150.0]
    hi = Backoff(rng=lambda: 0.999999)
    waits = [hi.next_s() for _ in range(8)]
    assert waits[0] <= 5.0 and waits[-1] <= 300.0 and waits[-1] > 299.0
    hi.reset()
    assert hi.next_s() <= 5.0


def test_plain_link_path_basic_auth_and_reconnect():
    async def main():
        backend = EchoBackend(password="sixteen-chars-pw!")
        await backend.start()
        rec = Recorder()
        link = UpstreamLink("ws://127.0.0.1:%d/ocpp/path/" % backend.port, "CL-7", "sixteen-chars-pw!",
                            backoff_min_s=0.05, backoff_max_s=0.2, **rec.kwargs())
        link.start()
        try:
            await wait_for(lambda: "open" in rec.events, what="link open")
            req = backend.requests[-1]
            assert req.path == "/ocpp/path/CL-7"
            assert req.headers["Sec-WebSocket-Protocol"] == "ocpp1.6"
            assert link.send('[2,"1","Heartbeat",{}]')
            await wait_for(lambda: 'echo:[2,"1","Heartbeat",{}]' in rec.events, what="echo")
            # the backend goes away and comes back on the same port: the link redials by itself
            await backend.stop()
            await wait_for(lambda: "close" in rec.events, what="link closed")
            assert not link.send("x")
            await backend.start()
            await wait_for(lambda: link.connects == 2, what="reconnect")
            assert link.status()["connected"] and link.status()["last_error"] == ""
        finally:
            await link.stop()
            await backend.stop()
    asyncio.run(main())


def test_wrong_password_is_reported():
    async def main():
        backend = EchoBackend(password="right-password-1234")
        await backend.start()
        link = UpstreamLink("ws://127.0.0.1:%d/" % backend.port, "CL-7", "wrong-password-1234",
                            backoff_min_s=0.05, backoff_max_s=0.1)
        link.start()
        try:
            await wait_for(lambda: "401" in link.status()["last_error"], what="401 reported")
            assert not link.status()["connected"]
        finally:
            await link.stop()
            await backend.stop()
    asyncio.run(main())


def server_ctx(pki, require_client_cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(pki / "ca.crt"))
    return ctx


def test_tls_profile2_verifies_backend_against_configured_ca(pki):
    async def main():
        backend = EchoBackend(server_ctx(pki, False))
        await backend.start()
        url = "wss://localhost:%d/ocpp/" % backend.port
        trusted, untrusted = Recorder(), Recorder()
        good = UpstreamLink(url, "WB-01", ca_files=[str(pki / "ca.crt")], backoff_min_s=0.05, **trusted.kwargs())
        # without the CA the system trust store is used, which does not know our test CA: refused
        bad = UpstreamLink(url, "WB-01", backoff_min_s=0.05, backoff_max_s=0.1, **untrusted.kwargs())
        good.start()
        bad.start()
        try:
            await wait_for(lambda: "open" in trusted.events, what="TLS link open")
            good.send("hello")
            await wait_for(lambda: "echo:hello" in trusted.events, what="echo over TLS")
            await wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in bad.status()["last_error"], what="verify failure")
            assert "open" not in untrusted.events
        finally:
            await good.stop()
            await bad.stop()
            await backend.stop()
    asyncio.run(main())


def test_tls_profile3_client_certificate(pki):
    async def main():
        backend = EchoBackend(server_ctx(pki, True))
        await backend.start()
        url = "wss://localhost:%d/" % backend.port
        with_cert, without = Recorder(), Recorder()
        good = UpstreamLink(url, "WB-01", ca_files=[str(pki / "ca.crt")], client_cert=str(pki / "client.crt"),
                            client_key=str(pki / "client.key"), backoff_min_s=0.05, **with_cert.kwargs())
        bad = UpstreamLink(url, "WB-01", ca_files=[str(pki / "ca.crt")], backoff_min_s=0.05, backoff_max_s=0.1,
                           **without.kwargs())
        good.start()
        bad.start()
        try:
            await wait_for(lambda: "open" in with_cert.events, what="mutual TLS link open")
            await wait_for(lambda: bad.status()["last_error"] != "", what="refusal without client cert")
            assert "open" not in without.events
        finally:
            await good.stop()
            await bad.stop()
            await backend.stop()
    asyncio.run(main())


def test_injected_connector_carries_the_link(pki):
    """The SMGW channel plugs in as a connector; here one that connects through a loopback TCP relay."""
    async def main():
        backend = EchoBackend(server_ctx(pki, False))
        await backend.start()
        relayed = []

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                writer.close()

        async def relay(reader, writer):
            relayed.append(1)
            r2, w2 = await asyncio.open_connection("127.0.0.1", backend.port)
            await asyncio.gather(pipe(reader, w2), pipe(r2, writer), return_exceptions=True)

        relay_server = await asyncio.start_server(relay, "127.0.0.1", 0)
        relay_port = relay_server.sockets[0].getsockname()[1]
        asked = []

        async def connector(host, port):
            asked.append((host, port))
            sock = socket.create_connection(("127.0.0.1", relay_port))
            sock.setblocking(False)
            return sock

        # the URL names a host and port nobody listens on; only the connector knows the way
        rec = Recorder()
        link = UpstreamLink("wss://localhost:9/ocpp/", "WB-01", ca_files=[str(pki / "ca.crt")],
                            connector=connector, backoff_min_s=0.05, **rec.kwargs())
        link.start()
        try:
            await wait_for(lambda: "open" in rec.events, what="link through connector")
            link.send("via-relay")
            await wait_for(lambda: "echo:via-relay" in rec.events, what="echo through relay")
            assert asked == [("localhost", 9)] and relayed == [1]
        finally:
            await link.stop()
            relay_server.close()
            await backend.stop()
    asyncio.run(main())


def test_runtime_links_use_the_certificate_store(pki, tmp_path):
    """As deployed: the CA and the client certificate imported into the manager's certificate store (TLS issue)
    verify a wss:// backend and authenticate us to it (profiles 2 and 3)."""
    from chargemanager.adapters.store import DataStore
    from chargemanager.runtime import Runtime

    async def main():
        backend = EchoBackend(server_ctx(pki, True))
        await backend.start()
        store = DataStore(str(tmp_path))
        cfg, _ = store.load_config()
        cfg["evses"] = [{"dev_id": "E1", "type": "ocpp16", "address": "WB-01", "id": 1,
                         "gateway": {"url": "wss://localhost:%d/ocpp/" % backend.port}}]
        store.save_config(cfg)
        rt = Runtime(str(tmp_path), http_port=0, ocpp_port=0, host="127.0.0.1")
        rt.certs.import_cert("ca", (pki / "ca.crt").read_text())
        rt.certs.import_cert("client", (pki / "client.crt").read_text(), (pki / "client.key").read_text())
        await asyncio.to_thread(rt.start)
        try:
            await wait_for(lambda: rt.status()["gateway"]["E1"]["connected"], what="mutual TLS link from the runtime")
            assert backend.requests[-1].path == "/ocpp/WB-01"
        finally:
            await asyncio.to_thread(rt.shutdown)
            await backend.stop()
    asyncio.run(main())
