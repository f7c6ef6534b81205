#!/usr/bin/env python3
"""A small Smart Meter Gateway simulator for tests and bench work (seed 000, SPEC §8).

What a real SMGW does towards a controllable system on its HAN interface, reduced to what the manager meets:
- It has its own test CA ("SMGW Test-CA") and a certificate issued by it, used both as TLS server (proxy channel)
  and as TLS client (CLS channel towards the manager).
- **Proxy channel**: a TLS server that requires the manager's client certificate (the one the SMGW admin pinned),
  then relays a SOCKS5 CONNECT (RFC 1928, no authentication) or an HTTP CONNECT request to the target, byte for
  byte, both ways. It records every target it connected to.
- **CLS channel**: an HTTPS client presenting the SMGW certificate, for the grid operator's `/cnf` calls.

Usage:
    tools/smgw_sim.py DIR init                      make the CA and the SMGW certificate in DIR (smgw-ca.crt, smgw.crt)
    tools/smgw_sim.py DIR proxy --trust MGR.crt [--port 1080]
    tools/smgw_sim.py DIR cls 'https://manager:8443/cnf?cmd=set_cm_vars&name=AVAIL&val=0' [--trust MGR.crt]
"""

import argparse
import asyncio
import datetime
import http.client
import ipaddress
import json
import os
import ssl
import struct
import sys
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SMGW_SUBJECT = [("CN", "1ESY1160012345"), ("O", "Messstellenbetrieb Köln GmbH"), ("C", "DE")]
_OIDS = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}


def _name(pairs):
    return x509.Name([x509.NameAttribute(_OIDS[k], v) for k, v in pairs])


def _write(path, data, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_cert(subject, key, issuer_name, issuer_key, days=30, ca=False, sans=("127.0.0.1", "localhost")):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        alt = []
        for s in sans:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                alt.append(x509.DNSName(s))
        b = (b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False))
    return b.sign(issuer_key, hashes.SHA256())


class SmgwSim:
    """The simulator's files live in `folder`: smgw-ca.crt, smgw.crt, smgw.key (and trusted.crt once set)."""

    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.ca_path = os.path.join(folder, "smgw-ca.crt")
        self.cert_path = os.path.join(folder, "smgw.crt")
        self.key_path = os.path.join(folder, "smgw.key")
        self.trust_path = os.path.join(folder, "trusted.crt")
        if not os.path.exists(self.cert_path):
            self._init()
        self.connections = []  # (host, port) the proxy connected to, in order
        self._server = None

    def _init(self):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name([("CN", "SMGW Test-CA"), ("O", "Gateway-Admin Test"), ("C", "DE")])
        ca = make_cert([("CN", "SMGW Test-CA"), ("O", "Gateway-Admin Test"), ("C", "DE")], ca_key, ca_name, ca_key,
                       days=3650, ca=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = make_cert(SMGW_SUBJECT, key, ca_name, ca_key)
        _write(self.ca_path, ca.public_bytes(serialization.Encoding.PEM))
        _write(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        _write(self.key_path, _key_pem(key), 0o600)

    def self_made(self, folder):
        """A self-signed impostor with the SMGW's subject (not issued by the SMGW CA): (cert_path, key_path)."""
        os.makedirs(folder, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = make_cert(SMGW_SUBJECT, key, _name(SMGW_SUBJECT), key)
        c, k = os.path.join(folder, "impostor.crt"), os.path.join(folder, "impostor.key")
        _write(c, cert.public_bytes(serialization.Encoding.PEM))
        _write(k, _key_pem(key), 0o600)
        return c, k

    def trust(self, pem):
        """The manager certificate (PEM text) the gateway admin configured for this controllable system."""
        _write(self.trust_path, pem.encode("ascii") if isinstance(pem, str) else pem)

    # --- proxy channel ------------------------------------------------------------------------------------------
    def server_context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the pinned manager certificate is a trust anchor
        ctx.load_verify_locations(self.trust_path)
        return ctx

    async def start_proxy(self, host="127.0.0.1", port=0):
        self._server = await asyncio.start_server(self._relay, host, port, ssl=self.server_context())
        return self._server.sockets[0].getsockname()[1]

    async def stop_proxy(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _relay(self, reader, writer):
        try:
            first = await reader.readexactly(1)
            if first == b"\x05":
                target = await self._socks5(reader, writer)
            else:
                target = await self._http_connect(first, reader, writer)
            if target is None:
                return
            up_reader, up_writer = target
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _open(self, host, port):
        self.connections.append((host, port))
        return await asyncio.open_connection(host, port)

    async def _socks5(self, reader, writer):
        n = (await reader.readexactly(1))[0]
        methods = await reader.readexactly(n)
        if 0 not in methods:
            writer.write(b"\x05\xff")
            return None
        writer.write(b"\x05\x00")
        ver, cmd, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif atyp == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode("idna")
        else:
            writer.write(b"\x05\x08\x00\x01" + bytes(6))
            return None
        port = struct.unpack(">H", await reader.readexactly(2))[0]
        if cmd != 1:
            writer.write(b"\x05\x07\x00\x01" + bytes(6))
            return None
        try:
            up = await self._open(host, port)
        except OSError:
            writer.write(b"\x05\x05\x00\x01" + bytes(6))
            return None
        writer.write(b"\x05\x00\x00\x01" + bytes(4) + b"\x00\x00")
        return up

    async def _http_connect(self, first, reader, writer):
        head = first + await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(line) < 2 or line[0] != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return None
        host, _, port = line[1].rpartition(":")
        try:
            up = await self._open(host.strip("[]"), int(port))
        except (OSError, ValueError):
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return None
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return up

    # --- CLS channel --------------------------------------------------------------------------------------------
    def client_context(self, cert=None, key=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        if os.path.exists(self.trust_path):
            ctx.load_verify_locations(self.trust_path)
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(cert or self.cert_path, key or self.key_path)
        return ctx

    def cls_request(self, url, method="GET", body=None, cert=None, key=None, headers=None):
        """(status, parsed JSON) of a request on the manager's CLS listener, as the grid operator's SMGW makes it."""
        parts = urlsplit(url)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=self.client_context(cert, key),
                                           timeout=30)
        try:
            path = parts.path + ("?" + parts.query if parts.query else "")
            data = json.dumps(body).encode("utf-8") if isinstance(body, (dict, list)) else body
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, json.loads(raw.decode("utf-8")) if raw else None
        finally:
            conn.close()


async def _pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, RuntimeError):
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("init")
    p = sub.add_parser("proxy")
    p.add_argument("--trust", required=True, help="the manager's client certificate (PEM) the SMGW accepts")
    p.add_argument("--port", type=int, default=1080)
    p.add_argument("--host", default="127.0.0.1")
    c = sub.add_parser("cls")
    c.add_argument("url")
    c.add_argument("--trust", help="the manager's server certificate (PEM) to verify; unverified without")
    c.add_argument("--method", default="GET")
    c.add_argument("--body", help="JSON body")
    a = ap.parse_args(argv)
    sim = SmgwSim(a.folder)
    if a.cmd == "init":
        print("SMGW CA: %s\nSMGW certificate: %s" % (sim.ca_path, sim.cert_path))
    elif a.cmd == "proxy":
        with open(a.trust) as f:
            sim.trust(f.read())

        async def run():
            port = await sim.start_proxy(a.host, a.port)
            print("SMGW proxy (TLS + SOCKS5/HTTP CONNECT) on %s:%d" % (a.host, port), flush=True)
            await asyncio.Event().wait()
        asyncio.run(run())
    elif a.cmd == "cls":
        if a.trust:
            with open(a.trust) as f:
                sim.trust(f.read())
        status, doc = sim.cls_request(a.url, a.method, json.loads(a.body) if a.body else None)
        print(status, json.dumps(doc, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
