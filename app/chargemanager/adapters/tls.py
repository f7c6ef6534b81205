"""TLS contexts and the ws/wss "detect" listener (SPEC §4, §6; OCPP 1.6 security white paper, REFERENCE A1).

- Every context speaks TLS 1.2 or newer only (A00.FR.312/314); TLS compression is off (A00.FR.320).
- TLS 1.2 cipher suites: the four the white paper requires of a Central System (A00.FR.317) plus their ECDHE-RSA
  siblings, nothing else; TLS 1.3 suites are OpenSSL's defaults (all AEAD).
- A server context presents every server certificate of the store, one per key type (RSA and ECDSA), so both the
  RSA and the ECDHE-ECDSA suites can be negotiated.
- Trusted certificates are trust anchors even when they are not self-signed roots (partial chain), so an admin may
  trust a server's or an SMGW's own certificate, as the seed describes.

Detect mode: one listening socket serves ``ws://`` and ``wss://``. After accepting, the first byte is peeked
(never consumed): 0x16 is a TLS handshake record, anything else is taken as plain HTTP. The TLS case is upgraded
with ``loop.start_tls`` on the same transport, so the websockets connection object sees a normal (TLS or plain)
transport and the rest of the server does not know the difference.
"""

import asyncio
import logging
import os
import socket
import ssl

from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES128-GCM-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (required)
    "ECDHE-ECDSA-AES256-GCM-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (required)
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",              # TLS_RSA_WITH_AES_128_GCM_SHA256 (required)
    "AES256-GCM-SHA384",              # TLS_RSA_WITH_AES_256_GCM_SHA384 (required)
])
TLS_RECORD_HANDSHAKE = 0x16
DEFAULT_PEEK_TIMEOUT_S = 10.0
TLS_MODES = ("off", "detect", "on")


def _harden(ctx):
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


def server_context(store, client_ca_pem=None, client_cert="none", server_ids=None):
    """A server context with the store's server certificates.

    ``client_cert``: 'none' (do not ask), 'optional' (ask; a certificate that is sent must chain to
    ``client_ca_pem``, OCPP profile 3 is then decided per charge point) or 'required' (refuse the handshake without a
    certificate chaining to ``client_ca_pem``: the SMGW listener). ``server_ids`` picks given store entries instead
    of the default per-key-type choice."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    pairs = [store.client_pair(i) for i in server_ids] if server_ids else store.server_pairs()
    if not pairs:
        raise ValueError("no server certificate in the store")
    for cert_path, key_path in pairs:
        ctx.load_cert_chain(cert_path, key_path)
    if client_cert == "none":
        ctx.verify_mode = ssl.CERT_NONE
    elif client_cert in ("optional", "required"):
        if client_ca_pem:
            ctx.load_verify_locations(cadata=client_ca_pem)
        elif client_cert == "required":
            raise ValueError("client certificates are required but no CA certificate is trusted")
        ctx.verify_mode = ssl.CERT_OPTIONAL if client_cert == "optional" else ssl.CERT_REQUIRED
    else:
        raise ValueError("client_cert must be none, optional or required")
    return ctx


def client_context(ca_pem=None, client_pair=None, check_hostname=True, verify=True):
    """A client context: trust ``ca_pem`` (else the system store), present ``client_pair`` (cert_path, key_path)
    when given (mutual TLS, OCPP profile 3). ``verify=False`` only where the seed asks for it (a backend with no CA
    configured is accepted unverified)."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
        if ca_pem:
            ctx.load_verify_locations(cadata=ca_pem)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if client_pair:
        ctx.load_cert_chain(*client_pair)
    return ctx


def peer_info(transport):
    """What a connection's transport tells about its security: {'tls', 'version', 'cipher', 'peer_cert'}.

    ``peer_cert`` is the verified client certificate as the ssl module decodes it, or None."""
    obj = transport.get_extra_info("ssl_object") if transport is not None else None
    if obj is None:
        return {"tls": False, "version": None, "cipher": None, "peer_cert": None}
    cipher = obj.cipher()
    return {"tls": True, "version": obj.version(), "cipher": cipher[0] if cipher else None,
            "peer_cert": obj.getpeercert() or None}


def cert_common_name(peer_cert):
    for rdn in (peer_cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def check_security_profile(profile, info, basic_auth_ok, identity=None, require_cn=False):
    """Decide whether a charge point may connect (white paper A00.FR.002: refuse another profile than configured).

    ``profile`` 0..3 as configured for the charge point, ``info`` from ``peer_info``, ``basic_auth_ok`` whether the
    HTTP Basic credentials were checked and right (None when no password is configured). Returns None to accept,
    or the reason for refusing (for the log and the HTTP 401/403)."""
    if profile >= 2 and not info["tls"]:
        return "security profile %d needs TLS (wss://); plain ws:// refused" % profile
    if profile == 3:
        if not info["peer_cert"]:
            return "security profile 3 needs a client certificate issued by a trusted CA"
        if require_cn and identity is not None and cert_common_name(info["peer_cert"]) != identity:
            return "client certificate CN %r does not match the charge point id %r" % (
                cert_common_name(info["peer_cert"]), identity)
        return None
    if profile in (1, 2) and basic_auth_ok is not True:
        return "security profile %d needs the charge point's password (HTTP Basic)" % profile
    return None


class DetectConnection(ServerConnection):
    """A websockets server connection that first finds out whether the client speaks TLS.

    Use through ``detect_connection_factory``; pass the result as ``create_connection=`` to
    ``websockets.asyncio.server.serve``. ``ssl_context_fn()`` returns the current server context (so new
    certificates apply to the next connection without restarting the listener)."""

    ssl_context_fn = None
    peek_timeout_s = DEFAULT_PEEK_TIMEOUT_S
    allow_plain = True
    _started = False

    def connection_made(self, transport):
        # Pause before the transport registers its reader (it does so in the next loop step), so no byte is
        # consumed before we know which protocol the client speaks.
        transport.pause_reading()
        self._raw_transport = transport
        self._detect_task = asyncio.get_running_loop().create_task(self._detect(transport))

    async def _detect(self, transport):
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(_peek_first_byte(loop, transport), self.peek_timeout_s)
        except (asyncio.TimeoutError, OSError) as e:
            log.info("closing a connection that sent nothing to detect (%s)", type(e).__name__)
            transport.abort()
            return
        if first is None:
            transport.close()
            return
        if first == TLS_RECORD_HANDSHAKE:
            try:
                ctx = self.ssl_context_fn()
                tls_transport = await loop.start_tls(transport, self, ctx, server_side=True,
                                                     ssl_handshake_timeout=self.peek_timeout_s)
            except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError, ValueError) as e:
                peer = transport.get_extra_info("peername")
                log.warning("TLS handshake with %s failed: %s", peer, e)
                transport.abort()
                return
            self._started = True
            super().connection_made(tls_transport)
        elif self.allow_plain:
            self._started = True
            super().connection_made(transport)
            transport.resume_reading()
        else:
            log.warning("plain connection from %s refused: the OCPP server speaks TLS only",
                        transport.get_extra_info("peername"))
            transport.abort()


    def connection_lost(self, exc):
        # A connection refused during detection or the TLS handshake never became a websockets connection.
        if self._started:
            super().connection_lost(exc)


async def _peek_first_byte(loop, transport):
    """The first byte the client sent, without consuming it; None when the client closed without sending."""
    tsock = transport.get_extra_info("socket")
    # A duplicate descriptor of the same socket: the transport owns the original one in the selector, the duplicate
    # may be watched on its own.
    dup = socket.socket(fileno=os.dup(tsock.fileno()))
    try:
        dup.setblocking(False)
        while True:
            try:
                data = dup.recv(1, socket.MSG_PEEK)
                return data[0] if data else None
            except BlockingIOError:
                pass
            ready = loop.create_future()
            loop.add_reader(dup.fileno(), lambda: ready.done() or ready.set_result(None))
            try:
                await ready
            finally:
                loop.remove_reader(dup.fileno())
    finally:
        dup.close()


def detect_connection_factory(ssl_context_fn, peek_timeout_s=DEFAULT_PEEK_TIMEOUT_S, allow_plain=True):
    """``create_connection`` for websockets' ``serve``: serve ws and wss on one port (OCPP ``tls = detect``), or
    wss only with ``allow_plain=False`` (``tls = on``; the context is still fetched per connection, so a newly
    imported certificate applies without a restart)."""
    return type("BoundDetectConnection", (DetectConnection,),
                {"ssl_context_fn": staticmethod(ssl_context_fn), "peek_timeout_s": peek_timeout_s,
                 "allow_plain": allow_plain})


def serve_kwargs(mode, ssl_context_fn):
    """Keyword arguments for ``websockets.asyncio.server.serve`` for an OCPP ``tls`` setting off|detect|on."""
    if mode == "off":
        return {}
    if mode in ("on", "detect"):
        return {"create_connection": detect_connection_factory(ssl_context_fn, allow_plain=(mode == "detect"))}
    raise ValueError("ocpp.server.tls must be one of off, detect, on")


def store_context_fn(store):
    """A function returning the OCPP server context built from the certificate store, rebuilt after the store
    changes. Client certificates are asked for (never required) when the store trusts any CA: profile-3 boxes are
    then verified, and the profile check per box decides. Without a CA nothing is asked, so a box that carries a
    certificate anyway is not refused for sending it."""
    cache = {}
    store.on_change(cache.clear)

    def get():
        ctx = cache.get("ctx")
        if ctx is None:
            ca = store.ca_pem()
            ctx = server_context(store, client_ca_pem=ca or None, client_cert="optional" if ca else "none")
            cache["ctx"] = ctx
        return ctx

    return get
