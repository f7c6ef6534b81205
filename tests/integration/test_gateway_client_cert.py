"""Per-EVSE client certificate (OCPP security profile 3) for the gateway links, chosen from the certificate store by
`gateway.client_cert_id`: the whole manager, a wss:// backend that requires client certificates (openssl-made PKI),
and two stations that the backend must see under their own certificates; an id that is not in the store stops only
its own link, with the reason in get_status."""

import asyncio
import ssl
import subprocess

from chargemanager.adapters.certs import CertStore
from chargemanager.adapters.store import DataStore
from chargemanager.runtime import Runtime
from gateway_peers import Backend, wait_for
from httpclient import call as http
from websockets.asyncio.server import serve

PASSWORD = "gateway-secret-16"


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=Backend CA", cwd=d)
    for name, cn, ext in (("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
                          ("station-a", "station-a", "extendedKeyUsage=clientAuth"),
                          ("station-b", "station-b", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + cn, cwd=d)
        (d / (name + ".ext")).write_text(ext + "\n")
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", name + ".crt", "-days", "2", "-sha256", "-extfile", name + ".ext", cwd=d)


def test_each_evse_presents_its_own_store_certificate(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    data = tmp_path / "data"
    certs = CertStore(str(data))
    certs.import_cert("ca", (pki / "ca.crt").read_text(), name="backend CA")
    ids = {}
    for name in ("station-a", "station-b"):
        entry = certs.import_cert("client", (pki / (name + ".crt")).read_text(), (pki / (name + ".key")).read_text(),
                                  name=name)
        ids[name] = entry[0]["id"]

    async def main():
        backend = Backend(password=PASSWORD)
        seen = {}  # request path -> CN of the client certificate the link presented
        check = backend._check

        def record(connection, request):
            cert = connection.transport.get_extra_info("peercert") or {}
            cn = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
            seen[request.path] = cn[0] if cn else None
            return check(connection, request)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(pki / "ca.crt"))
        backend.server = await serve(backend._handler, "127.0.0.1", 0, ssl=ctx, subprotocols=["ocpp1.6"],
                                     process_request=record, compression=None)
        backend.port = backend.server.sockets[0].getsockname()[1]
        url = "wss://localhost:%d/cs/" % backend.port

        store = DataStore(str(data))
        cfg, _ = store.load_config()
        cfg["evses"] = [
            {"dev_id": "E1", "type": "ocpp16", "address": "WB-A", "id": 1,
             "gateway": {"url": url, "password": PASSWORD, "client_id": "cid-a", "client_cert_id": ids["station-a"]}},
            {"dev_id": "E2", "type": "ocpp16", "address": "WB-B", "id": 1,
             "gateway": {"url": url, "password": PASSWORD, "client_id": "cid-b", "client_cert_id": ids["station-b"]}},
            {"dev_id": "E3", "type": "ocpp16", "address": "WB-C", "id": 1,
             "gateway": {"url": url, "password": PASSWORD, "client_id": "cid-c",
                         "client_cert_id": "client-0000000000000000"}},
        ]
        store.save_config(cfg)
        rt = Runtime(str(data), http_port=0, ocpp_port=0, host="127.0.0.1")
        rt.auth.set_password("1234abcd")
        await asyncio.to_thread(rt.start)
        status_url = "http://127.0.0.1:%d/cnf?cmd=get_status" % rt.http_port
        try:
            await wait_for(lambda: all(http(status_url)[2]["gateway"][e]["connected"] for e in ("E1", "E2")),
                           what="both links up")
            assert seen == {"/cs/cid-a": "station-a", "/cs/cid-b": "station-b"}
            e3 = http(status_url)[2]["gateway"]["E3"]
            assert e3["connected"] is False
            assert "client-0000000000000000" in e3["last_error"] and "certificate store" in e3["last_error"]
        finally:
            await asyncio.to_thread(rt.shutdown)
            await backend.stop()
    asyncio.run(main())
