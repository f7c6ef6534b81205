"""Certificate store on the data folder (SPEC §6, seed 004 "certificati").

Layout under ``<data>/certs/`` (mode 0700): ``index.json`` (the authoritative list of entries, with its previous
copy ``index.json.prev``), ``<id>.crt`` (PEM certificate, followed by its chain if one was imported) and, for
entries that carry one, ``<id>.key`` (PEM private key, PKCS#8, unencrypted, mode 0600). Every file is written atomically (temp, fsync, rename, fsync dir); the index is written
last, so a crash leaves either the old or the new entry, never a half one. Files not named by the index (such as
leftovers of an interrupted import) are removed on open.

Uses of an entry:
- ``server``: a certificate + key the manager presents as a TLS server (OCPP wss, HTTPS). On first start the
  manager generates its own self-signed pair, one RSA and one ECDSA (the OCPP 1.6 security white paper requires
  cipher suites for both), ids ``self-rsa`` and ``self-ec``. An imported server certificate replaces the
  self-signed one of the same key type.
- ``ca``: a certificate the manager trusts to verify peers (backends, wallboxes with profile 3, the SMGW). Any
  certificate may be trusted, also a self-signed leaf (the seed: "the server's own certificate can be stored as a
  CA certificate").
- ``client``: a certificate + key the manager presents as a TLS client (mutual TLS towards a backend or the SMGW).

Private keys never leave this module except as a file path handed to ``ssl`` (``key_path``); nothing returns
their content.
"""

import datetime
import errno
import ipaddress
import json
import os
import re
import socket
import threading
import time

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, ed448, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chargemanager.adapters.store import atomic_write_bytes, read_json

USES = ("server", "ca", "client")
SELF_IDS = ("self-rsa", "self-ec")
MAX_PEM_BYTES = 64 * 1024
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224
SELF_VALID_DAYS = 3650
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_PEM_BLOCK_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)


class CertError(ValueError):
    """A certificate or key the manager refuses; the message says what is wrong, for the admin."""


def _atomic_write(path, data, mode=0o644):
    # Certificates and keys are replaced whole; no `.prev` copy (an old key must not linger on the partition).
    atomic_write_bytes(path, data, mode=mode, keep_previous=False)


def _to_bytes(pem):
    if isinstance(pem, str):
        pem = pem.encode("utf-8")
    if not isinstance(pem, (bytes, bytearray)):
        raise CertError("PEM text expected")
    if len(pem) > MAX_PEM_BYTES:
        raise CertError("PEM text too large (%d bytes, at most %d)" % (len(pem), MAX_PEM_BYTES))
    return bytes(pem)


def split_pem(pem):
    """Split PEM text into (certificate blocks, private key blocks) as bytes; other blocks are refused."""
    data = _to_bytes(pem)
    certs, keys = [], []
    for m in _PEM_BLOCK_RE.finditer(data):
        label = m.group(1).decode("ascii")
        block = m.group(0)
        if not block.endswith(b"\n"):
            block += b"\n"
        if label in ("CERTIFICATE", "TRUSTED CERTIFICATE"):
            certs.append(block)
        elif label.endswith("PRIVATE KEY"):
            keys.append(block)
        elif label == "CERTIFICATE REQUEST":
            raise CertError("this is a certificate signing request (CSR), not a certificate: "
                            "have it signed by a CA first")
        else:
            raise CertError("unexpected PEM block '%s'" % label)
    if not certs and not keys:
        if b"-----BEGIN" in data:
            raise CertError("broken PEM: a BEGIN line without a matching END line")
        raise CertError("not PEM text (expected -----BEGIN CERTIFICATE-----)")
    return certs, keys


def load_certificate(block):
    try:
        return x509.load_pem_x509_certificate(block)
    except ValueError as e:
        raise CertError("broken PEM certificate: %s" % e) from None


def load_private_key(block, passphrase=None):
    pw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
    try:
        return serialization.load_pem_private_key(block, password=pw or None)
    except TypeError:
        if not pw:
            raise CertError("the private key is encrypted: give its passphrase") from None
        raise CertError("the private key is not encrypted: leave the passphrase empty") from None
    except ValueError as e:
        if pw:
            raise CertError("cannot read the private key (wrong passphrase or broken PEM)") from None
        raise CertError("broken PEM private key: %s" % e) from None
    except UnsupportedAlgorithm as e:
        raise CertError("unsupported private key type: %s" % e) from None


def _public_bytes(key):
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_type(public_key):
    """'rsa', 'ec' or another short name, for choosing the server certificate slot."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec"
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return "eddsa"
    return "other"


def _check_strength(public_key, what):
    # OCPP 1.6 security white paper A00.FR.501-503: at least 112-bit security.
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < MIN_RSA_BITS:
        raise CertError("%s: RSA key of %d bits is too weak (at least %d)" % (what, public_key.key_size, MIN_RSA_BITS))
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size < MIN_EC_BITS:
        raise CertError("%s: EC key of %d bits is too weak (at least %d)" % (what, public_key.curve.key_size,
                                                                               MIN_EC_BITS))


def _fmt_time(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_dates(cert, now_s, what="certificate"):
    now = datetime.datetime.fromtimestamp(now_s, datetime.timezone.utc)
    if now < cert.not_valid_before_utc:
        raise CertError("%s is not yet valid (valid from %s, the manager's clock says %s)"
                        % (what, _fmt_time(cert.not_valid_before_utc), _fmt_time(now)))
    if now > cert.not_valid_after_utc:
        raise CertError("%s has expired (valid until %s, the manager's clock says %s)"
                        % (what, _fmt_time(cert.not_valid_after_utc), _fmt_time(now)))


def fingerprint_sha256(cert):
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


_NAME_OVERRIDES = {NameOID.EMAIL_ADDRESS: "emailAddress"}


def name_text(name):
    """An X.509 name as RFC 4514 text, Unicode kept (umlauts stay umlauts)."""
    return name.rfc4514_string(_NAME_OVERRIDES)


def describe(cert):
    """Metadata of a certificate for lists: never anything secret."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(v) for v in san.get_values_for_type(x509.DNSName)] + \
               [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        sans = []
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    pub = cert.public_key()
    return {
        "subject": name_text(cert.subject),
        "issuer": name_text(cert.issuer),
        "serial": format(cert.serial_number, "X"),
        "not_before": _fmt_time(cert.not_valid_before_utc),
        "not_after": _fmt_time(cert.not_valid_after_utc),
        "fingerprint_sha256": fingerprint_sha256(cert),
        "key_type": key_type(pub),
        "key_bits": getattr(pub, "key_size", None) or getattr(getattr(pub, "curve", None), "key_size", None),
        "subject_alt_names": sans,
        "is_ca": is_ca,
        "self_signed": cert.issuer == cert.subject,
    }


def common_name(cert):
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return attrs[0].value if attrs else ""


def issued_by(cert, issuer):
    """True when ``issuer``'s key signed ``cert`` (names and signature checked)."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    except Exception:  # cryptography raises InvalidSignature, which is not a ValueError
        return False


def validate_pair(cert_pem, key_pem=None, passphrase=None, now_s=None, need_key=True):
    """Parse and check a certificate (with optional chain) and its key.

    Returns (leaf certificate, chain certificates, private key or None). Refuses with CertError when the PEM is
    broken, the key does not match the certificate, the certificate is expired or not yet valid, the key is too
    weak, or the chain given with it does not link up."""
    if now_s is None:
        now_s = time.time()
    certs, keys = split_pem(cert_pem)
    if key_pem is not None and key_pem != "":
        more_certs, more_keys = split_pem(key_pem)
        certs += more_certs
        keys += more_keys
    if not certs:
        raise CertError("no certificate found (expected -----BEGIN CERTIFICATE-----)")
    if len(keys) > 1:
        raise CertError("more than one private key given")
    if need_key and not keys:
        raise CertError("the private key is missing (expected -----BEGIN PRIVATE KEY----- or "
                        "-----BEGIN RSA PRIVATE KEY-----)")
    parsed = [load_certificate(b) for b in certs]
    key = load_private_key(keys[0], passphrase) if keys else None
    leaf = parsed[0]
    if key is not None:
        # The leaf is the certificate whose public key matches; people paste chains in either order.
        want = _public_bytes(key.public_key())
        match = [c for c in parsed if _public_bytes(c.public_key()) == want]
        if not match:
            raise CertError("the private key does not match the certificate (%s)" % name_text(leaf.subject))
        leaf = match[0]
        parsed.remove(leaf)
        parsed.insert(0, leaf)
    _check_strength(leaf.public_key(), "certificate")
    check_dates(leaf, now_s)
    if leaf.issuer == leaf.subject and not issued_by(leaf, leaf):
        # Made with the seed's openssl config unchanged for the CA and the certificate: no verifier accepts it.
        raise CertError("the certificate names itself as its issuer (%s) but was signed by another key: the CA and "
                        "this certificate were made with the same subject; give the certificate another CN"
                        % name_text(leaf.subject))
    chain = parsed[1:]
    cur = leaf
    for c in chain:
        if not issued_by(cur, c):
            raise CertError("the chain does not link up: %s was not issued by %s"
                            % (name_text(cur.subject), name_text(c.subject)))
        check_dates(c, now_s, "chain certificate %s" % name_text(c.subject))
        cur = c
    return leaf, chain, key


def _local_names_and_addresses():
    host = socket.gethostname() or "chargemanager"
    names = [host, "localhost"]
    fqdn = socket.getfqdn()
    if fqdn and fqdn not in names:
        names.append(fqdn)
    addrs = {"127.0.0.1", "::1"}
    try:
        for info in socket.getaddrinfo(host, None):
            addrs.add(info[4][0].split("%")[0])
    except OSError:
        pass
    return names, sorted(addrs)


def make_self_signed(kind, now_s, names=None, addresses=None, days=SELF_VALID_DAYS):
    """Generate (certificate, key) for the manager itself: ``kind`` 'rsa' (2048 bit, the white paper's minimum and
    what every wallbox TLS stack handles) or 'ec' (P-256).

    CN = host name, SANs = host names and addresses. not_before lies a day back so a box whose clock was a little
    behind at first start still accepts its own certificate."""
    if names is None or addresses is None:
        n, a = _local_names_and_addresses()
        names = n if names is None else names
        addresses = a if addresses is None else addresses
    key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.fromtimestamp(now_s, datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Charging Manager")])
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # clientAuth too: the same pair may be presented to the Smart Meter Gateway as our client certificate.
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CertStore:
    """The certificate folder of one data directory. Thread-safe (the HTTP threads and the OCPP thread share it)."""

    def __init__(self, data_dir, now_fn=time.time, names=None, addresses=None):
        self.folder = os.path.join(data_dir, "certs")
        self._now_fn = now_fn
        self._names = names
        self._addresses = addresses
        self._lock = threading.RLock()
        self._listeners = []
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        os.chmod(self.folder, 0o700)
        self._index = self._read_index()
        self._cleanup()
        self.ensure_self_signed()

    # -- persistence -------------------------------------------------------------------------------------------
    def _index_path(self):
        return os.path.join(self.folder, "index.json")

    def _read_index(self):
        # read_json falls back to index.json.prev; a box with neither starts over with a new self-signed pair.
        doc = read_json(self._index_path())
        entries = doc.get("entries") if isinstance(doc, dict) else None
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items()
                if _ID_RE.match(k) and isinstance(v, dict) and v.get("use") in USES}

    def _write_index(self):
        doc = {"version": 1, "entries": self._index}
        atomic_write_bytes(self._index_path(), json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"),
                           mode=0o600, keep_previous=True)

    def _cleanup(self):
        keep = {"index.json", "index.json.prev"}
        for cid, e in self._index.items():
            keep.add(cid + ".crt")
            if e.get("has_key"):
                keep.add(cid + ".key")
        for name in os.listdir(self.folder):
            if name not in keep:
                try:
                    os.unlink(os.path.join(self.folder, name))
                except OSError:
                    pass
        # An entry whose files are gone (manual tampering) is dropped rather than handed to ssl.
        gone = [cid for cid, e in self._index.items()
                if not os.path.exists(self.cert_path(cid)) or (e.get("has_key") and not os.path.exists(self.key_path(cid)))]
        for cid in gone:
            del self._index[cid]
        if gone:
            self._write_index()

    def cert_path(self, cid):
        return os.path.join(self.folder, cid + ".crt")

    def key_path(self, cid):
        """Path of the entry's private key file, for ``ssl.SSLContext.load_cert_chain`` only."""
        return os.path.join(self.folder, cid + ".key")

    def _save(self, cid, use, name, cert_pem, key_pem, builtin=False):
        if key_pem is not None:
            _atomic_write(self.key_path(cid), key_pem, 0o600)
        _atomic_write(self.cert_path(cid), cert_pem, 0o644)
        self._index[cid] = {"use": use, "name": name, "has_key": key_pem is not None, "builtin": builtin,
                            "added_s": int(self._now_fn())}
        self._write_index()

    # -- change notification (TLS contexts are rebuilt when the store changes) ----------------------------------
    def on_change(self, fn):
        self._listeners.append(fn)

    def _changed(self):
        for fn in list(self._listeners):
            fn()

    # -- operations --------------------------------------------------------------------------------------------
    def ensure_self_signed(self):
        """Generate the manager's own self-signed RSA and ECDSA server certificates when missing."""
        with self._lock:
            made = False
            for cid, kind in (("self-rsa", "rsa"), ("self-ec", "ec")):
                if cid in self._index:
                    continue
                cert, key = make_self_signed(kind, self._now_fn(), self._names, self._addresses)
                self._save(cid, "server", "self-signed (%s)" % kind.upper(), _pem_cert(cert), _pem_key(key),
                           builtin=True)
                made = True
            if made:
                self._changed()

    def import_cert(self, use, cert_pem, key_pem=None, passphrase=None, name=""):
        """Import a certificate for ``use``; returns its list entry. Validation happens before anything is written."""
        if use not in USES:
            raise CertError("unknown use '%s' (one of: %s)" % (use, ", ".join(USES)))
        if name is None:
            name = ""
        if not isinstance(name, str) or len(name) > 100:
            raise CertError("name: text of at most 100 characters expected")
        now_s = self._now_fn()
        if use == "ca":
            certs, keys = split_pem(cert_pem)
            if keys or key_pem:
                raise CertError("a CA certificate is imported without a private key: remove the key")
            if not certs:
                raise CertError("no certificate found (expected -----BEGIN CERTIFICATE-----)")
            parsed = [load_certificate(b) for b in certs]
            for c in parsed:
                check_dates(c, now_s, "CA certificate %s" % name_text(c.subject))
            added = []
            with self._lock:
                for c in parsed:
                    cid = "ca-" + c.fingerprint(hashes.SHA256()).hex()[:16]
                    self._save(cid, "ca", name, _pem_cert(c), None)
                    added.append(cid)
                self._changed()
                return [self._entry(cid) for cid in added]
        leaf, chain, key = validate_pair(cert_pem, key_pem, passphrase, now_s, need_key=True)
        cid = use + "-" + leaf.fingerprint(hashes.SHA256()).hex()[:16]
        pem = _pem_cert(leaf) + b"".join(_pem_cert(c) for c in chain)
        with self._lock:
            self._save(cid, use, name, pem, _pem_key(key))
            self._changed()
            return [self._entry(cid)]

    def delete(self, cid):
        with self._lock:
            if cid not in self._index:
                raise KeyError(cid)
            if self._index[cid].get("builtin"):
                raise CertError("the manager's own self-signed certificate cannot be deleted; "
                                "import an own server certificate instead, it takes precedence")
            del self._index[cid]
            self._write_index()
            for p in (self.cert_path(cid), self.key_path(cid)):
                try:
                    os.unlink(p)
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        raise
            self._changed()

    def _entry(self, cid):
        e = self._index[cid]
        cert = self.certificate(cid)
        d = describe(cert)
        now_s = self._now_fn()
        try:
            check_dates(cert, now_s)
            d["valid_now"] = True
        except CertError:
            d["valid_now"] = False
        d.update({"id": cid, "use": e["use"], "name": e.get("name", ""), "has_key": bool(e.get("has_key")),
                  "builtin": bool(e.get("builtin"))})
        return d

    def list(self):
        """Metadata of every entry (subject, issuer, validity, fingerprint, use); never key material."""
        with self._lock:
            return [self._entry(cid) for cid in sorted(self._index)]

    def get(self, cid):
        with self._lock:
            if cid not in self._index:
                raise KeyError(cid)
            return self._entry(cid)

    def certificate(self, cid):
        with open(self.cert_path(cid), "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    def certificate_pem(self, cid):
        """The certificate (and chain) as PEM text: public, fine to show or download."""
        with open(self.cert_path(cid), "rb") as f:
            return f.read().decode("ascii")

    def ids(self, use):
        with self._lock:
            return sorted(cid for cid, e in self._index.items() if e["use"] == use)

    def server_pairs(self):
        """[(cert_path, key_path)] to present as a server: per key type the newest imported pair, else the
        self-signed one."""
        with self._lock:
            best = {}
            for cid, e in self._index.items():
                if e["use"] != "server":
                    continue
                kt = key_type(self.certificate(cid).public_key())
                rank = (0 if e.get("builtin") else 1, e.get("added_s", 0), cid)
                if kt not in best or rank > best[kt][0]:
                    best[kt] = (rank, cid)
            return [(self.cert_path(cid), self.key_path(cid)) for _, (_, cid) in sorted(best.items())]

    def client_pair(self, cid):
        """(cert_path, key_path) of a client (or server) entry with a key, for mutual TLS."""
        with self._lock:
            e = self._index.get(cid)
            if e is None:
                raise KeyError(cid)
            if not e.get("has_key"):
                raise CertError("certificate %s has no private key and cannot be presented" % cid)
            return self.cert_path(cid), self.key_path(cid)

    def ca_pem(self, ids=None):
        """Concatenated PEM of the trusted CA entries (all, or those named in ``ids``)."""
        with self._lock:
            wanted = self.ids("ca") if ids is None else list(ids)
            out = []
            for cid in wanted:
                e = self._index.get(cid)
                if e is None:
                    raise KeyError(cid)
                out.append(self.certificate_pem(cid))
            return "".join(out)


# --- HTTP commands (the config page shows them) --------------------------------------------------------------------

def register_cert_commands(commands, store):
    """get_certs, get_cert_pem, upload_cert, delete_cert for the admin; none callable through the SMGW channel
    without function 4."""
    from chargemanager.adapters.http_api import ApiError

    def get_certs(req):
        return 200, {"certs": store.list()}

    def upload_cert(req):
        doc = req.json_body()
        if not isinstance(doc, dict):
            raise ApiError(400, "body must be a JSON object {\"use\": \"server|ca|client\", \"cert\": \"PEM\", "
                                "\"key\": \"PEM\", \"passphrase\": \"...\", \"name\": \"...\"}")
        use = doc.get("use")
        cert = doc.get("cert")
        if use not in USES:
            raise ApiError(400, "'use' must be one of: %s" % ", ".join(USES))
        if not isinstance(cert, str) or not cert.strip():
            raise ApiError(400, "'cert' must be the certificate as PEM text")
        key = doc.get("key")
        if key is not None and not isinstance(key, str):
            raise ApiError(400, "'key' must be PEM text")
        passphrase = doc.get("passphrase")
        if passphrase is not None and not isinstance(passphrase, str):
            raise ApiError(400, "'passphrase' must be text")
        try:
            added = store.import_cert(use, cert, key, passphrase, doc.get("name", ""))
        except CertError as exc:
            raise ApiError(400, str(exc))
        except OSError as exc:
            raise ApiError(500, "cannot store the certificate on the data partition (%s); nothing was changed"
                           % exc.strerror)
        return 200, {"ok": True, "added": added}

    def delete_cert(req):
        cid = req.param("id", required=True)
        try:
            store.delete(cid)
        except KeyError:
            raise ApiError(404, "no certificate with id '%s'" % cid)
        except CertError as exc:
            raise ApiError(400, str(exc))
        return 200, {"ok": True, "deleted": cid}

    def get_cert_pem(req):
        cid = req.param("id", required=True)
        try:
            entry = store.get(cid)
        except KeyError:
            raise ApiError(404, "no certificate with id '%s'" % cid)
        return 200, {"id": cid, "subject": entry["subject"], "pem": store.certificate_pem(cid)}

    commands.register("get_certs", get_certs)
    commands.register("get_cert_pem", get_cert_pem)
    commands.register("upload_cert", upload_cert, methods=("POST",))
    commands.register("delete_cert", delete_cert, methods=("GET", "POST"))
