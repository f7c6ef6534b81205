"""Admin authentication: password hashing with a slow KDF, constant-time comparison, and a per-client slow-down
after failed logins (SPEC §3).

There is no default password: until one is set, every authenticated request is refused with a message saying how
to set it. Failures are counted per client address; after FREE_FAILURES failures a client must wait an exponentially
growing time (capped at MAX_LOCKOUT_S) before its next attempt is even checked, and gets 429 meanwhile. The lock-out
is answered at once, so a guessing client cannot tie up server threads.
"""

import base64
import hashlib
import hmac
import os
import threading

from chargemanager.shim.clock import monotonic_ms

ADMIN_USER = "admin"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
FREE_FAILURES = 3
BASE_LOCKOUT_S = 1
MAX_LOCKOUT_S = 300
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
_MAX_TRACKED_CLIENTS = 4096
VERIFIED_TTL_MS = 300000
_MAX_VERIFIED = 64


class PasswordError(ValueError):
    pass


def check_password_policy(password):
    if not isinstance(password, str):
        raise PasswordError("password must be a string")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError("password must be at least %d characters" % MIN_PASSWORD_LENGTH)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError("password must be at most %d characters" % MAX_PASSWORD_LENGTH)
    if any(ord(ch) < 32 for ch in password):
        raise PasswordError("password must not contain control characters")


def hash_password(password, salt=None):
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, maxmem=64 * 1024 * 1024, dklen=32, **_SCRYPT)
    return {"scheme": "scrypt", "salt": salt.hex(), "hash": digest.hex(), **_SCRYPT}


def verify_password(record, password):
    if not record or record.get("scheme") != "scrypt":
        return False
    try:
        salt = bytes.fromhex(record["salt"])
        expected = bytes.fromhex(record["hash"])
        digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=record["n"], r=record["r"],
                                p=record["p"], maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (KeyError, ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


def parse_basic(header):
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if ":" not in decoded:
        return None
    user, password = decoded.split(":", 1)
    return user, password


class AdminAuth:
    """Checks admin credentials against the stored hash; thread-safe."""

    def __init__(self, store, clock_ms=monotonic_ms):
        self._store = store
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._record = store.load_auth().get("admin")
        self._failures = {}  # client -> (count, locked_until_ms)
        # Scripts send Basic credentials with every request; running scrypt (~16 MB, ~100+ ms) each time would
        # keep a core busy and grow every worker thread's heap. A header verified in the last VERIFIED_TTL_MS is
        # remembered by its HMAC under a key that lives only in this process, and forgotten on a password change.
        self._cache_key = os.urandom(32)
        self._verified = {}  # HMAC of the Authorization header -> expiry (monotonic ms)
        self._kdf_slot = threading.Semaphore(1)  # one scrypt at a time bounds memory and CPU under guessing

    @property
    def password_set(self):
        return bool(self._record)

    def set_password(self, password):
        check_password_policy(password)
        record = hash_password(password)
        with self._lock:
            self._store.save_auth({"admin": record})
            self._record = record
            self._failures.clear()
            self._verified.clear()

    def retry_after_s(self, client):
        """Seconds the client must still wait before its next attempt is checked (0: may try now)."""
        with self._lock:
            entry = self._failures.get(client)
        if entry is None:
            return 0
        remaining_ms = entry[1] - self._clock_ms()
        return max(0, (remaining_ms + 999) // 1000)

    def check(self, client, header):
        """True if the header carries the admin credentials; records failures per client."""
        creds = parse_basic(header)
        ok = False
        if creds is not None and self._record:
            tag = hmac.new(self._cache_key, header.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
            now_ms = self._clock_ms()
            with self._lock:
                record = self._record
                ok = self._verified.get(tag, 0) > now_ms
            if not ok:
                user, password = creds
                # Always run the KDF so a wrong user name costs as much time as a wrong password.
                with self._kdf_slot:
                    ok = verify_password(record, password)
                ok = ok and hmac.compare_digest(user.encode("utf-8"), ADMIN_USER.encode("utf-8"))
                if ok:
                    with self._lock:
                        if self._record is record:  # not if the password changed meanwhile
                            if len(self._verified) >= _MAX_VERIFIED:
                                self._verified.clear()
                            self._verified[tag] = now_ms + VERIFIED_TTL_MS
        with self._lock:
            if ok:
                self._failures.pop(client, None)
            elif creds is not None:
                count = self._failures.get(client, (0, 0))[0] + 1
                lockout_s = 0
                if count > FREE_FAILURES:
                    lockout_s = min(MAX_LOCKOUT_S, BASE_LOCKOUT_S * 2 ** (count - FREE_FAILURES - 1))
                if len(self._failures) >= _MAX_TRACKED_CLIENTS and client not in self._failures:
                    self._failures.pop(next(iter(self._failures)))
                self._failures[client] = (count, self._clock_ms() + lockout_s * 1000)
        return ok
