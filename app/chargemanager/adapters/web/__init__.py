"""The config page: a small web interface served by the appliance itself (Bottle templates and static files, no
external resource).

Security model:
- The same admin password as the API. A browser logs in once through a form and then carries a session cookie
  (random 256-bit id, HttpOnly, SameSite=Strict, Secure over TLS; idle timeout; kept in memory only, so a restart
  logs everybody out). The JSON API `/cnf` stays HTTP Basic only: a session cookie is never accepted there.
- Every request that can change something carries the session's CSRF token: forms in a hidden field, the page's
  JavaScript in the `X-CSRF-Token` header of every `/ui/cnf` call (reads included). The login and first-run forms,
  which come before a session exists, use a double-submit token (cookie + field). A POST whose `Origin` names
  another host is refused as well.
- Failed logins count against the same per-client slow-down as the API.
- Until an admin password exists, every page leads to the first-run form, which sets it.

The page calls the same command table as `/cnf` through `/ui/cnf`, so every command a part registers is usable from
the page at once, with the same validation and the same errors.
"""

import base64
import gzip
import hmac
import io
import json
import logging
import os
import secrets
import tarfile
import threading
import time

import bottle

from chargemanager import __version__
from chargemanager.adapters.auth import ADMIN_USER, PasswordError
from chargemanager.adapters.http_api import ApiError, ApiRequest, redact
from chargemanager.adapters.update_spool import MAX_BUNDLE_BYTES as MAX_UPDATE_BYTES, UpdateSpool
from chargemanager.adapters.web.formdesc import form_description
from chargemanager.adapters.web.history import LogRing, PowerHistory
from chargemanager.adapters.variable_service import json_number
from chargemanager.core.config import CONFIG_SCHEMA
from chargemanager.core.formula import FormulaError, compile_formula
from chargemanager.shim.clock import monotonic_ms, wall_time_s

log = logging.getLogger("web")

HERE = os.path.dirname(os.path.abspath(__file__))
VIEWS = os.path.join(HERE, "views")
STATIC = os.path.join(HERE, "static")

SESSION_COOKIE = "cm_session"
PRELOGIN_COOKIE = "cm_prelogin"
MAX_FORM_BYTES = 8192                     # login and first-run forms: read nothing bigger
SESSION_IDLE_S = 8 * 3600
MAX_SESSIONS = 32

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send `Origin: null`
    "Cache-Control": "no-store",
}


class Session:
    def __init__(self, sid, csrf, now_ms):
        self.sid = sid
        self.csrf = csrf
        self.last_ms = now_ms


class Sessions:
    """Browser sessions in memory; bounded (the oldest is dropped) and idle-limited."""

    def __init__(self, idle_s=SESSION_IDLE_S, max_sessions=MAX_SESSIONS, clock_ms=monotonic_ms):
        self._idle_ms = idle_s * 1000
        self._max = max_sessions
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._by_id = {}

    def create(self):
        now = self._clock_ms()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now)
        with self._lock:
            while len(self._by_id) >= self._max:
                oldest = min(self._by_id.values(), key=lambda s: s.last_ms)
                del self._by_id[oldest.sid]
            self._by_id[session.sid] = session
        return session

    def get(self, sid):
        if not sid:
            return None
        now = self._clock_ms()
        with self._lock:
            session = self._by_id.get(sid)
            if session is None:
                return None
            if now - session.last_ms > self._idle_ms:
                del self._by_id[sid]
                return None
            session.last_ms = now
            return session

    def drop(self, sid):
        with self._lock:
            self._by_id.pop(sid, None)

    def drop_others(self, keep_sid):
        with self._lock:
            for sid in [s for s in self._by_id if s != keep_sid]:
                del self._by_id[sid]


def _same(a, b):
    return bool(a) and bool(b) and hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _basic_header(password):
    return "Basic " + base64.b64encode(("%s:%s" % (ADMIN_USER, password)).encode("utf-8")).decode("ascii")


class WebUI:
    def __init__(self, runtime):
        self.runtime = runtime
        self.sessions = Sessions()
        self.history = PowerHistory()
        self.logs = LogRing()
        self.logs.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._form = form_description(CONFIG_SCHEMA)
        self._gzip_cache = {}
        self._update_lock = threading.Lock()
        self.max_body_bytes = MAX_UPDATE_BYTES + 65536
        self.spool = None  # the hand-off to the root installer (None: a build without the updater)
        self.update_wait_s = 120  # how long an upload's answer waits for the installer's result
        self.wall_s = wall_time_s  # the chart's time axis (a test may replay hours in seconds)
        self._chart_ids = (None, [], [], [])

    # --- wiring into the runtime ----------------------------------------------------------------------------
    def install(self):
        runtime = self.runtime
        logging.getLogger().addHandler(self.logs)
        runtime.extra_routes.append(self.add_routes)
        runtime.tick_hooks.append(self.on_tick)
        runtime.status_providers.setdefault("readings", self.readings_status)
        runtime.status_providers.setdefault("settings", self.settings_status)
        runtime.commands.register("get_history", self.cmd_get_history)
        runtime.commands.register("get_config_schema", self.cmd_get_config_schema)
        if _updater() is not None:
            self.spool = UpdateSpool(runtime.store.folder)
            runtime.status_providers.setdefault("update", self.spool.status)
            runtime.commands.register("get_update", self.cmd_get_update)

    def on_tick(self, now_ms, values):
        """Feed the chart: site power = sum of the grid meters, EV power = sum of the EVSEs' own readings."""
        config = self.runtime.config
        if self._chart_ids[0] is not config:  # the id lists per configuration, not rebuilt every tick
            self._chart_ids = (config,
                               [m["dev_id"] for m in config.get("meters", []) if m.get("role") == "grid"],
                               [e["dev_id"] for e in config.get("evses", [])],
                               [m["dev_id"] for m in config.get("meters", []) if m.get("role") == "evse"])
        _, grid_ids, evse_ids, evse_meter_ids = self._chart_ids
        snapshot = self.runtime.readings.snapshot()
        site_w = _sum_power(snapshot, grid_ids, now_ms)
        ev_w = _sum_power(snapshot, evse_ids, now_ms)
        if ev_w is None:  # boxes that do not report their power: their own meters
            ev_w = _sum_power(snapshot, evse_meter_ids, now_ms)
        self.history.add(self.wall_s(), site_w, ev_w)

    def readings_status(self):
        now = monotonic_ms()
        out = {}
        for dev_id, (quantities, taken_ms, max_age_ms) in sorted(self.runtime.readings.snapshot().items()):
            entry = dict(quantities)
            entry["age_ms"] = now - taken_ms
            entry["stale"] = now - taken_ms > max_age_ms
            out[dev_id] = entry
        return out

    def settings_status(self):
        """The formula settings with their current value (`site.max_power_w` = `55000 * AVAIL / 100` -> 22000), so
        the page shows what a formula means now; evaluated with the last tick's variable values."""
        config = self.runtime.config
        entries = [("site." + key, config["site"].get(key)) for key in ("max_power_w", "max_current_ma")]
        for evse in config.get("evses", []):
            entries += [("%s.%s" % (evse["dev_id"], key), evse.get(key)) for key in ("max_current_ma", "max_power_w")]
        lookup = self.runtime.formula_lookup
        out = {}
        for key, raw in entries:
            if raw is None:
                continue
            entry = {"expr": raw, "source": "formula" if isinstance(raw, str) else "fixed"}
            try:
                entry["value"] = json_number(compile_formula(raw).evaluate(lookup)) if isinstance(raw, str) else raw
            except FormulaError as exc:
                entry["value"] = None
                entry["error"] = str(exc)
            out[key] = entry
        return out

    def cmd_get_history(self, req):
        """Site and EV power, one averaged point per interval, oldest first (`since`: wall-clock s)."""
        since = req.param("since")
        try:
            since_s = float(since) if since else None
        except ValueError:
            raise ApiError(400, "parameter 'since' must be a number (seconds since 1970)")
        return 200, {"interval_s": self.history.interval_s, "now_s": int(self.wall_s()),
                     "series": ["time_s", "site_w", "ev_w"], "points": self.history.points(since_s)}

    def cmd_get_config_schema(self, req):
        return 200, {"schema": self._form}

    # --- routes ---------------------------------------------------------------------------------------------
    def add_routes(self, app):
        app.route("/", "GET", self.page_index)
        app.route("/login", "GET", self.page_login)
        app.route("/login", "POST", self.post_login)
        app.route("/first-run", "GET", self.page_first_run)
        app.route("/first-run", "POST", self.post_first_run)
        app.route("/logout", "POST", self.post_logout)
        app.route("/ui/cnf", ["GET", "POST"], self.ui_cnf)
        app.route("/ui/diagnostics.tar.gz", "GET", self.diagnostics)
        app.route("/ui/update", "POST", self.post_update)
        app.route("/static/<name:path>", "GET", self.static)

    def _headers(self):
        for key, value in SECURITY_HEADERS.items():
            bottle.response.set_header(key, value)

    def _render(self, name, **kw):
        self._headers()
        bottle.response.content_type = "text/html; charset=utf-8"
        kw.setdefault("version", __version__)
        return bottle.template(name, template_lookup=[VIEWS], **kw)

    def _set_cookie(self, name, value, max_age=None):
        secure = bottle.request.environ.get("wsgi.url_scheme") == "https"
        extra = {} if max_age is None else {"max_age": max_age}
        bottle.response.set_cookie(name, value, path="/", httponly=True, samesite="strict", secure=secure, **extra)

    def _session(self):
        return self.sessions.get(bottle.request.get_cookie(SESSION_COOKIE))

    def _client(self):
        return bottle.request.environ.get("REMOTE_ADDR") or "?"  # not remote_addr: it trusts X-Forwarded-For

    def _origin_ok(self):
        """A POST from a page of another site is refused even before its token is looked at."""
        origin = bottle.request.get_header("Origin")
        if not origin or origin == "null":  # old or privacy-minded browsers: the token alone decides
            return True
        host = bottle.request.get_header("Host") or ""
        return origin.split("://", 1)[-1] == host

    def _prelogin_token(self):
        token = bottle.request.get_cookie(PRELOGIN_COOKIE)
        if not token or len(token) > 100:
            token = secrets.token_urlsafe(32)
            self._set_cookie(PRELOGIN_COOKIE, token)
        return token

    def _prelogin_ok(self):
        if bottle.request.content_length > MAX_FORM_BYTES:
            return False
        return self._origin_ok() and _same(bottle.request.forms.get("csrf") or "",
                                           bottle.request.get_cookie(PRELOGIN_COOKIE) or "")

    def _start_session(self):
        session = self.sessions.create()
        self._set_cookie(SESSION_COOKIE, session.sid)
        self._set_cookie(PRELOGIN_COOKIE, "", max_age=0)
        return session

    def page_index(self):
        if not self.runtime.auth.password_set:
            return bottle.redirect("/first-run", 303)
        session = self._session()
        if session is None:
            return bottle.redirect("/login", 303)
        features = self.runtime.commands.names() + (["ui:update"] if self.spool is not None else [])
        return self._render("page", csrf=session.csrf, commands=",".join(features))

    def page_login(self, error=None, status=200):
        if not self.runtime.auth.password_set:
            return bottle.redirect("/first-run", 303)
        bottle.response.status = status
        return self._render("login", csrf=self._prelogin_token(), error=error, first_run=False)

    def post_login(self):
        auth = self.runtime.auth
        if not auth.password_set:
            return bottle.redirect("/first-run", 303)
        if not self._prelogin_ok():
            return self.page_login("The form has expired; please try again.", 403)
        client = self._client()
        wait_s = auth.retry_after_s(client)
        if wait_s > 0:
            bottle.response.set_header("Retry-After", str(wait_s))
            return self.page_login("Too many failed logins; try again in %d s." % wait_s, 429)
        password = bottle.request.forms.getunicode("password") or ""
        if not auth.check(client, _basic_header(password)):
            return self.page_login("Wrong password.", 401)
        self._start_session()
        log.info("config page: admin logged in from %s", client)
        return bottle.redirect("/", 303)

    def page_first_run(self, error=None, status=200):
        if self.runtime.auth.password_set:
            return bottle.redirect("/login", 303)
        bottle.response.status = status
        return self._render("login", csrf=self._prelogin_token(), error=error, first_run=True)

    def post_first_run(self):
        auth = self.runtime.auth
        if auth.password_set:
            return bottle.redirect("/login", 303)
        if not self._prelogin_ok():
            return self.page_first_run("The form has expired; please try again.", 403)
        password = bottle.request.forms.getunicode("password") or ""
        if password != (bottle.request.forms.getunicode("password2") or ""):
            return self.page_first_run("The two passwords differ.", 400)
        try:
            auth.set_password(password)
        except PasswordError as exc:
            return self.page_first_run("Password refused: %s." % exc, 400)
        except OSError as exc:
            log.error("cannot store the admin password: %s", exc)
            return self.page_first_run("The password could not be stored on the data partition.", 500)
        log.info("config page: admin password set (first run) from %s", self._client())
        self._start_session()
        return bottle.redirect("/", 303)

    def post_logout(self):
        session = self._session()
        if session is not None and bottle.request.content_length <= MAX_FORM_BYTES and self._origin_ok() and _same(bottle.request.forms.get("csrf") or "",
                                                               session.csrf):
            self.sessions.drop(session.sid)
            self._set_cookie(SESSION_COOKIE, "", max_age=0)
        return bottle.redirect("/login", 303)

    def static(self, name):
        """Static files; the script and the stylesheet gzip-compressed (once, kept in memory) for clients that take it."""
        path = os.path.abspath(os.path.join(STATIC, name))
        if ("gzip" in (bottle.request.get_header("Accept-Encoding") or "") and name in ("app.js", "app.css")
                and os.path.dirname(path) == STATIC and os.path.isfile(path)):
            stat = os.stat(path)
            etag = '"%x-%x-gz"' % (int(stat.st_mtime), stat.st_size)
            headers = {"ETag": etag, "Vary": "Accept-Encoding", "Cache-Control": "no-cache",
                       "X-Content-Type-Options": "nosniff"}
            if bottle.request.get_header("If-None-Match") == etag:
                return bottle.HTTPResponse(status=304, **headers)
            cached = self._gzip_cache.get(name)
            if cached is None or cached[0] != etag:
                with open(path, "rb") as f:
                    cached = (etag, gzip.compress(f.read(), mtime=0))
                self._gzip_cache[name] = cached
            headers["Content-Encoding"] = "gzip"
            headers["Content-Type"] = ("application/javascript" if name.endswith(".js") else "text/css") + \
                "; charset=utf-8"
            return bottle.HTTPResponse(cached[1], **headers)
        response = bottle.static_file(name, root=STATIC)
        response.set_header("X-Content-Type-Options", "nosniff")
        response.set_header("Cache-Control", "no-cache")  # revalidated (Last-Modified): an update shows at once
        return response

    def _json(self, status, obj):
        self._headers()
        bottle.response.status = status
        bottle.response.content_type = "application/json; charset=utf-8"
        return json.dumps(obj, ensure_ascii=False) + "\n"

    def ui_cnf(self):
        """The command table behind the session: same handlers, same validation, same errors as /cnf."""
        request = bottle.request
        try:
            session = self._session()
            if session is None or not self.runtime.auth.password_set:
                raise ApiError(401, "not logged in (or the session expired): open /login")
            if not _same(request.get_header("X-CSRF-Token") or "", session.csrf) or not self._origin_ok():
                raise ApiError(403, "missing or wrong CSRF token; reload the page")
            name = request.query.get("cmd")
            if not name:
                raise ApiError(400, "missing parameter 'cmd'")
            command = self.runtime.commands.get(name)
            if command is None:
                raise ApiError(404, "unknown command '%s'" % name)
            if request.method not in command.methods:
                raise ApiError(405, "command '%s' accepts %s, not %s"
                               % (name, " or ".join(command.methods), request.method))
            limit = self.runtime.config["http"]["max_body_bytes"]
            length = request.content_length
            if length > limit:
                raise ApiError(413, "request body of %d bytes is larger than the limit of %d bytes" % (length, limit),
                               limit=limit)
            body = request.environ["wsgi.input"].read(length) if (request.method == "POST" and length > 0) else b""
            query = dict((key, request.query.getunicode(key)) for key in request.query.keys())
            status, obj = command.handler(ApiRequest(request.method, query, body, self._client(), "admin"))
            if name == "set_password" and status == 200:
                self.sessions.drop_others(session.sid)  # a changed password logs out every other browser
            return self._json(status, obj)
        except ApiError as exc:
            body = {"error": exc.message}
            body.update(exc.extra)
            return self._json(exc.status, body)
        except Exception:
            log.exception("config page command %r failed", request.query.get("cmd"))
            return self._json(500, {"error": "internal error; see the appliance log"})

    def post_update(self):
        """An update bundle as the request body: spooled on the data partition for the root installer
        (chargemanager-update.service, adapters/update_spool.py), which verifies it before writing anything and
        installs it the same way as a USB stick; the answer is its result, or 202 while it is still working."""
        request = bottle.request
        session = self._session()
        if session is None:
            return self._json(401, {"error": "not logged in (or the session expired): open /login"})
        if not _same(request.get_header("X-CSRF-Token") or "", session.csrf) or not self._origin_ok():
            return self._json(403, {"error": "missing or wrong CSRF token; reload the page"})
        if self.spool is None:
            return self._json(404, {"error": "this build has no updater"})
        length = request.content_length
        if length <= 0:
            return self._json(400, {"error": "send the bundle file as the request body (with Content-Length)"})
        if length > MAX_UPDATE_BYTES:
            return self._json(413, {"error": "bundle of %d bytes is larger than the limit of %d bytes"
                                             % (length, MAX_UPDATE_BYTES), "limit": MAX_UPDATE_BYTES})
        if not self._update_lock.acquire(blocking=False):
            return self._json(409, {"error": "another update is being uploaded or installed"})
        try:
            for old in self.spool.discard_waiting():
                log.warning("config page: update bundle %s was never taken by the installer; replaced", old)
            force = request.query.get("force") == "1"
            try:
                bundle_id, received = self.spool.receive(request.environ["wsgi.input"], length, force)
            except OSError as exc:
                log.error("config page: cannot store the uploaded bundle: %s", exc)
                return self._json(500, {"error": "cannot store the bundle on the data partition (%s); nothing was "
                                                 "installed" % (exc.strerror or exc)})
            if bundle_id is None:
                return self._json(400, {"error": "upload incomplete: %d of %d bytes; nothing was installed"
                                                 % (received, length)})
            log.info("config page: update bundle %s of %d bytes uploaded from %s%s", bundle_id, length,
                     self._client(), " (forced)" if force else "")
            result = self.spool.wait_result(bundle_id, self.update_wait_s)
            if result is None:
                return self._json(202, {"ok": None, "id": bundle_id, "state": "waiting",
                                        "message": "stored; the installer has not answered yet (get_update shows "
                                                   "the result)"})
            return self._json(*_update_answer(result))
        finally:
            self._update_lock.release()

    def cmd_get_update(self, req):
        """The running version, whether an upload waits for the installer, and the installer's last result."""
        status = self.spool.status()
        status["version"] = __version__
        return 200, status

    def diagnostics(self):
        """A tar.gz with the configuration (secrets replaced), status, variables and the recent log lines."""
        if self._session() is None:
            return bottle.redirect("/login", 303)
        runtime = self.runtime
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall_time_s()))
        files = [
            ("config.json", json.dumps(redact(runtime.config), indent=1, ensure_ascii=False)),
            ("status.json", json.dumps(runtime.status(), indent=1, ensure_ascii=False, default=str)),
            ("variables.json", json.dumps({"vars": runtime.variables.listing()}, indent=1, ensure_ascii=False)),
            ("log.txt", "\n".join(self.logs.lines()) + "\n"),
            ("version.txt", __version__ + "\n"),
        ]
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for name, text in files:
                data = text.encode("utf-8")
                info = tarfile.TarInfo("diagnostics-%s/%s" % (stamp, name))
                info.size = len(data)
                info.mtime = int(wall_time_s())
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        self._headers()
        bottle.response.content_type = "application/gzip"
        bottle.response.set_header("Content-Disposition",
                                   'attachment; filename="chargemanager-diagnostics-%s.tar.gz"' % stamp)
        return gzip.compress(raw.getvalue(), mtime=0)


def _sum_power(snapshot, dev_ids, now_ms):
    """Sum of `power_w` of the fresh readings among dev_ids; None when none of them has one."""
    total = None
    for dev_id in dev_ids:
        reading = snapshot.get(dev_id)
        if reading is None:
            continue
        quantities, taken_ms, max_age_ms = reading
        power = quantities.get("power_w")
        if power is None or now_ms - taken_ms > max_age_ms:
            continue
        total = (total or 0) + power
    return total


def _updater():
    """The updater module, or None in a build without it."""
    try:
        from chargemanager.adapters import updater
    except ImportError:
        return None
    return updater


def _update_answer(result):
    """(status, body) for the installer's result of an upload."""
    lines = result.get("log") or []
    if result.get("state") == "installed":
        return 200, {"ok": True, "version": result.get("version"), "log": lines,
                     "next": "the appliance restarts into version %s now; if it does not come up healthy, it falls "
                             "back to the running version" % result.get("version")}
    if result.get("state") == "refused":
        return 400, {"error": "update refused: %s; nothing was installed" % result.get("message"), "log": lines}
    return 500, {"error": "update failed: %s" % result.get("message"), "log": lines}


def install(runtime):
    """Add the config page to a Runtime (before it starts)."""
    web = WebUI(runtime)
    web.install()
    return web
