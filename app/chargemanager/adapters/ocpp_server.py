"""OCPP 1.6J Central System for the wallboxes: one asyncio loop in its own thread, websockets 17 (new asyncio API).

Shape: the protocol lives in `core.ocpp_session` (framing, errors, one CALL in flight) and `core.ocpp_station`
(answers, per-connector state, profile policy); this module only moves text between them and the sockets,
validates payloads with the `ocpp` package's 1.6 schemas, authenticates, and hands state to the control loop.

Threading: everything below `OcppServer.start()` runs on the server's loop. Other threads use only `snapshot()`,
`state_of()`, `set_limits()`, `clear_profiles()`, `seen_unconfigured()`, `update_evses()` (thread-safe: a
lock-protected dict of copies for reading, `loop.call_soon_threadsafe` for commands).

Security: HTTP Basic on the upgrade request (security profile 1; profile 2 with `ssl`), username must equal the
ChargeBox ID (A00.FR.204), checked before the upgrade; an unknown ChargeBox ID gets HTTP 404 (OCPP-J §3.2) and is
recorded as "seen, not configured"; a client that offers no `ocpp1.6` subprotocol gets HTTP 400 (OCTT TC_088).
A new connection for a ChargeBox ID that is already connected replaces the old (possibly half-open) one only after
it passed authentication (REFERENCE A4 #4).
"""

import asyncio
import base64
import binascii
import concurrent.futures
import hmac
import http
import logging
import os
import threading
import time
import urllib.parse

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.protocol import State

from chargemanager.adapters import tls, ws_direct
from chargemanager.adapters.ocpp_schemas import Schemas
from chargemanager.core import ocpp_session as osession
from chargemanager.core import ocpp_station as ostation

log = logging.getLogger("chargemanager.ocpp")

DEFAULT_PORT = 19520
SUBPROTOCOL = "ocpp1.6"
MAX_SEEN = 100
WRITE_BUFFER_HIGH = 64 * 1024
# CALLs whose handling leaves the station's published state unchanged.
_STATELESS_CALLS = ("Heartbeat", "Authorize", "DataTransfer")


def _monotonic_ms():
    return time.monotonic_ns() // 1000000


def _wall_ms():
    return time.time_ns() // 1000000


def chargebox_id_from_path(path):
    """ChargeBox ID = last non-empty segment of the URL path, percent-decoded (OCPP-J §3.1.1); None if absent."""
    path = path.split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    cbid = urllib.parse.unquote(parts[-1])
    if not cbid or len(cbid) > 255 or any(ord(c) < 32 for c in cbid):
        return None
    return cbid


def _text_response(status, text, extra_headers=()):
    body = (text + "\n").encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                       ("Connection", "close")] + list(extra_headers))
    return Response(status.value, status.phrase, headers, body)


class Connection:
    """One websocket from one charge point: its session, the station it belongs to, and hooks for the gateway.

    Hooks (set by whoever observes `OcppServer.on_connect`): `call_hook(conn, event)` is offered every validated
    incoming CALL first and returns True when it answers it itself (via `conn.reply`/`conn.reply_error`);
    `observers` get every session event after it was handled."""

    def __init__(self, server, ws, station, session):
        self.server = server
        self.ws = ws
        self.station = station
        self.session = session
        self.chargebox_id = station.chargebox_id
        self.call_hook = None
        self.observers = []
        self.closed = False
        self._outq = asyncio.Queue()
        self._writer = None
        self._writer_busy = False

    # -- used by the server and by hooks --

    def reply(self, msg_id, payload):
        self.session.reply(msg_id, payload)
        self.flush()

    def reply_error(self, msg_id, code, description="", details=None):
        self.session.reply_error(msg_id, code, description, details)
        self.flush()

    def reply_raw(self, msg_id, payload_text, payload=None):
        """Answer with a payload given as JSON text, sent unchanged (the gateway relays the backend's answer)."""
        self.session.reply_raw(msg_id, payload_text, payload)
        self.flush()

    def call(self, action, payload, ref=None, msg_id=None):
        """Queue a CALL to the charge point (it goes out when the previous one is answered)."""
        ok = self.session.call(action, payload, _monotonic_ms(), ref, msg_id)
        self.flush()
        return ok

    def flush(self):
        """Write what the session produced. Fast path: straight into the transport (no task switch per frame, which
        matters with hundreds of boxes per limit change); when the socket is backed up or the writer task is busy,
        frames queue behind it so order and flow control are kept."""
        ws = self.ws
        for text in self.session.drain():
            if (self._writer_busy or not self._outq.empty() or ws.protocol.state is not State.OPEN
                    or ws.transport is None or ws.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH):
                self._outq.put_nowait(text)
            else:
                ws.protocol.send_text(text.encode())
                ws.send_data()

    def pump(self):
        """Send what the station wants to send now (capability read, profiles)."""
        if self.closed:
            return
        for action, payload, ref in self.station.commands(_monotonic_ms(), _wall_ms(), self.session.boot_accepted):
            self.session.call(action, payload, _monotonic_ms(), ref)
        self.flush()

    # -- internals --

    async def _write_loop(self):
        try:
            while True:
                text = await self._outq.get()
                self._writer_busy = True
                await self.ws.send(text)
                self._writer_busy = False
        except ConnectionClosed:
            pass

    def _on_text(self, text):
        self._handle_events(self.session.receive(text, _monotonic_ms()))

    async def run(self):
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        # Whole text frames are handled straight from the socket callback (adapters/ws_direct.py); the loop below
        # sees only what websockets assembles itself (fragmented or binary messages).
        self.ws.on_text = self._on_text
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    # OCPP-J uses text frames only.
                    self.session.out.append('[4,"-1","FormationViolation","binary frames are not OCPP-J",{}]')
                    self.flush()
                    continue
                self._handle_events(self.session.receive(message, _monotonic_ms()))
                # Frames already buffered are returned without yielding: let the other boxes in between, so one
                # flooding box cannot starve them.
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            self.ws.on_text = None
            self.closed = True
            self._writer.cancel()
            # CALLs that will never be answered: release anyone waiting for them (clear_profiles).
            refs = [item[2] for item in self.session.queue]
            if self.session.in_flight is not None:
                refs.append(self.session.in_flight[2])
            for ref in refs:
                if ref and ref[0] == "clear" and not ref[1].done():
                    ref[1].set_result({"error": "disconnected", "description": "the box disconnected"})

    def tick(self, now_ms):
        events = self.session.poll(now_ms)
        if events:
            self._handle_events(events)

    def _handle_events(self, events):
        now_ms = _monotonic_ms()
        publish = pump = False
        for ev in events:
            if isinstance(ev, osession.CallReceived):
                # Of the box's CALLs only a boot changes what the station sends (it forgets the accepted profiles),
                # and Heartbeat, Authorize, DataTransfer leave the published state as it was: most messages cost
                # neither a `pump` nor a publish.
                if ev.action == "BootNotification":
                    pump = True
                if ev.action not in _STATELESS_CALLS:
                    publish = True
                if ev.problem is not None:
                    self.station.note(now_ms, "%s accepted despite %s: %s" % (ev.action, ev.problem[0], ev.problem[1]))
                if self.call_hook is not None and self.call_hook(self, ev):
                    continue
                result = self.station.handle(ev.action, ev.payload, now_ms, _wall_ms())
                if result is None:
                    self.session.reply_error(ev.msg_id, "NotSupported", "%s is not supported" % ev.action)
                else:
                    self.session.reply(ev.msg_id, result)
            elif isinstance(ev, osession.ResultReceived):
                publish = pump = True
                self.station.on_result(ev.action, ev.payload, ev.ref, now_ms)
            elif isinstance(ev, osession.CallFailed):
                publish = pump = True
                self.station.on_failed(ev.action, ev.code, ev.description, ev.ref, now_ms)
                if ev.ref and ev.ref[0] == "clear" and not ev.ref[1].done():
                    ev.ref[1].set_result({"error": ev.code, "description": ev.description})
            elif isinstance(ev, osession.Violation):
                self.station.note(now_ms, ev.description)
            if isinstance(ev, osession.ResultReceived) and ev.ref and ev.ref[0] == "clear" and not ev.ref[1].done():
                ev.ref[1].set_result(ev.payload)
            for obs in self.observers:
                obs(self, ev)
        # Publish before the answers leave, so a peer that saw its answer also finds its data in `snapshot()`.
        if publish:
            self.server._publish(self.station)
        if pump:
            self.pump()
        else:
            self.flush()


class OcppServer:
    """The Central System. `evses`: config `evses[]` entries (those with an OCPP endpoint: `ocpp16` ones and Modbus
    chargers with `ocpp_id`, see `ocpp_station.ocpp_endpoint`).

    Options: `password` (server password, HTTP Basic), `ssl` (an `ssl.SSLContext` for wss), `tls_mode`
    (`ocpp.server.tls`: `off`, `detect` = ws and wss on one port, `on` = wss only) with `ssl_context_fn` (returns
    the current server context, so new certificates apply to the next handshake; see `tls.store_context_fn`),
    `sock` (a pre-bound, listening socket), `ping_interval_s`/`ping_timeout_s` (websocket keepalive,
    < 60 s so half-open links are found, A2), `response_timeout_s`, `max_message_bytes`, `monitor` (site in monitor
    mode: no profiles at all), `close_after_timeouts` (close a link whose CALLs keep timing out, A4 #2)."""

    def __init__(self, evses=(), host="0.0.0.0", port=DEFAULT_PORT, password=None, ssl=None, sock=None,
                 ping_interval_s=30, ping_timeout_s=30, response_timeout_s=30, max_message_bytes=256 * 1024,
                 monitor=False, close_after_timeouts=3, voltage_v=230, on_publish=None, tls_mode=None,
                 ssl_context_fn=None):
        self.host = host
        self.port = port
        self.password = password or None
        self.ssl = ssl
        if tls_mode not in (None, "off") and ssl_context_fn is None:
            raise ValueError("tls_mode %r needs ssl_context_fn" % tls_mode)
        self.tls_mode = tls_mode
        self.ssl_context_fn = ssl_context_fn
        self.security_profiles = {}  # chargebox id -> OCPP security profile 0..3 (white paper: one per box)
        self.sock = sock
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.response_timeout_ms = int(response_timeout_s * 1000)
        self.max_message_bytes = max_message_bytes
        self.monitor = monitor
        self.close_after_timeouts = close_after_timeouts
        self.voltage_v = voltage_v
        self.on_publish = on_publish  # f({dev_id: state}) on the loop thread after a station changed
        self.schemas = Schemas()
        self.new_id = osession.counter_ids(binascii.hexlify(os.urandom(4)).decode() + "-")
        self._tx_counter = [int(time.time()) & 0x3FFFFFFF]
        self.stations = {}  # chargebox id -> Station
        self.connections = {}  # chargebox id -> Connection
        self.on_connect = []  # callables(conn) run when a charge point connected (gateway hooks)
        self.on_disconnect = []  # callables(conn) run when that connection ended (gateway hooks)
        self.on_limit = []  # callables(chargebox_id, connector_id, limit_ma) after a new limit was set (gateway)
        self._seen = {}
        self._lock = threading.Lock()
        self._states = {}  # dev_id -> state dict (copies, read by other threads)
        self.last_apply_cpu_ms = 0.0  # CPU time of the last limit change on the loop thread (bench figure)
        self._loop = None
        self._thread = None
        self._server = None
        self._ready = threading.Event()
        self._stop = None
        self._start_error = None
        self._build_stations(evses)

    # ---- configuration -------------------------------------------------------------------------------------------

    def _new_tx_id(self):
        self._tx_counter[0] += 1
        return self._tx_counter[0]

    def _build_stations(self, evses):
        by_box = {}
        profiles = {}
        for evse in evses:
            endpoint = ostation.ocpp_endpoint(evse)
            if endpoint is None:
                continue
            cbid, connector_id = endpoint
            # Connectors of one box share its link; the strictest profile configured on any of them counts.
            profiles[cbid] = max(profiles.get(cbid, 0), int(evse.get("security_profile", 0)))
            opts = ostation.connector_opts(evse)
            opts["voltage_v"] = self.voltage_v
            if self.monitor:
                opts["mode"] = "monitor"
            by_box.setdefault(cbid, {})[connector_id] = opts
        self.security_profiles = profiles
        for cbid, connectors in by_box.items():
            st = self.stations.get(cbid)
            if st is None:
                self.stations[cbid] = ostation.Station(cbid, connectors, self._new_tx_id)
            else:
                st.connectors = connectors
        for cbid in list(self.stations):
            if cbid not in by_box:
                del self.stations[cbid]
                conn = self.connections.pop(cbid, None)
                if conn is not None:
                    asyncio.ensure_future(conn.ws.close(1000, "ChargeBox ID removed"))
        with self._lock:
            self._states = {}
        for st in self.stations.values():
            self._publish(st)

    def update_evses(self, evses, monitor=None, voltage_v=None):
        """Apply a new `evses[]` list (thread-safe); stations that stay keep their state and connection."""
        def apply():
            if monitor is not None:
                self.monitor = monitor
            if voltage_v is not None:
                self.voltage_v = voltage_v
            self._build_stations(evses)
            for conn in self.connections.values():
                conn.pump()
        self._call(apply)

    # ---- thread-safe interface for the control loop and the HTTP API -------------------------------------------

    def snapshot(self):
        """{dev_id: EVSE state} (copies; `meter_age_ms` is as of the last change)."""
        with self._lock:
            return dict(self._states)

    def state_of(self, dev_id):
        """One EVSE's state (as in `snapshot()`), or None; without copying every EVSE's."""
        with self._lock:
            return self._states.get(dev_id)

    def seen_unconfigured(self):
        """ChargeBox IDs that tried to connect but are not configured: [{chargebox_id, count, last_wall_ms, peer}]."""
        with self._lock:
            return [dict(v, chargebox_id=k) for k, v in self._seen.items()]

    def set_limits(self, limits_ma):
        """{dev_id: limit in mA or None}; profiles go out at once where the limit changed."""
        self._call(self._apply_limits, dict(limits_ma))

    def clear_profiles(self, chargebox_id, timeout_s=35):
        """Send ClearChargingProfile (all profiles) to a connected box and wait for the answer; returns the
        CALLRESULT payload, or {"error": ...}."""
        if self._loop is None:
            return {"error": "not running"}
        fut = asyncio.run_coroutine_threadsafe(self.clear_profiles_async(chargebox_id), self._loop)
        try:
            return fut.result(timeout_s)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            return {"error": "Timeout", "description": "no answer within %s s" % timeout_s}

    # ---- on the loop -------------------------------------------------------------------------------------------

    async def clear_profiles_async(self, chargebox_id):
        conn = self.connections.get(chargebox_id)
        if conn is None:
            return {"error": "not connected"}
        action, payload, ref = conn.station.clear_profiles()
        fut = asyncio.get_running_loop().create_future()
        conn.call(action, payload, (ref[0], fut))
        return await fut

    def _apply_limits(self, limits_ma):
        started = time.thread_time()
        touched = set()
        for st in self.stations.values():
            for cid, opts in st.connectors.items():
                if opts.get("dev_id") in limits_ma:
                    st.set_limit(cid, limits_ma[opts["dev_id"]])
                    for hook in self.on_limit:
                        hook(st.chargebox_id, cid, limits_ma[opts["dev_id"]])
                    touched.add(st.chargebox_id)
        for cbid in touched:
            conn = self.connections.get(cbid)
            if conn is not None:
                conn.pump()
            else:
                self._publish(self.stations[cbid])
        # Connected boxes publish when they answer (with the profile they accepted): the profiles go out first.
        self.last_apply_cpu_ms = (time.thread_time() - started) * 1000.0

    def _publish(self, station):
        states = station.evse_states(_monotonic_ms())
        by_dev = dict((s["dev_id"], s) for s in states.values() if s["dev_id"] is not None)
        with self._lock:
            self._states.update(by_dev)
        if self.on_publish is not None:
            try:
                self.on_publish(by_dev)
            except Exception:
                log.exception("publishing OCPP state failed")

    def _call(self, fn, *args):
        if self._loop is None:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    def _record_seen(self, cbid, peer):
        with self._lock:
            entry = self._seen.get(cbid)
            if entry is None:
                if len(self._seen) >= MAX_SEEN:
                    self._seen.pop(next(iter(self._seen)))
                entry = self._seen[cbid] = {"count": 0}
            entry["count"] += 1
            entry["last_wall_ms"] = _wall_ms()
            entry["peer"] = peer

    def _process_request(self, connection, request):
        cbid = chargebox_id_from_path(request.path)
        if cbid is None or cbid not in self.stations:
            peer = connection.remote_address[0] if connection.remote_address else None
            if cbid is not None:
                self._record_seen(cbid, peer)
            log.info("refused unknown ChargeBox ID %r from %s", cbid, peer)
            return _text_response(http.HTTPStatus.NOT_FOUND, "unknown ChargeBox ID")
        profile = self.security_profiles.get(cbid, 0)
        # Profile 3 authenticates by client certificate instead of the password (white paper A00.FR.401).
        if self.password is not None and profile != 3 and \
                not self._authorized(cbid, request.headers.get("Authorization")):
            log.info("refused ChargeBox ID %r: bad or missing credentials", cbid)
            return _text_response(http.HTTPStatus.UNAUTHORIZED, "credentials required (user = ChargeBox ID)",
                                  [("WWW-Authenticate", 'Basic realm="OCPP", charset="UTF-8"')])
        # White paper A00.FR.002: a box configured for a profile is refused on any other, also in detect mode.
        basic_ok = None if self.password is None else True  # a wrong password was refused just above
        reason = tls.check_security_profile(profile, tls.peer_info(connection.transport), basic_ok, cbid)
        if reason is not None:
            log.warning("refused ChargeBox ID %r from %s: %s", cbid,
                        connection.remote_address[0] if connection.remote_address else None, reason)
            return _text_response(http.HTTPStatus.FORBIDDEN, reason)
        return None

    def _authorized(self, cbid, header):
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        ok_user = hmac.compare_digest(user.encode(), cbid.encode())
        ok_pass = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_pass

    async def _handler(self, ws):
        cbid = chargebox_id_from_path(ws.request.path)
        station = self.stations.get(cbid)
        if station is None:  # removed by a config change during the handshake
            await ws.close(1008, "unknown ChargeBox ID")
            return
        old = self.connections.get(cbid)
        session = osession.Session(self.new_id, role="cs", validator=self.schemas.validate,
                                   response_timeout_ms=self.response_timeout_ms, boot_accepted=station.booted)
        conn = Connection(self, ws, station, session)
        self.connections[cbid] = conn
        if old is not None:
            # The new connection is authenticated: the old one is most likely half-open (A4 #4).
            old.closed = True
            station.disconnect(_monotonic_ms())
            # Not awaited: closing a half-open link waits for the close timeout, the new box must not.
            asyncio.ensure_future(old.ws.close(1000, "replaced by a new connection"))
        station.connect(_monotonic_ms())
        log.info("ChargeBox %s connected from %s", cbid, ws.remote_address)
        for hook in self.on_connect:
            hook(conn)
        conn.pump()
        self._publish(station)
        try:
            await conn.run()
        finally:
            if self.connections.get(cbid) is conn:
                del self.connections[cbid]
                station.disconnect(_monotonic_ms())
                self._publish(station)
            for hook in self.on_disconnect:
                hook(conn)
            log.info("ChargeBox %s disconnected", cbid)

    async def _ticker(self):
        while True:
            await asyncio.sleep(1)
            now_ms = _monotonic_ms()
            for conn in list(self.connections.values()):
                conn.tick(now_ms)
                if conn.session.consecutive_timeouts >= self.close_after_timeouts > 0:
                    conn.station.note(now_ms, "closing: %d CALLs timed out" % conn.session.consecutive_timeouts)
                    conn.session.consecutive_timeouts = 0
                    asyncio.ensure_future(conn.ws.close(1011, "no answers"))
                elif conn.station.caps is None or not conn.session.boot_accepted:
                    conn.pump()

    async def serve_async(self):
        """Run the server on the current loop until `stop_async`; sets `self.port` to the bound port."""
        kw = dict(subprotocols=[SUBPROTOCOL], process_request=self._process_request, compression=None,
                  ping_interval=self.ping_interval_s, ping_timeout=self.ping_timeout_s,
                  max_size=self.max_message_bytes, open_timeout=10, ssl=self.ssl, server_header=None)
        if self.tls_mode not in (None, "off"):
            kw["ssl"] = None
            kw.update(tls.serve_kwargs(self.tls_mode, self.ssl_context_fn))
        kw["create_connection"] = ws_direct.direct(kw.get("create_connection", ServerConnection))
        if self.sock is not None:
            kw["sock"] = self.sock
        else:
            kw["host"], kw["port"] = self.host, self.port
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._handler, **kw) as server:
            self._server = server
            self.port = server.sockets[0].getsockname()[1]
            ticker = self._loop.create_task(self._ticker())
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                ticker.cancel()

    def stop_async(self):
        if self._stop is not None:
            self._stop.set()

    def start(self, timeout_s=10):
        """Start the loop thread; returns the bound port once listening (raises if it could not bind)."""
        def run():
            try:
                asyncio.run(self.serve_async())
            except Exception as e:  # reported to start() below
                self._start_error = e
                self._ready.set()
        self._thread = threading.Thread(target=run, name="ocpp-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("OCPP server did not start within %s s" % timeout_s)
        if self._start_error is not None:
            raise self._start_error
        return self.port

    def stop(self, timeout_s=10):
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self.stop_async)
            self._thread.join(timeout_s)
            self._thread = None
