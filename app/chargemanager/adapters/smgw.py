"""Smart Meter Gateway (seed 000, SPEC §8; config section `smgw`).

Three parts:
- **CLS listener** (functions 2, 3, 4): a second HTTPS listener for the channel the SMGW opens towards us. Mutual
  TLS: the client must present a certificate that chains to the trusted SMGW entry (`smgw.trust`), otherwise the
  handshake fails. Every request on it carries the principal `smgw`: `set_cm_vars` and `get_cm_vars` need no
  password (the SMGW has authenticated the grid operator), every other command only with function 4. Each request
  is written to the audit log with the site's power at that moment.
- **Proxy channel** (function 1): outgoing connections (the OCPP gateway's backend links) go TLS to the SMGW with
  our client certificate (`smgw.cert`), then SOCKS5 CONNECT (RFC 1928) or HTTP CONNECT to the backend, then the
  backend's own TLS inside. `SmgwChannel.connect(uri, **kw)` is the drop-in for
  `websockets.asyncio.client.connect(uri, **kw)`.
- **Failsafe** variables (`smgw.failsafe[]`, core/failsafe.py): entry and exit are applied to the variables and
  audited; the state survives a restart.
"""

import asyncio
import io
import ipaddress
import logging
import socket
import struct
import threading
from urllib.parse import parse_qsl, urlsplit

from cheroot.ssl.builtin import BuiltinSSLAdapter
from cryptography import x509
from websockets.asyncio.client import connect as ws_connect

from chargemanager.adapters import tls
from chargemanager.adapters.audit import AuditLog
from chargemanager.adapters.certs import CertError, name_text
from chargemanager.adapters.http_api import CLS_FULL_ADMIN_KEY, PRINCIPAL_KEY, ApiError, build_app
from chargemanager.adapters.http_server import HttpServer
from chargemanager.adapters.store import atomic_write_json, read_json
from chargemanager.core.failsafe import FailsafeMonitor
from chargemanager.shim.clock import monotonic_ms, wall_time_s

log = logging.getLogger("smgw")

FAILSAFE_STATE_FILE = "failsafe.json"
AUDIT_BODY_CHARS = 2000
PROXY_TIMEOUT_S = 20.0


class SmgwError(Exception):
    """The SMGW channel cannot be used as configured; the message says why."""


def parse_address(address, default_port):
    """(host, port) from `host`, `host:port`, `[v6]:port` or a URL."""
    address = (address or "").strip()
    if not address:
        raise SmgwError("no SMGW address configured (smgw.address)")
    if "://" in address:
        parts = urlsplit(address)
        if not parts.hostname:
            raise SmgwError("SMGW address %r has no host" % address)
        return parts.hostname, parts.port or default_port
    try:
        ipaddress.ip_address(address)
        return address, default_port  # a bare IPv6 address contains colons but no port
    except ValueError:
        pass
    parts = urlsplit("//" + address)
    try:
        port = parts.port
    except ValueError:
        raise SmgwError("SMGW address %r has an invalid port" % address) from None
    if not parts.hostname:
        raise SmgwError("SMGW address %r has no host" % address)
    return parts.hostname, port or default_port


# --- SOCKS5 (RFC 1928) client ---------------------------------------------------------------------------------------

SOCKS_REPLIES = {
    1: "general SOCKS server failure", 2: "connection not allowed by ruleset", 3: "network unreachable",
    4: "host unreachable", 5: "connection refused", 6: "TTL expired", 7: "command not supported",
    8: "address type not supported",
}


class Socks5Error(ConnectionError):
    pass


def socks5_connect_request(host, port):
    """The CONNECT request for `host` (name or address) and `port` (RFC 1928 §4)."""
    try:
        ip = ipaddress.ip_address(host)
        atyp, addr = (1, ip.packed) if ip.version == 4 else (4, ip.packed)
    except ValueError:
        try:
            name = host.encode("idna")
        except UnicodeError as exc:
            raise Socks5Error("host name %r cannot be sent to the SMGW: %s" % (host[:80], exc)) from None
        if len(name) > 255:
            raise Socks5Error("host name too long for SOCKS5")
        atyp, addr = 3, bytes([len(name)]) + name
    return b"\x05\x01\x00" + bytes([atyp]) + addr + struct.pack(">H", port)


def socks5_reply_length(data):
    """Length of the complete CONNECT reply at the start of `data`, or None if more bytes are needed."""
    if len(data) < 5:
        return None
    atyp = data[3]
    if atyp == 1:
        n = 4 + 4 + 2
    elif atyp == 4:
        n = 4 + 16 + 2
    elif atyp == 3:
        n = 4 + 1 + data[4] + 2
    else:
        raise Socks5Error("SOCKS5 reply with unknown address type %d" % atyp)
    return n if len(data) >= n else None


class _Socks5Client(asyncio.Protocol):
    """Runs the SOCKS5 greeting (no authentication, or user/password, RFC 1929) and CONNECT on a fresh transport;
    then pauses it, so no byte of the tunnelled stream is read before its own protocol takes over."""

    def __init__(self, host, port, username=None, password=None):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.done = asyncio.get_running_loop().create_future()
        self._buf = b""
        self._state = "greeting"
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        methods = b"\x00\x02" if self.username else b"\x00"
        transport.write(b"\x05" + bytes([len(methods)]) + methods)

    def _fail(self, msg):
        if not self.done.done():
            self.done.set_exception(Socks5Error(msg))
        self.transport.abort()

    def data_received(self, data):
        if self.done.done():
            return
        self._buf += data
        try:
            self._advance()
        except Socks5Error as e:
            self._fail(str(e))

    def _advance(self):
        if self._state == "greeting":
            if len(self._buf) < 2:
                return
            ver, method = self._buf[0], self._buf[1]
            self._buf = self._buf[2:]
            if ver != 5:
                raise Socks5Error("the SMGW's proxy does not speak SOCKS5 (version byte %d)" % ver)
            if method == 0:
                self._send_connect()
            elif method == 2 and self.username:
                u, p = self.username.encode(), (self.password or "").encode()
                self.transport.write(b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p)
                self._state = "auth"
            else:
                raise Socks5Error("the SMGW's proxy accepts none of our authentication methods")
        if self._state == "auth":
            if len(self._buf) < 2:
                return
            status = self._buf[1]
            self._buf = self._buf[2:]
            if status != 0:
                raise Socks5Error("the SMGW's proxy refused the user name or password")
            self._send_connect()
        if self._state == "connect":
            n = socks5_reply_length(self._buf)
            if n is None:
                return
            rep = self._buf[1]
            if rep != 0:
                raise Socks5Error("SOCKS5 CONNECT to %s:%d failed: %s" % (
                    self.host, self.port, SOCKS_REPLIES.get(rep, "error %d" % rep)))
            if len(self._buf) > n:
                # The backend spoke first; we cannot hand those bytes on to the next protocol.
                raise Socks5Error("unexpected data after the SOCKS5 reply")
            self.transport.pause_reading()
            self._state = "open"
            self.done.set_result(None)

    def _send_connect(self):
        self.transport.write(socks5_connect_request(self.host, self.port))
        self._state = "connect"

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(Socks5Error("the SMGW's proxy closed the connection during the SOCKS5 "
                                                "handshake" + (": %s" % exc if exc else "")))

    def eof_received(self):
        return False


class _HttpConnectClient(asyncio.Protocol):
    """HTTP CONNECT (RFC 9110 §9.3.6) on a fresh transport; pauses it after the 2xx answer."""

    MAX_HEAD = 16384

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.done = asyncio.get_running_loop().create_future()
        self._buf = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        authority = "[%s]:%d" % (self.host, self.port) if ":" in self.host else "%s:%d" % (self.host, self.port)
        transport.write(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority, authority)).encode("idna"))

    def data_received(self, data):
        if self.done.done():
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > self.MAX_HEAD:
                self._fail("the SMGW's proxy sent an over-long answer to CONNECT")
            return
        status_line = self._buf.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or not parts[1].startswith("2"):
            self._fail("HTTP CONNECT to %s:%d failed: %s" % (self.host, self.port, status_line))
            return
        if len(self._buf) > end + 4:
            self._fail("unexpected data after the HTTP CONNECT answer")
            return
        self.transport.pause_reading()
        self.done.set_result(None)

    def _fail(self, msg):
        if not self.done.done():
            self.done.set_exception(ConnectionError(msg))
        self.transport.abort()

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(ConnectionError("the SMGW's proxy closed the connection during CONNECT"))


async def open_proxy_tunnel(method, proxy_host, proxy_port, proxy_ssl, target_host, target_port, username=None,
                            password=None, timeout_s=PROXY_TIMEOUT_S):
    """A transport (reading paused) through which bytes reach target_host:target_port: TLS to the proxy with
    `proxy_ssl` (our client certificate), then SOCKS5 CONNECT (`method` 'socks5') or HTTP CONNECT ('http_connect')."""
    loop = asyncio.get_running_loop()
    if method == "socks5":
        factory = lambda: _Socks5Client(target_host, target_port, username, password)  # noqa: E731
    elif method == "http_connect":
        factory = lambda: _HttpConnectClient(target_host, target_port)  # noqa: E731
    else:
        raise SmgwError("unknown proxy method %r" % method)

    async def run():
        transport, proto = await loop.create_connection(
            factory, proxy_host, proxy_port, ssl=proxy_ssl,
            server_hostname=proxy_host if proxy_ssl is not None else None)
        try:
            await proto.done
        except BaseException:
            transport.abort()
            raise
        return transport

    return await asyncio.wait_for(run(), timeout_s)


class _TunnelConnect(ws_connect):
    """websockets' connect, opening its TCP stream through a proxy tunnel (the pattern websockets uses for its own
    HTTP proxies: set the protocol on the tunnel's transport, then start TLS on it)."""

    def __init__(self, uri, tunnel_fn, **kwargs):
        self._tunnel_fn = tunnel_fn
        kwargs["proxy"] = None
        ws_connect.__init__(self, uri, **kwargs)

    async def open_tcp_connection(self):
        loop = asyncio.get_running_loop()
        kwargs = self.create_connection_kwargs.copy()
        ssl_ctx = kwargs.pop("ssl", None)
        server_hostname = kwargs.pop("server_hostname", None) or self.ws_uri.host
        if self.ws_uri.secure and ssl_ctx is None:
            ssl_ctx = True
        if ssl_ctx is True:
            ssl_ctx = tls.client_context()
        transport = await self._tunnel_fn(self.ws_uri.host, self.ws_uri.port)
        connection = self.factory(self.ws_uri)
        transport.set_protocol(connection)
        if ssl_ctx is not None:
            transport = await loop.start_tls(transport, connection, ssl_ctx, server_hostname=server_hostname)
        else:
            transport.resume_reading()
        connection.connection_made(transport)
        return connection


class _Splice(asyncio.Protocol):
    """One side of an in-process splice between two transports, with flow control both ways."""

    def __init__(self):
        self.transport = None
        self.peer = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.peer.transport.write(data)

    def eof_received(self):
        if self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
            return True
        self.peer.transport.close()
        return False

    def connection_lost(self, exc):
        if self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self):
        self.peer.transport.pause_reading()

    def resume_writing(self):
        self.peer.transport.resume_reading()


async def splice_to_socket(transport):
    """A connected socket whose bytes flow through `transport` (reading paused): one end of a socketpair, the other
    end spliced to the transport. For callers that take a plain socket (`sock=`), which a TLS-to-the-SMGW stream
    cannot be."""
    loop = asyncio.get_running_loop()
    inner, outer = socket.socketpair()
    inner.setblocking(False)
    a, b = _Splice(), _Splice()
    a.peer, b.peer = b, a
    transport.set_protocol(a)
    a.connection_made(transport)
    await loop.connect_accepted_socket(lambda: b, sock=inner)
    transport.resume_reading()
    return outer


class SmgwChannel:
    """Outgoing connections through the SMGW (function 1). `settings_fn()` returns the current `smgw` section."""

    def __init__(self, settings_fn, store):
        self._settings_fn = settings_fn
        self._store = store

    @property
    def active(self):
        s = self._settings_fn()
        return bool(s.get("enabled") and s.get("f1_ocpp_gateway"))

    def smgw_client_context(self):
        """TLS towards the SMGW: our certificate `smgw.cert`, trusting only `smgw.trust`. The SMGW is addressed by
        IP and its certificate names its serial, so the trust anchor, not the host name, identifies it."""
        s = self._settings_fn()
        if not s.get("trust"):
            raise SmgwError("no trusted SMGW certificate configured (smgw.trust)")
        try:
            ca = self._store.ca_pem([s["trust"]])
            pair = self._store.client_pair(s.get("cert") or "self-rsa")
        except KeyError as e:
            raise SmgwError("certificate %s named in the SMGW settings is not in the store" % e) from None
        except CertError as e:
            raise SmgwError(str(e)) from None
        return tls.client_context(ca_pem=ca, client_pair=pair, check_hostname=False)

    async def open_tunnel(self, host, port):
        s = self._settings_fn()
        proxy_host, proxy_port = parse_address(s.get("address"), s.get("proxy_port", 1080))
        return await open_proxy_tunnel(s.get("proxy_method", "socks5"), proxy_host, proxy_port,
                                       self.smgw_client_context(), host, port)

    async def socket_connector(self, host, port):
        """`connector(host, port)` for the OCPP gateway's backend links: a connected socket to host:port, through
        the SMGW (TLS + SOCKS5) when function 1 is on, else direct. The backend's TLS runs on top of it."""
        loop = asyncio.get_running_loop()
        if not self.active:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            last = None
            for family, type_, proto, _, addr in infos:
                sock = socket.socket(family, type_, proto)
                sock.setblocking(False)
                try:
                    await asyncio.wait_for(loop.sock_connect(sock, addr), PROXY_TIMEOUT_S)
                    return sock
                except (OSError, asyncio.TimeoutError) as exc:
                    sock.close()
                    last = exc
            raise last or OSError("cannot resolve %s" % host)
        return await splice_to_socket(await self.open_tunnel(host, port))

    def connect(self, uri, **kwargs):
        """Like `websockets.asyncio.client.connect(uri, **kwargs)`; through the SMGW when function 1 is on.
        `ssl=` is the backend's own TLS context (inside the tunnel)."""
        if not self.active:
            return ws_connect(uri, **kwargs)
        return _TunnelConnect(uri, self.open_tunnel, **kwargs)


# --- the CLS listener -----------------------------------------------------------------------------------------------

PEER_CERT_FN_KEY = "chargemanager.peer_cert_der"


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """cheroot's TLS adapter, but the handshake runs in the worker thread at the first read, not in cheroot's
    accepting thread: with the stock adapter one client that opens TCP and sends nothing holds up every other
    connection (the grid operator's included) for the whole socket timeout. A handshake failure then surfaces as a
    read error of that connection only. The environ gets a callable for the verified client certificate."""

    def wrap(self, sock):
        tls_sock = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        env = {"wsgi.url_scheme": "https", "HTTPS": "on",
               PEER_CERT_FN_KEY: lambda: tls_sock.getpeercert(binary_form=True)}
        return tls_sock, env


def _peer_subject(environ):
    fn = environ.get(PEER_CERT_FN_KEY)
    der = fn() if fn is not None else None
    if not der:
        return None
    try:
        return name_text(x509.load_der_x509_certificate(der).subject)
    except ValueError:
        return None


def cls_wsgi(app, full_admin_fn, audit, max_body_bytes):
    """Wraps the /cnf app for the CLS listener: marks every request as coming from the SMGW (the handshake has proved
    it) and audits it."""

    def wrapped(environ, start_response):
        environ[PRINCIPAL_KEY] = "smgw"
        environ[CLS_FULL_ADMIN_KEY] = bool(full_admin_fn())
        body = b""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if 0 < length <= max_body_bytes:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        status = []

        def sr(st, headers, exc_info=None):
            status.append(st)
            return start_response(st, headers, exc_info)

        result = b"".join(app(environ, sr))
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        audit.record("command", cmd=params.get("cmd"), method=environ.get("REQUEST_METHOD"), query=params,
                     body=body.decode("utf-8", "replace")[:AUDIT_BODY_CHARS] if body else None,
                     status=int(status[0].split()[0]) if status else None, peer=_peer_subject(environ))
        return [result]

    return wrapped


class ClsListener:
    def __init__(self, runtime, audit, settings_fn, host):
        self._runtime = runtime
        self._audit = audit
        self._settings_fn = settings_fn
        self._host = host
        self._server = None
        self._adapter = None
        self.error = None

    @property
    def port(self):
        return self._server.port if self._server else None

    def context(self):
        s = self._settings_fn()
        store = self._runtime.certs
        if not s.get("trust"):
            raise SmgwError("no trusted SMGW certificate configured (smgw.trust)")
        try:
            ca = store.ca_pem([s["trust"]])
            cert_id = s.get("cert") or "self-rsa"
            return tls.server_context(store, client_ca_pem=ca, client_cert="required", server_ids=[cert_id]), \
                store.client_pair(cert_id)
        except KeyError as e:
            raise SmgwError("certificate %s named in the SMGW settings is not in the store" % e) from None
        except CertError as e:
            raise SmgwError(str(e)) from None

    def start(self, port):
        ctx, (cert_path, key_path) = self.context()
        self._adapter = DeferredHandshakeAdapter(cert_path, key_path)
        self._adapter.context = ctx
        max_body = self._runtime.config["http"]["max_body_bytes"]
        app = build_app(self._runtime.commands, self._runtime.auth, max_body)
        full_admin = lambda: self._settings_fn().get("f4_admin")  # noqa: E731
        self._server = HttpServer(cls_wsgi(app, full_admin, self._audit, max_body), self._host, port,
                                  ssl_adapter=self._adapter, name="smgw-cls")
        self._server.start()

    def refresh_context(self):
        """New certificates apply to the next handshake without dropping the listener."""
        if self._adapter is not None:
            self._adapter.context = self.context()[0]

    def stop(self):
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._adapter = None


# --- failsafe -------------------------------------------------------------------------------------------------------

class FailsafeService:
    """Applies core.failsafe to the live variables: entry sets the failsafe value (persisted, source `failsafe`),
    the grid operator's next write ends it. State goes to `failsafe.json` with the wall time of the last write."""

    def __init__(self, runtime, audit, settings_fn, clock_ms=monotonic_ms, wall_s=wall_time_s):
        self._runtime = runtime
        self._audit = audit
        self._settings_fn = settings_fn
        self._clock_ms = clock_ms
        self._wall_s = wall_s
        self._lock = threading.Lock()
        self._monitor = FailsafeMonitor()
        self._path = runtime.store.path(FAILSAFE_STATE_FILE)
        now_ms = clock_ms()
        self._monitor.configure(self._entries(), now_ms)
        self._restore(now_ms)
        runtime.variables.add_write_listener(self._on_write)

    def _entries(self):
        s = self._settings_fn()
        return s.get("failsafe", []) if s.get("enabled") else []

    def _restore(self, now_ms):
        doc = read_json(self._path)
        if not isinstance(doc, dict):
            return
        state = {}
        wall = self._wall_s()
        for name, saved in (doc.get("vars") or {}).items():
            if not isinstance(saved, dict):
                continue
            last = saved.get("last_write_wall_s")
            since = int((wall - last) * 1000) if isinstance(last, (int, float)) and wall >= last else None
            state[name] = {"active": bool(saved.get("active")), "since_write_ms": since}
        self._monitor.restore(state, now_ms)

    def _save(self, now_ms):
        wall = self._wall_s()
        state = self._monitor.persistent_state(now_ms)
        doc = {"vars": dict((name, {"active": v["active"], "last_write_wall_s": wall - v["since_write_ms"] / 1000.0})
                            for name, v in state.items())}
        try:
            atomic_write_json(self._path, doc)
        except OSError as exc:
            log.error("cannot store the failsafe state: %s", exc)

    def reconfigure(self):
        with self._lock:
            now_ms = self._clock_ms()
            self._monitor.configure(self._entries(), now_ms)
            self._save(now_ms)

    def _on_write(self, names, source):
        with self._lock:
            now_ms = self._clock_ms()
            exits = self._monitor.written(names, source, now_ms)
            if source != "failsafe" and self._monitor.status(now_ms):
                self._save(now_ms)
        for name in exits:
            self._audit.record("failsafe_exit", variable=name, by=source)

    def tick(self, now_ms=None, values=None):
        with self._lock:
            now_ms = self._clock_ms() if now_ms is None else now_ms
            entries = self._monitor.tick(now_ms)
            if entries:
                self._save(now_ms)
        for name, value in entries:
            try:
                self._runtime.variables.set_batch([(name, value)], persist=True, source="failsafe")
            except Exception as exc:  # a broken failsafe formula must still be audited, and not stop the loop
                log.error("failsafe value for %s cannot be applied: %s", name, exc)
                self._audit.record("failsafe_enter", variable=name, value=value, error=str(exc))
                continue
            self._audit.record("failsafe_enter", variable=name, value=value)

    def status(self):
        with self._lock:
            return self._monitor.status(self._clock_ms())


# --- wiring ---------------------------------------------------------------------------------------------------------

def site_power_w(runtime):
    """The grid meters' summed power in W (fresh readings only), or None."""
    total, seen = 0, False
    now = monotonic_ms()
    for meter in runtime.config.get("meters") or []:
        if meter.get("role") != "grid":
            continue
        reading = runtime.readings.get(meter["dev_id"])
        if reading is None:
            continue
        quantities, taken_ms, max_age_ms = reading
        if "power_w" in quantities and now - taken_ms <= max_age_ms:
            total += quantities["power_w"]
            seen = True
    return total if seen else None


class SmgwService:
    """Owns the CLS listener, the proxy channel and the failsafe variables; follows configuration changes."""

    def __init__(self, runtime, cls_port=None):
        self._runtime = runtime
        self.cls_port = cls_port  # overrides smgw.cls_port (tests use 0: an ephemeral port)
        self.audit = AuditLog(runtime.store.folder, site_power_fn=lambda: site_power_w(runtime))
        settings = lambda: runtime.config.get("smgw") or {}  # noqa: E731
        self.channel = SmgwChannel(settings, runtime.certs)
        self.failsafe = FailsafeService(runtime, self.audit, settings)
        self.listener = ClsListener(runtime, self.audit, settings, runtime.host)
        self._settings = settings
        self._started = False
        self._lock = threading.Lock()
        runtime.certs.on_change(self._certs_changed)

    def _wants_listener(self):
        s = self._settings()
        return bool(s.get("enabled") and (s.get("f2_grid_power") or s.get("f3_tariff") or s.get("f4_admin")))

    def _start_listener(self):
        self.listener.error = None
        if not self._wants_listener():
            return
        port = self.cls_port if self.cls_port is not None else self._settings()["cls_port"]
        try:
            self.listener.start(port)
        except (SmgwError, OSError, ValueError) as exc:
            self.listener.error = str(exc)
            log.error("SMGW CLS listener not started: %s", exc)

    def start(self):
        with self._lock:
            self._started = True
            self._start_listener()

    def stop(self):
        with self._lock:
            self._started = False
            self.listener.stop()

    def config_changed(self, new, old):
        if (new.get("smgw") or {}) == (old.get("smgw") or {}):
            return
        self.failsafe.reconfigure()
        with self._lock:
            if self._started:
                self.listener.stop()
                self._start_listener()

    def _certs_changed(self):
        with self._lock:
            if not self._started:
                return
            try:
                self.listener.refresh_context()
            except (SmgwError, OSError, ValueError) as exc:
                self.listener.error = str(exc)
                log.error("SMGW CLS listener keeps its old certificates: %s", exc)

    def status(self):
        s = self._settings()
        return {"enabled": bool(s.get("enabled")), "cls_listener_port": self.listener.port,
                "cls_listener_error": self.listener.error, "proxy_active": self.channel.active,
                "failsafe": self.failsafe.status()}


def register_smgw_commands(commands, service):
    def get_audit_log(req):
        limit = req.param("limit") or "100"
        if not limit.isdigit() or not 1 <= int(limit) <= 10000:
            raise ApiError(400, "parameter 'limit' must be a whole number 1..10000")
        return 200, {"entries": service.audit.read(int(limit))}

    def get_smgw_status(req):
        return 200, service.status()

    commands.register("get_audit_log", get_audit_log)
    commands.register("get_smgw_status", get_smgw_status)


def install(runtime, cls_port=None):
    """Add the SMGW parts to a runtime (called from runtime.py); returns the service."""
    service = SmgwService(runtime, cls_port)
    runtime.services.append(service)
    runtime.tick_hooks.append(service.failsafe.tick)
    runtime.config_listeners.append(service.config_changed)
    runtime.status_providers["smgw"] = service.status
    register_smgw_commands(runtime.commands, service)
    return service


__all__ = ["SmgwChannel", "SmgwService", "SmgwError", "Socks5Error", "install", "open_proxy_tunnel",
           "parse_address", "socks5_connect_request"]
