"""The config page's login, session and CSRF rules over plain HTTP against a real manager (no browser needed)."""

import gzip
import io
import json
import re
import tarfile

from httpclient import Browserless, call


def test_first_run_page_sets_the_password_and_logs_in(fresh_manager):
    b = Browserless(fresh_manager.url)
    status, headers, _ = b.request("/")
    assert status == 303 and headers["Location"].endswith("/first-run")
    token = b.form_token("/first-run")
    status, _, body = b.request("/first-run", {"csrf": token, "password": "short", "password2": "short"})
    assert status == 400 and b"at least 8 characters" in body
    status, _, body = b.request("/first-run", {"csrf": token, "password": "long enough", "password2": "different"})
    assert status == 400 and b"differ" in body
    status, headers, _ = b.request("/first-run", {"csrf": token, "password": "long enough", "password2": "long enough"})
    assert status == 303 and headers["Location"].endswith("/")
    assert b.page_token()  # logged in at once
    status, _, _ = call(fresh_manager.url + "/cnf?cmd=get_status", password="long enough")
    assert status == 200  # the same password as the API
    status, headers, _ = Browserless(fresh_manager.url).request("/first-run")  # once set, never again
    assert status == 303 and headers["Location"].endswith("/login")


def test_session_cookie_is_httponly_and_samesite_strict(manager):
    b = Browserless(manager.url)
    status, headers, body = b.login("1234abcd")
    assert status == 303
    cookies = [v for k, v in headers.items() if k.lower() == "set-cookie"]
    session = [c for c in cookies if c.startswith("cm_session=")]
    assert session and "HttpOnly" in session[0] and "SameSite=strict" in session[0]
    assert "Path=/" in session[0]


def test_wrong_password_and_missing_login_token_are_refused(manager):
    b = Browserless(manager.url)
    status, _, body = b.login("wrong password")
    assert status == 401 and b"Wrong password" in body
    status, _, body = b.request("/login", {"password": "1234abcd"})  # no double-submit token
    assert status == 403 and b"expired" in body
    status, _, body = Browserless(manager.url).request("/")
    assert status == 303


def test_every_ui_command_needs_the_session_and_its_csrf_token(manager):
    b = Browserless(manager.url)
    b.login("1234abcd")
    token = b.page_token()
    status, body = b.cnf("cmd=get_status", token)
    assert status == 200 and body["admin_password_set"] is True
    status, body = b.cnf("cmd=set_cm_vars&name=AVAIL&val=50", None)
    assert status == 403 and "CSRF" in body["error"]
    status, body = b.cnf("cmd=set_cm_vars&name=AVAIL&val=50", "forged" + token)
    assert status == 403
    status, body = b.cnf("cmd=set_cm_vars", token, {"vars": [{"name": "AVAIL", "expr": 50}]})
    assert status == 200
    # A page of another site cannot post even with a token it somehow learned.
    status, _, raw = b.request("/ui/cnf?cmd=set_cm_vars&name=AVAIL&val=1", b"", {"X-CSRF-Token": token,
                                                                                 "Origin": "http://evil.example"})
    assert status == 403
    status, _, body = call(manager.url + "/cnf?cmd=get_cm_vars")
    assert body["vars"][0]["val"] == 50
    # The JSON API never takes the session cookie: Basic only.
    status, _, raw = b.request("/cnf?cmd=get_cm_vars")
    assert status == 401
    # Without a session, /ui/cnf says so.
    status, body = Browserless(manager.url).cnf("cmd=get_status", token)
    assert status == 401 and "/login" in body["error"]


def test_config_errors_come_back_per_field_and_change_nothing(manager):
    b = Browserless(manager.url)
    b.login("1234abcd")
    token = b.page_token()
    _, before = b.cnf("cmd=get_config", token)
    bad = json.loads(json.dumps(before["config"]))
    bad["site"]["reserve_w"] = "lots"
    bad["evses"] = [{"dev_id": "E1", "type": "ocpp16", "address": "", "min_current_ma": 6000}]
    status, body = b.cnf("cmd=set_config", token, {"config": bad})
    assert status == 400
    fields = dict((f["field"], f["error"]) for f in body["fields"])
    assert "site.reserve_w" in fields
    _, after = b.cnf("cmd=get_config", token)
    assert after == before


def test_logout_ends_the_session(manager):
    b = Browserless(manager.url)
    b.login("1234abcd")
    token = b.page_token()
    status, _, _ = b.request("/logout", {"csrf": "wrong"})
    assert b.cnf("cmd=get_status", token)[0] == 200  # a forged logout does nothing
    status, headers, _ = b.request("/logout", {"csrf": token})
    assert status == 303
    assert b.cnf("cmd=get_status", token)[0] == 401


def test_changing_the_password_logs_out_other_browsers(manager):
    first, second = Browserless(manager.url), Browserless(manager.url)
    first.login("1234abcd")
    second.login("1234abcd")
    t1, t2 = first.page_token(), second.page_token()
    status, _ = first.cnf("cmd=set_password", t1, {"password": "new secret 1"})
    assert status == 200
    assert first.cnf("cmd=get_status", t1)[0] == 200
    assert second.cnf("cmd=get_status", t2)[0] == 401
    status, _, _ = call(manager.url + "/cnf?cmd=get_status", password="new secret 1")
    assert status == 200


def test_diagnostics_bundle_has_config_status_and_log_but_no_secret(manager):
    status, _, body = call(manager.url + "/cnf?cmd=get_config")
    doc = body["config"]
    doc["ocpp"]["server"]["password"] = "wallbox-secret-123456"
    doc["evses"] = [{"dev_id": "E1", "type": "ocpp16", "address": "BOX1",
                     "gateway": {"url": "ws://127.0.0.1:9/x", "password": "backend-secret-7890"}}]
    status, _, body = call(manager.url + "/cnf?cmd=set_config", method="POST", body={"config": doc})
    assert status == 200, body
    b = Browserless(manager.url)
    assert b.request("/ui/diagnostics.tar.gz")[0] == 303  # not without a session
    b.login("1234abcd")
    status, headers, raw = b.request("/ui/diagnostics.tar.gz")
    assert status == 200 and headers["Content-Type"] == "application/gzip"
    assert "attachment" in headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        files = dict((m.name.split("/", 1)[1], tar.extractfile(m).read().decode()) for m in tar.getmembers())
    assert set(files) >= {"config.json", "status.json", "variables.json", "log.txt", "version.txt"}
    config = json.loads(files["config.json"])
    assert config["evses"][0]["address"] == "BOX1"
    assert config["ocpp"]["server"]["password"] == "********"
    everything = "".join(files.values())
    assert "wallbox-secret" not in everything and "backend-secret" not in everything
    assert "http listening" in files["log.txt"]
    assert "admin_password_set" in json.loads(files["status.json"])


def test_history_and_schema_commands_on_the_api(manager):
    status, _, body = call(manager.url + "/cnf?cmd=get_history")
    assert status == 200 and body["series"] == ["time_s", "site_w", "ev_w"] and body["interval_s"] == 10
    status, _, body = call(manager.url + "/cnf?cmd=get_history&since=abc")
    assert status == 400 and "since" in body["error"]
    status, _, body = call(manager.url + "/cnf?cmd=get_config_schema")
    keys = [f["key"] for f in body["schema"]["fields"]]
    assert status == 200 and "site" in keys and "evses" in keys
    evse = [f for f in body["schema"]["fields"] if f["key"] == "evses"][0]["type"]["item"]
    address = [f for f in evse["fields"] if f["key"] == "address"][0]
    assert address["type"]["t"] == "string" and "ChargeBox" in address["doc"]


def test_static_files_are_served_without_login_and_pages_forbid_framing(manager):
    b = Browserless(manager.url)
    for name in ("app.js", "app.css"):
        status, headers, body = b.request("/static/" + name)
        assert status == 200 and len(body) > 1000 and headers["X-Content-Type-Options"] == "nosniff"
    assert b.request("/static/../views/page.tpl")[0] in (403, 404)
    status, headers, _ = b.request("/login")
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_page_weight(manager, capsys):
    """Everything the dashboard loads: the page, one stylesheet, one script (no images, fonts, third parties)."""
    b = Browserless(manager.url)
    b.login("1234abcd")
    status, _, page = b.request("/")
    assert status == 200
    assets = re.findall(rb'(?:href|src)="(/[^"]+)"', page)
    assert sorted(assets) == [b"/static/app.css", b"/static/app.js"]
    sizes = {"page": len(page)}
    for path in assets:
        status, _, body = b.request(path.decode())
        assert status == 200
        sizes[path.decode().rsplit("/", 1)[1]] = len(body)
    total = sum(sizes.values())
    wire = sizes["page"]
    for path in assets:  # what a browser transfers: the script and stylesheet gzip-compressed
        status, headers, body = b.request(path.decode(), headers={"Accept-Encoding": "gzip"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert len(gzip.decompress(body)) == sizes[path.decode().rsplit("/", 1)[1]]
        wire += len(body)
        status, _, _ = b.request(path.decode(), headers={"Accept-Encoding": "gzip", "If-None-Match": headers["ETag"]})
        assert status == 304
    with capsys.disabled():
        print("\nconfig page weight: %s = %d bytes; %d bytes on the wire (gzip)"
              % (", ".join("%s %d" % kv for kv in sizes.items()), total, wire))
    assert total < 48 * 1024 and wire < 16 * 1024, sizes
