"""OCPP gateway adapter: runs `core.ocpp_gateway.Gateway` for one EVSE between its wallbox connection, the backend
link (`ocpp_upstream.UpstreamLink`) and the persistent queue (`txqueue.TxQueue`), in the OCPP thread's asyncio loop.

The wallbox side is a few calls any server can make: `box_attached(send)`, `box_text(text)` (or `box_call(...)` for
a CALL the server parsed already), `box_detached()`.
`GatewayServer` below is a minimal listener that routes wallboxes to their links by ChargeBox ID; it serves the
standalone mode (`python -m chargemanager.adapters.ocpp_gateway`), the tests and the benchmark until the OCPP server
(issue 3) hands the frames of gateway-enabled wallboxes to these calls.

Persistence order: records the core asks to persist are written (one write, one fsync per batch) before any frame
that follows them in the core's action list is sent, so a wallbox only hears "accepted" for a record on disk.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import urllib.parse

import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Response
from websockets.datastructures import Headers

from chargemanager.adapters import ws_direct
from chargemanager.core.ocpp_gateway import Gateway
from chargemanager.adapters.ocpp_upstream import Sender, UpstreamLink, SUBPROTOCOL
from chargemanager.adapters.txqueue import TxQueue
from chargemanager.shim.clock import monotonic_ms, wall_time_s

log = logging.getLogger(__name__)

GATEWAY_DIR = "gateway"


def _base36(n):
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while n:
        n, r = divmod(n, 36)
        s = digits[r] + s
    return s or "0"


class GatewayLink:
    """One EVSE's gateway: wallbox <-> core policy <-> backend, with the queue file `<data>/gateway/<dev_id>.log`."""

    def __init__(self, dev_id, gateway_cfg, data_dir, charge_box_id=None, auth_policy="cache", upstream_opts=None,
                 core_opts=None, on_event=None):
        self.dev_id = dev_id
        self.settings = dict(gateway_cfg)
        client_id = gateway_cfg.get("client_id") or charge_box_id or dev_id
        wall_ms = int(wall_time_s() * 1000)
        self.core = Gateway("gw" + _base36(wall_ms) + "-", auth_policy=auth_policy, **(core_opts or {}))
        self.core.wall_offset_ms = wall_ms - monotonic_ms()
        self.queue = TxQueue(os.path.join(data_dir, GATEWAY_DIR, dev_id + ".log"))
        self.core.load(self.queue.open())
        opts = dict(upstream_opts or {})
        for key, opt in (("ca_file", "ca_files"), ("client_cert", "client_cert"), ("client_key", "client_key")):
            if gateway_cfg.get(key):
                path = os.path.join(data_dir, gateway_cfg[key])
                opts[opt] = [path] if opt == "ca_files" else path
        self.upstream = UpstreamLink(gateway_cfg["url"], client_id, gateway_cfg.get("password") or None,
                                     on_open=self._backend_open, on_text=self._backend_text,
                                     on_close=self._backend_close, **opts)
        self.box_send = None
        self.on_event = on_event
        self.pending = {}
        self.syncing = None      # the fsync in progress (a future), with the actions waiting for it in backlog
        self.backlog = []
        self.tick_task = None
        self.forwarded = 0

    # lifecycle

    def start(self):
        self.upstream.start()
        self.tick_task = asyncio.get_running_loop().create_task(self._ticker())

    async def stop(self):
        if self.tick_task is not None:
            self.tick_task.cancel()
        await self.upstream.stop()
        if self.syncing is not None:
            await asyncio.wait([self.syncing])
        self.queue.close()

    async def _ticker(self):
        while True:
            await asyncio.sleep(1.0)
            self._run(self.core.tick(monotonic_ms()))

    # wallbox side

    def box_attached(self, send):
        self.box_send = send
        self._run(self.core.box_connected(monotonic_ms()))

    def box_detached(self):
        self.box_send = None
        self._run(self.core.box_disconnected(monotonic_ms()))

    def box_text(self, text):
        self._run(self.core.box_text(text, monotonic_ms()))

    def box_call(self, msg_id, action, payload, text):
        """A CALL the OCPP server has parsed and validated already (no second parse); `text` as it arrived."""
        self._run(self.core.box_call(msg_id, action, payload, text, monotonic_ms()))

    def manager_call(self, action, payload):
        """The manager's own CALL to the wallbox; a future resolving to (ok, payload). Never shown to the backend."""
        msg_id, actions = self.core.manager_call(action, payload, monotonic_ms())
        fut = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = fut
        self._run(actions)
        return fut

    def set_local_limit(self, connector_id, limit_ma):
        self._run(self.core.set_local_limit(connector_id, limit_ma, monotonic_ms()))

    def status(self):
        st = self.core.status()
        up = self.upstream.status()
        st["backoff_s"] = up["backoff_s"]
        st["connects"] = up["connects"]
        st["last_error"] = st["last_error"] or up["last_error"]
        st["queue_file_bytes"] = self.queue.size_bytes
        return st

    # backend side

    def _backend_open(self):
        self._run(self.core.backend_connected(monotonic_ms()))

    def _backend_text(self, text):
        self._run(self.core.backend_text(text, monotonic_ms()))

    def _backend_close(self, reason):
        self._run(self.core.backend_disconnected(monotonic_ms(), reason))

    # executing the core's actions

    def _run(self, actions):
        """Execute the core's actions in order. Billing records and their delivery marks are fsynced before anything
        that follows them is sent; the fsync runs in a worker thread so that one box's disk write does not stall
        the OCPP thread for all others, and this link's later actions wait behind it. The rest (boot payload, auth
        cache, tx id map) rides along and becomes durable with the next fsync: losing one of those in a power cut
        costs a local answer at worst (a tx id map is written with the ack of its StartTransaction)."""
        if self.syncing is not None:
            self.backlog.extend(actions)
            return
        batch = []
        sync = False
        for i, a in enumerate(actions):
            kind = a[0]
            if kind == "append":
                batch.append(a[1])
                sync = True
            elif kind == "ack":
                batch.append({"k": "ack", "seq": a[1]})
                sync = True
            elif kind == "save":
                batch.append(a[1])
            else:
                if batch:
                    self.queue.append(batch, sync=False)
                    batch = []
                    if sync:
                        self._sync_then(actions[i:])
                        return
                if kind == "box":
                    if self.box_send is not None:
                        self.box_send(a[1])
                elif kind == "backend":
                    self.forwarded += 1
                    self.upstream.send(a[1])
                elif kind == "event":
                    self._event(a[1], a[2])
        if batch:
            self.queue.append(batch, sync=False)
            if sync:
                self._sync_then([])
                return
        self._maybe_compact()

    def _sync_then(self, rest):
        self.backlog = list(rest)
        self.syncing = asyncio.get_running_loop().run_in_executor(None, self.queue.sync)
        self.syncing.add_done_callback(self._synced)

    def _synced(self, fut):
        self.syncing = None
        error = fut.exception()
        if error is not None:
            # The record may not be on disk: the box must not hear "accepted". Drop the link's pending output;
            # the box repeats its message (it got no answer) and the core answers it again from its state.
            log.error("gateway %s: fsync failed: %s", self.dev_id, error)
            self.core.last_error = "cannot write the queue: %s" % (error,)
            self.backlog = []
            return
        backlog = self.backlog
        self.backlog = []
        self._run(backlog)

    def _maybe_compact(self):
        live = self.core.queue_bytes + 4096
        if self.syncing is None and self.queue.size_bytes > 65536 and self.queue.size_bytes > 4 * live:
            self.queue.compact(self.core.snapshot())

    def _event(self, name, data):
        if name == "manager_result":
            fut = self.pending.pop(data["id"], None)
            if fut is not None and not fut.done():
                fut.set_result((data["ok"], data["payload"]))
        elif name in ("queue_record_skipped", "backend_rejected_offline_tx", "backend_boot_refused"):
            log.warning("gateway %s: %s %s", self.dev_id, name, data)
        if self.on_event is not None:
            try:
                self.on_event(self.dev_id, name, data)
            except Exception:
                # A failing listener must not cut the core's action list short (frames would be lost).
                log.exception("gateway %s: listener for %s failed", self.dev_id, name)


class GatewayServer:
    """Minimal wallbox listener for the standalone gateway: `ws://host:port/<ChargeBoxID>`, subprotocol ocpp1.6."""

    def __init__(self, links, host="127.0.0.1", port=0):
        self.links = links
        self.host = host
        self.port = port
        self.server = None
        self.active = {}

    async def start(self):
        self.server = await serve(self._handler, self.host, self.port, subprotocols=[SUBPROTOCOL],
                                  process_request=self._check, compression=None, ping_interval=30,
                                  ping_timeout=30, max_size=1 << 20,
                                  create_connection=ws_direct.direct(ServerConnection))
        self.port = self.server.sockets[0].getsockname()[1]
        for link in self.links.values():
            link.start()

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()
        for link in self.links.values():
            await link.stop()

    def _box_id(self, path):
        return urllib.parse.unquote(path.split("?")[0].rstrip("/").rsplit("/", 1)[-1])

    def _check(self, connection, request):
        if self._box_id(request.path) not in self.links:
            return Response(404, "Not Found", Headers([("Content-Length", "0")]), b"")
        offered = ",".join(request.headers.get_all("Sec-WebSocket-Protocol"))
        if SUBPROTOCOL not in [p.strip() for p in offered.split(",")]:
            return Response(400, "Bad Request", Headers([("Content-Length", "0")]), b"")
        return None

    async def _handler(self, ws):
        box_id = self._box_id(ws.request.path)
        link = self.links[box_id]
        old = self.active.get(box_id)
        if old is not None:
            await old.ws.close()
        conn = Sender(ws)
        self.active[box_id] = conn
        link.box_attached(conn.send)
        ws.on_text = link.box_text  # whole text frames straight from the socket callback (ws_direct)
        try:
            async for text in ws:
                if isinstance(text, str):
                    link.box_text(text)
        except websockets.ConnectionClosed:
            pass
        finally:
            ws.on_text = None
            conn.close()
            if self.active.get(box_id) is conn:
                del self.active[box_id]
                link.box_detached()


def links_from_config(config, data_dir, upstream_opts=None, core_opts=None):
    """GatewayLinks for every OCPP EVSE with a `gateway.url`, keyed by ChargeBox ID."""
    links = {}
    for evse in config.get("evses", []):
        gw = evse.get("gateway") or {}
        # One backend link per station: a twin box (two EVSEs, one ChargeBox ID) uses its first EVSE's settings.
        if evse.get("type") == "ocpp16" and gw.get("url") and evse["address"] not in links:
            links[evse["address"]] = GatewayLink(evse["dev_id"], gw, data_dir, charge_box_id=evse["address"],
                                                 auth_policy=gw.get("auth_policy", "cache"),
                                                 upstream_opts=upstream_opts, core_opts=core_opts)
    return links


async def _serve_forever(args):
    with open(args.config) as f:
        config = json.load(f)
    upstream_opts = None
    if args.backoff_min_s:
        upstream_opts = {"backoff_min_s": args.backoff_min_s, "backoff_max_s": args.backoff_max_s or 300.0}
    core_opts = {"answer_timeout_ms": args.answer_timeout_ms}
    server = GatewayServer(links_from_config(config, args.data, upstream_opts, core_opts), args.host, args.port)
    await server.start()
    for evse in config.get("evses", []):
        link = server.links.get(evse.get("address"))
        if link is not None and evse.get("max_current_ma") is not None:
            # Standalone there is no load management: the EVSE's configured maximum is the local limit.
            link.set_local_limit(evse.get("id", 1), int(evse["max_current_ma"]))
    print("listening %d" % server.port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await server.stop()


def main(argv=None):
    p = argparse.ArgumentParser(description="standalone OCPP gateway (wallbox listener + backend links)")
    p.add_argument("--data", required=True)
    p.add_argument("--config", required=True, help="config.json with evses[].gateway")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=19520)
    p.add_argument("--backoff-min-s", type=float, default=0.0)
    p.add_argument("--backoff-max-s", type=float, default=0.0)
    p.add_argument("--answer-timeout-ms", type=int, default=30000)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve_forever(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
