"""Connects the OCPP server (adapters/ocpp_server.py) to the gateway links of the EVSEs that have a backend.

For a wallbox whose EVSE has `gateway.url`, the server keeps doing what it does for every box (schema validation,
the boot gate, the manager's own charging profiles, readings for the load management), and this service:
- takes every validated CALL from the box through `Connection.call_hook`: the station still sees it (so load
  management keeps its readings and transactions), but the answer comes from the gateway (the backend's, or the
  local one while the backend is away). The frame is parsed and validated once, by the server's session; its text
  is passed on as it arrived, so payloads stay byte for byte, and the backend's answer goes back to the box with
  its payload text unchanged (`Session.reply_raw`);
- sends the backend's CALLs to the box through the server's session (`Connection.call`, one CALL in flight, ids
  minted by the server), and returns the box's answers, seen by an observer, to the gateway core;
- caps kept backend charging profiles at the limit the load management just set (`OcppServer.on_limit`), at once;
- publishes each link's state as the `gateway` section of get_status.

The links live on the server's asyncio loop (one OCPP thread). `start()` / `stop()` / `status()` are safe to call
from other threads.
"""

import asyncio
import json
import logging
import ssl

from chargemanager.adapters.ocpp_gateway import GatewayLink
from chargemanager.core import ocpp_gateway as ogateway
from chargemanager.core import ocpp_session as osession
from chargemanager.core.ocpp_station import ocpp_endpoint
from chargemanager.shim.clock import monotonic_ms, wall_time_s

log = logging.getLogger("chargemanager.gateway")


class _BoxPort:
    """What the gateway core sends to the box, turned into calls on the server's Connection."""

    def __init__(self, conn):
        self.conn = conn
        self.start_tx = {}       # box msg id -> connector id of a StartTransaction the station has seen

    def send(self, text):
        try:
            # The common frame, an answer to the box's CALL, goes out with its payload text as the backend sent it:
            # no parse and no re-serialisation (the session parses only the few answers it needs to see).
            msg_id, ptext = ogateway.result_parts(text)
        except ogateway.FrameError:
            msg_id = None
        if msg_id is not None:
            action = self.conn.session.incoming.get(msg_id)
            cid = self.start_tx.pop(msg_id, None)
            payload = None
            if action in ("BootNotification", "StartTransaction"):
                try:
                    payload = json.loads(ptext)
                except ValueError:
                    payload = None
            if cid is not None and isinstance(payload, dict) and isinstance(payload.get("transactionId"), int):
                self._station_tx_id(cid, payload["transactionId"])
            self.conn.reply_raw(msg_id, ptext, payload)
            if action == "BootNotification":
                self.conn.pump()  # the box may now get its capability read and profiles
            return
        msg = json.loads(text)
        kind, msg_id = msg[0], msg[1]
        if kind == osession.CALL:
            self.conn.call(msg[2], msg[3], ("gw", msg_id))
        else:
            self.start_tx.pop(msg_id, None)
            self.conn.reply_error(msg_id, msg[2], msg[3], msg[4] if len(msg) > 4 else None)

    def _station_tx_id(self, connector_id, tx_id):
        # The station minted its own id for this transaction; the box uses the one the gateway gave it.
        st = self.conn.station.conn.get(connector_id)
        if st is not None and st.get("transaction"):
            st["transaction"]["transaction_id"] = tx_id


class GatewayService:
    def __init__(self, server, config, data_dir, upstream_opts=None, core_opts=None, upstream_opts_fn=None,
                 on_event=None):
        self.server = server
        self.on_event = on_event  # f(dev_id, name, data) on the OCPP thread: the gateway core's events
        self.data_dir = data_dir
        self.upstream_opts = upstream_opts
        self.upstream_opts_fn = upstream_opts_fn   # f(gateway settings) -> extra UpstreamLink options (TLS, SMGW)
        self.core_opts = core_opts
        self.links = {}          # chargebox id -> GatewayLink
        self.errors = {}         # dev_id -> why its link could not be built
        self.ports = {}          # chargebox id -> _BoxPort of the current connection
        self._evses = [e for e in config.get("evses", []) if ocpp_endpoint(e) is not None]

    # ---- lifecycle (any thread) ----

    def start(self, timeout_s=10):
        """Create and start the links on the server's loop (the server must be running)."""
        asyncio.run_coroutine_threadsafe(self._start(), self.server._loop).result(timeout_s)

    def stop(self, timeout_s=10):
        if self.server._loop is not None and self.server._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._stop(), self.server._loop).result(timeout_s)

    def status(self):
        """{dev_id: gateway state} for every EVSE with a gateway."""
        out = dict((link.dev_id, link.status()) for link in list(self.links.values()))
        for dev_id, error in list(self.errors.items()):
            out[dev_id] = {"connected": False, "last_error": error}
        return out

    def backend_limit_ma(self, chargebox_id, connector_id):
        """What the backend's kept charging profiles allow the connector now, in mA (None: no restriction; any
        thread: the core reads one snapshot of its profile list)."""
        link = self.links.get(chargebox_id)
        if link is None:
            return None
        return link.core.backend_limit_ma(connector_id, monotonic_ms())

    # ---- on the loop ----

    def apply_config(self, config, timeout_s=20):
        """A new configuration (any thread): links whose settings changed are restarted, removed ones stopped;
        their queues stay on disk."""
        self._evses = [e for e in config.get("evses", []) if ocpp_endpoint(e) is not None]
        if self.server._loop is not None and self.server._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._sync_links(), self.server._loop).result(timeout_s)

    def _wanted(self):
        wanted = {}
        for evse in self._evses:
            gw = evse.get("gateway") or {}
            cbid = ocpp_endpoint(evse)[0]
            # One backend link per station: a twin box uses its first EVSE's settings.
            if gw.get("url") and cbid not in wanted:
                wanted[cbid] = (evse["dev_id"], dict(gw))
        return wanted

    async def _sync_links(self):
        wanted = self._wanted()
        wanted_ids = set(dev_id for dev_id, _ in wanted.values())
        for dev_id in list(self.errors):
            if dev_id not in wanted_ids:
                del self.errors[dev_id]
        for cbid in list(self.links):
            link = self.links[cbid]
            if wanted.get(cbid) != (link.dev_id, link.settings):
                await link.stop()
                del self.links[cbid]
        for cbid, (dev_id, gw) in wanted.items():
            if cbid in self.links:
                continue
            opts = dict(self.upstream_opts or {})
            try:
                if self.upstream_opts_fn is not None:
                    opts.update(self.upstream_opts_fn(gw))
                link = GatewayLink(dev_id, gw, self.data_dir, charge_box_id=cbid,
                                   auth_policy=gw.get("auth_policy", "cache"), upstream_opts=opts,
                                   core_opts=self.core_opts, on_event=self.on_event)
            except (ValueError, OSError, ssl.SSLError) as e:
                # A link that cannot be built (bad URL, unreadable or missing certificate) must not stop the others.
                log.error("gateway for %s not started: %s", dev_id, e)
                self.errors[dev_id] = str(e)
                continue
            self.errors.pop(dev_id, None)
            self.links[cbid] = link
            link.start()
            station = self.server.stations.get(cbid)
            if station is not None:
                # Until the load management grants current the box may not charge (the station's default profile
                # is 0), so a backend profile is capped at 0 too. Monitor mode sends no limits: no cap.
                for cid, opts in station.connectors.items():
                    if opts.get("mode") != "monitor" and not self.server.monitor:
                        link.set_local_limit(cid, station.limits.get(cid) or 0)
            conn = self.server.connections.get(cbid)
            if conn is not None:
                self._on_connect(conn)

    async def _start(self):
        await self._sync_links()
        self.server.on_connect.append(self._on_connect)
        self.server.on_disconnect.append(self._on_disconnect)
        self.server.on_limit.append(self._on_limit)

    async def _stop(self):
        for hooks, fn in ((self.server.on_connect, self._on_connect),
                          (self.server.on_disconnect, self._on_disconnect), (self.server.on_limit, self._on_limit)):
            if fn in hooks:
                hooks.remove(fn)
        for link in self.links.values():
            await link.stop()
        self.links = {}

    def _on_connect(self, conn):
        link = self.links.get(conn.chargebox_id)
        if link is None:
            return
        port = _BoxPort(conn)
        self.ports[conn.chargebox_id] = port
        conn.call_hook = lambda c, ev: self._guarded_call_hook(link, port, c, ev)
        conn.observers.append(lambda c, ev: self._observe(link, c, ev))
        link.box_attached(port.send)

    def _on_disconnect(self, conn):
        port = self.ports.get(conn.chargebox_id)
        if port is not None and port.conn is conn:
            del self.ports[conn.chargebox_id]
            link = self.links.get(conn.chargebox_id)
            if link is not None:
                link.box_detached()

    def _on_limit(self, chargebox_id, connector_id, limit_ma):
        link = self.links.get(chargebox_id)
        if link is not None:
            # No grant yet (None) means the box may not charge: the backend's profile is capped at 0 as well.
            link.set_local_limit(connector_id, limit_ma or 0)

    def _guarded_call_hook(self, link, port, conn, ev):
        try:
            return self._call_hook(link, port, conn, ev)
        except Exception:
            # A gateway bug must not cost the box its answer: the station answers it as for a box without gateway.
            log.exception("gateway %s: %s not forwarded", link.dev_id, ev.action)
            port.start_tx.pop(ev.msg_id, None)
            return False

    def _call_hook(self, link, port, conn, ev):
        # The station keeps its view (status, meter readings, transactions) for the load management; its answer is
        # not used: the box gets the backend's (or the gateway's local) answer.
        conn.station.handle(ev.action, ev.payload, monotonic_ms(), int(wall_time_s() * 1000))
        if ev.action == "StartTransaction":
            port.start_tx[ev.msg_id] = ev.payload.get("connectorId")
        # Parsed and validated once by the session; the frame text goes on so payloads stay byte for byte.
        link.box_call(ev.msg_id, ev.action, ev.payload, ev.text)
        return True

    def _observe(self, link, conn, ev):
        ref = getattr(ev, "ref", None)
        if not ref or ref[0] != "gw":
            return
        if isinstance(ev, osession.ResultReceived):
            link.box_text(json.dumps([osession.CALLRESULT, ref[1], ev.payload], ensure_ascii=False))
        elif isinstance(ev, osession.CallFailed):
            link.box_text(json.dumps([osession.CALLERROR, ref[1], ev.code, ev.description, ev.details or {}]))

