"""TLS costs on loopback: connection set-up per listener mode and cipher suite, and message round trips through the
Smart Meter Gateway's proxy channel. Prints two tables with ratios against a baseline measured in the same run.

1. Connect + WebSocket handshake + one echo + close, sequentially, per mode (baseline: plain ws on a plain listener;
   the same plain client through the `detect` listener shows what the first-byte peek costs).
2. Echo round trips on an open link: direct wss (baseline) vs through the SMGW simulator (TLS to the SMGW, SOCKS5
   or HTTP CONNECT, the backend's TLS inside).
"""

import asyncio
import os
import ssl
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "app"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

from chargemanager.adapters import tls  # noqa: E402
from chargemanager.adapters.certs import CertStore  # noqa: E402
import smgw_sim  # noqa: E402

CONNECTS = int(os.environ.get("BENCH_CONNECTS", "200"))
ECHOES = int(os.environ.get("BENCH_ECHOES", "2000"))


async def _echo(ws):
    async for msg in ws:
        await ws.send(msg)


def _client_ctx(pin, version=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=pin)
    if version:
        ctx.maximum_version = version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


async def bench_connect(store):
    pin = store.certificate_pem("self-rsa") + store.certificate_pem("self-ec")

    def ctx():
        return tls.server_context(store)

    plain = await serve(_echo, "127.0.0.1", 0, compression=None)
    detect = await serve(_echo, "127.0.0.1", 0, compression=None, **tls.serve_kwargs("detect", ctx))
    pp, dp = plain.sockets[0].getsockname()[1], detect.sockets[0].getsockname()[1]
    cases = [
        ("ws, plain listener (baseline)", "ws://127.0.0.1:%d/" % pp, None),
        ("ws, detect listener", "ws://127.0.0.1:%d/" % dp, None),
        ("wss TLS 1.3, detect", "wss://127.0.0.1:%d/" % dp, _client_ctx(pin)),
        ("wss TLS 1.2 ECDHE-ECDSA-AES128-GCM", "wss://127.0.0.1:%d/" % dp,
         _client_ctx(pin, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256")),
        ("wss TLS 1.2 RSA AES128-GCM", "wss://127.0.0.1:%d/" % dp,
         _client_ctx(pin, ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256")),
    ]
    rows = []
    for name, uri, cctx in cases:
        times = []
        for _ in range(CONNECTS):
            t0 = time.perf_counter()
            kw = {"ssl": cctx} if cctx else {}
            async with connect(uri + "CP", compression=None, **kw) as ws:
                await ws.send("x")
                await ws.recv()
            times.append((time.perf_counter() - t0) * 1000)
        rows.append((name, statistics.median(times), _pct(times, 99)))
    for s in (plain, detect):
        s.close()
        await s.wait_closed()
    return rows


async def bench_echo(store, folder):
    backend_ctx = tls.server_context(store, server_ids=["self-ec"])
    backend = await serve(_echo, "127.0.0.1", 0, ssl=backend_ctx, compression=None)
    bport = backend.sockets[0].getsockname()[1]
    sim = smgw_sim.SmgwSim(os.path.join(folder, "smgw"))
    sim.trust(store.certificate_pem("self-rsa"))
    sport = await sim.start_proxy()
    ca = store.import_cert("ca", open(sim.ca_path).read())[0]["id"]
    pin = store.certificate_pem("self-ec")
    from chargemanager.adapters.smgw import SmgwChannel
    rows = []
    for name, method in (("direct wss (baseline)", None), ("SMGW: TLS + SOCKS5 + TLS", "socks5"),
                         ("SMGW: TLS + HTTP CONNECT + TLS", "http_connect")):
        settings = {"enabled": method is not None, "f1_ocpp_gateway": True, "address": "127.0.0.1",
                    "proxy_port": sport, "proxy_method": method or "socks5", "trust": ca, "cert": "self-rsa"}
        channel = SmgwChannel(lambda s=settings: s, store)
        t0 = time.perf_counter()
        async with channel.connect("wss://127.0.0.1:%d/CP" % bport, ssl=_client_ctx(pin), compression=None) as ws:
            setup_ms = (time.perf_counter() - t0) * 1000
            times = []
            for _ in range(ECHOES):
                t = time.perf_counter()
                await ws.send("[2,\"1\",\"Heartbeat\",{}]")
                await ws.recv()
                times.append((time.perf_counter() - t) * 1000)
        rows.append((name, setup_ms, statistics.median(times), _pct(times, 99)))
    await sim.stop_proxy()
    backend.close()
    await backend.wait_closed()
    return rows


def main():
    folder = tempfile.mkdtemp(prefix="bench-tls-")
    store = CertStore(folder)
    rows = asyncio.run(bench_connect(store))
    base = rows[0][1]
    print("Connection set-up (connect + handshake + 1 echo + close), %d sequential connections each" % CONNECTS)
    print("| mode | p50 ms | p99 ms | p50 / baseline |")
    print("|---|---|---|---|")
    for name, p50, p99 in rows:
        print("| %s | %.2f | %.2f | %.1fx |" % (name, p50, p99, p50 / base))
    rows = asyncio.run(bench_echo(store, folder))
    base = rows[0][2]
    print()
    print("Echo round trip on an open link, %d messages each" % ECHOES)
    print("| path | set-up ms | p50 ms | p99 ms | p50 / baseline |")
    print("|---|---|---|---|---|")
    for name, setup, p50, p99 in rows:
        print("| %s | %.1f | %.3f | %.3f | %.1fx |" % (name, setup, p50, p99, p50 / base))


if __name__ == "__main__":
    main()
