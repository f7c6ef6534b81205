"""Admin credentials: verified headers are remembered briefly (no scrypt per request), forgotten on a password
change; failures still count."""

import base64

from chargemanager.adapters import auth as auth_module
from chargemanager.adapters.auth import AdminAuth
from chargemanager.adapters.store import DataStore


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def test_verified_header_is_cached_and_forgotten_on_change(tmp_path, monkeypatch):
    now = [1000]
    auth = AdminAuth(DataStore(str(tmp_path)), clock_ms=lambda: now[0])
    auth.set_password("1234abcd")
    calls = []
    real = auth_module.verify_password
    monkeypatch.setattr(auth_module, "verify_password", lambda r, p: calls.append(p) or real(r, p))
    good = basic("admin", "1234abcd")
    assert auth.check("c", good) and auth.check("c", good)
    assert calls == ["1234abcd"]  # the second request did not run the KDF
    assert not auth.check("c", basic("admin", "wrong"))
    assert not auth.check("c", basic("root", "1234abcd"))  # a cached password under another user is no pass
    now[0] += auth_module.VERIFIED_TTL_MS + 1
    assert auth.check("c", good) and len(calls) == 4  # expired: verified again
    auth.set_password("new-password")
    assert not auth.check("c", good)  # the old password's cached header is gone
    assert auth.check("c", basic("admin", "new-password"))
