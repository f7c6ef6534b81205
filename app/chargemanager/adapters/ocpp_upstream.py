"""The backend link of one EVSE's OCPP gateway: a websocket client that stays up.

It dials `<url><clientID>` (the client id percent-encoded; the URL may carry a path, e.g.
`ws://ocpp.backend.com/path/to/resource/`) with subprotocol `ocpp1.6`, HTTP Basic when a password is set (username
= client ID: OCPP security profile 1, or 2 over TLS), and for `wss://` TLS 1.2+ verified against the system trust
store or the configured CA files, with an optional client certificate and key (profile 3). After a failure it waits
a back-off that starts at 5 s and doubles up to 5 min, each wait drawn from [half, full] of its step (jitter, so
500 links that lost the same backend do not return in lockstep). The link is dialled whether the wallbox is
connected or not.

`connector(host, port)`, when given, is an async callable returning a connected socket (or None: dial directly); it
replaces the direct TCP connection (the Smart Meter Gateway's proxy channel, `SmgwChannel.socket_connector`, plugs in
here). TLS and websocket run on top of it unchanged. `ssl_context` replaces the context built from the file options
(the runtime builds it with `tls.client_context` from the certificate store).

Runs in the OCPP thread's asyncio loop; callbacks `on_open()`, `on_text(text)`, `on_close(reason)` are called in it.
"""

import asyncio
import base64
import random
import ssl
import logging
import urllib.parse

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from chargemanager.adapters import tls, ws_direct

SUBPROTOCOL = "ocpp1.6"
log = logging.getLogger(__name__)


WRITE_BUFFER_HIGH = 64 * 1024


class Sender:
    """Ordered sends on one websocket connection without a task per frame.

    While the socket keeps up (its write buffer below WRITE_BUFFER_HIGH) a frame is written at once through
    websockets' sans-I/O protocol (`protocol.send_text`) and `send_data()`; otherwise frames wait in a queue that
    one writer task empties with the regular, flow-controlled `send()`. Order is kept because the fast path is taken
    only while that queue is empty. Forwarding costs two frames each way, so this halves the gateway's CPU per
    message against `await ws.send()` per frame."""

    def __init__(self, ws):
        self.ws = ws
        self.backlog = []
        self.wakeup = None
        self.task = None

    def send(self, text):
        ws = self.ws
        if not self.backlog and ws.protocol.state is State.OPEN and \
                ws.transport.get_write_buffer_size() < WRITE_BUFFER_HIGH:
            ws.protocol.send_text(text.encode("utf-8"))
            ws.send_data()
            return
        self.backlog.append(text)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self):
        try:
            while self.backlog:
                await self.ws.send(self.backlog[0])
                self.backlog.pop(0)
        except websockets.ConnectionClosed:
            self.backlog = []
        finally:
            self.task = None

    def close(self):
        if self.task is not None:
            self.task.cancel()
            self.task = None
        self.backlog = []


class UpstreamConfigError(ValueError):
    pass


def backend_uri(url, client_id):
    """`<url><clientID>` with the id percent-encoded (OCPP-J 3.1.1); ValueError for a URL that cannot work."""
    if not isinstance(url, str) or not url:
        raise UpstreamConfigError("gateway url is empty")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise UpstreamConfigError("gateway url must start with ws:// or wss://, got %r" % url)
    if not parts.hostname:
        raise UpstreamConfigError("gateway url has no host: %r" % url)
    if parts.query or parts.fragment:
        raise UpstreamConfigError("gateway url must not carry a query or fragment: %r" % url)
    if not client_id:
        raise UpstreamConfigError("gateway client id is empty")
    return url + urllib.parse.quote(client_id, safe="")


def tls_context(ca_files=None, client_cert=None, client_key=None):
    """Client TLS context (TLS 1.2+, the project's cipher policy): the system trust store, or only the given CA
    files (profile 2); an optional client certificate (profile 3)."""
    ca_pem = None
    if ca_files:
        ca_pem = ""
        for path in ca_files:
            with open(path) as f:
                ca_pem += f.read()
    pair = (client_cert, client_key or client_cert) if client_cert else None
    return tls.client_context(ca_pem=ca_pem, client_pair=pair)


class Backoff:
    """5 s doubling to 5 min, each wait uniformly in [step/2, step]; reset after a good connection."""

    def __init__(self, min_s=5.0, max_s=300.0, rng=random.random):
        self.min_s = min_s
        self.max_s = max_s
        self.rng = rng
        self.step_s = min_s

    def next_s(self):
        step = self.step_s
        self.step_s = min(self.max_s, step * 2)
        return step * (0.5 + 0.5 * self.rng())

    def reset(self):
        self.step_s = self.min_s


class UpstreamLink:
    def __init__(self, url, client_id, password=None, on_open=None, on_text=None, on_close=None, ca_files=None,
                 client_cert=None, client_key=None, connector=None, backoff_min_s=5.0, backoff_max_s=300.0,
                 open_timeout_s=10.0, ping_interval_s=30.0, ping_timeout_s=30.0, ssl_context=None):
        self.uri = backend_uri(url, client_id)
        self.client_id = client_id
        self.headers = {}
        if password:
            token = base64.b64encode(("%s:%s" % (client_id, password)).encode("utf-8")).decode("ascii")
            self.headers["Authorization"] = "Basic " + token
        self.tls = self.uri.startswith("wss://")
        if not self.tls:
            self.ssl = None
        elif ssl_context is not None:
            self.ssl = ssl_context
        else:
            self.ssl = tls_context(ca_files, client_cert, client_key)
        self.connector = connector
        self.on_open = on_open or (lambda: None)
        self.on_text = on_text or (lambda text: None)
        self.on_close = on_close or (lambda reason: None)
        self.backoff = Backoff(backoff_min_s, backoff_max_s)
        self.open_timeout_s = open_timeout_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.ws = None
        self.sender = None
        self.task = None
        self.connected = False
        self.last_error = ""
        self.next_wait_s = 0.0
        self.connects = 0

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self.task

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None

    def send(self, text):
        """Queue a frame on the open connection; False if there is none (the caller keeps the state)."""
        if self.ws is None:
            return False
        self.sender.send(text)
        return True

    def status(self):
        return {"connected": self.connected, "backoff_s": round(self.next_wait_s, 1), "last_error": self.last_error,
                "connects": self.connects, "url": self.uri}

    async def _open(self):
        kwargs = {}
        if self.connector is not None:
            parts = urllib.parse.urlsplit(self.uri)
            port = parts.port or (443 if self.tls else 80)
            sock = await self.connector(parts.hostname, port)
            if sock is not None:  # None: the connector lets this dial go direct (e.g. SMGW function 1 off)
                kwargs["sock"] = sock
        return await connect(self.uri, subprotocols=[SUBPROTOCOL], additional_headers=self.headers,
                             ssl=self.ssl, proxy=None, compression=None, open_timeout=self.open_timeout_s,
                             ping_interval=self.ping_interval_s, ping_timeout=self.ping_timeout_s,
                             max_size=1 << 20, create_connection=ws_direct.direct(ClientConnection), **kwargs)

    async def _run(self):
        while True:
            ws = None
            try:
                ws = await self._open()
                if ws.subprotocol != SUBPROTOCOL:
                    raise ConnectionError("backend did not agree to subprotocol ocpp1.6")
                self.sender = Sender(ws)
                self.ws = ws
                self.connected = True
                self.connects += 1
                self.last_error = ""
                self.backoff.reset()
                self.on_open()
                # Whole text frames come straight from the socket callback (adapters/ws_direct.py); the loop sees
                # only fragmented or binary messages.
                ws.on_text = self.on_text
                async for text in ws:
                    if isinstance(text, str):
                        self.on_text(text)
                reason = "closed by backend (%s)" % (ws.close_code,)
            except asyncio.CancelledError:
                if ws is not None:
                    await ws.close()
                self._closed("stopped")
                raise
            except websockets.InvalidStatus as e:
                reason = "backend refused the connection: HTTP %d" % e.response.status_code
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException, ConnectionError,
                    ssl.SSLError) as e:
                reason = "%s: %s" % (type(e).__name__, e)
            except Exception as e:
                # A bug behind a callback must not end the link for good: log it, drop the connection, redial.
                log.exception("gateway link %s", self.uri)
                reason = "internal error: %s" % (e,)
            if ws is not None:
                await ws.close()
            self._closed(reason)
            self.next_wait_s = self.backoff.next_s()
            await asyncio.sleep(self.next_wait_s)
            self.next_wait_s = 0.0

    def _closed(self, reason):
        was = self.connected
        if self.sender is not None:
            self.sender.close()
            self.sender = None
        self.ws = None
        self.connected = False
        self.last_error = reason
        if was:
            self.on_close(reason)
