"""The `/cnf` HTTP API (SPEC §3, seed 000): a Bottle app whose commands come from a table.

Each part of the manager registers its own commands (`CommandTable.register`), so adding a command never touches
the dispatcher. Rules every command gets from here:
- Authentication: HTTP Basic, user `admin`. No working default password: until one is set, everything but
  `set_password` answers 403 saying how to set one. Failed logins are slowed down per client (429 + Retry-After).
  A request that arrives through the Smart Meter Gateway's mutual-TLS listener carries the principal `smgw` in its
  WSGI environ (set by that listener, never by a header) and may call the commands registered with `cls=True`
  without a password; others only when the listener says full administration is on.
- Errors are JSON `{"error": "..."}` with 400 (malformed request, JSON or formula, with the position), 401, 403,
  404 (unknown command), 405, 413 (body too large), 429, 500. A command either applies completely or not at all.
- Bodies are read only up to the configured limit; JSON is parsed whatever the Content-Type (the seed's curl
  examples send `-d` bodies as form-encoded).
"""

import json
import logging

import bottle

from chargemanager.adapters.auth import ADMIN_USER, PasswordError
from chargemanager.adapters.variable_service import VariableError, json_number
from chargemanager.core.config import validate_config

log = logging.getLogger("http")

PRINCIPAL_KEY = "chargemanager.principal"      # WSGI environ key set by trusted listeners only
CLS_FULL_ADMIN_KEY = "chargemanager.cls_full_admin"


class ApiError(Exception):
    def __init__(self, status, message, **extra):
        Exception.__init__(self, message)
        self.status = status
        self.message = message
        self.extra = extra


class ApiRequest:
    """What a command handler sees."""

    def __init__(self, method, query, body, client, principal):
        self.method = method
        self.query = query          # {name: last value} of the URL query
        self.body = body            # bytes (b"" for GET)
        self.client = client
        self.principal = principal  # "admin", "smgw" or None (set_password before any password exists)

    def param(self, name, required=False):
        value = self.query.get(name)
        if required and (value is None or value == ""):
            raise ApiError(400, "missing parameter '%s'" % name)
        return value

    def flag(self, name):
        value = self.query.get(name)
        if value in (None, "", "0"):
            return False
        if value == "1":
            return True
        raise ApiError(400, "parameter '%s' must be 0 or 1" % name)

    def json_body(self):
        return parse_json_body(self.body)


class Command:
    def __init__(self, name, handler, methods, cls, public_until_password):
        self.name = name
        self.handler = handler
        self.methods = methods
        self.cls = cls
        self.public_until_password = public_until_password


class CommandTable:
    def __init__(self):
        self._commands = {}

    def register(self, name, handler, methods=("GET",), cls=False, public_until_password=False):
        """`handler(ApiRequest) -> (status, obj)`; `cls`: callable through the SMGW's CLS channel without password."""
        if name in self._commands:
            raise ValueError("command %r registered twice" % name)
        self._commands[name] = Command(name, handler, tuple(methods), cls, public_until_password)

    def get(self, name):
        return self._commands.get(name)

    def names(self):
        return sorted(self._commands)


def parse_json_body(body):
    if not body:
        raise ApiError(400, "request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "request body is not UTF-8 (byte %d)" % exc.start)

    def refuse_constant(name):
        raise ValueError("%s is not a number JSON allows" % name)

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed JSON at line %d, column %d (character %d): %s"
                       % (exc.lineno, exc.colno, exc.pos, exc.msg),
                       line=exc.lineno, column=exc.colno, position=exc.pos)
    except ValueError as exc:
        raise ApiError(400, "malformed JSON: %s" % exc)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply")


def build_app(commands, auth, max_body_bytes=65536, extra_routes=None):
    """The WSGI application: `/cnf` plus whatever `extra_routes(app)` adds (the config page)."""
    app = bottle.Bottle()

    def respond(status, obj, headers=None):
        bottle.response.status = status
        bottle.response.content_type = "application/json; charset=utf-8"
        bottle.response.set_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            bottle.response.set_header(key, value)
        return json.dumps(obj, ensure_ascii=False) + "\n"

    def read_body(request):
        length = request.content_length
        if length > max_body_bytes:
            raise ApiError(413, "request body of %d bytes is larger than the limit of %d bytes"
                           % (length, max_body_bytes), limit=max_body_bytes)
        if request.method != "POST":
            return b""
        data = request.environ["wsgi.input"].read(length) if length > 0 else b""
        return data

    def authorize(request, command):
        principal = request.environ.get(PRINCIPAL_KEY)
        if principal == "smgw":
            if command.cls or request.environ.get(CLS_FULL_ADMIN_KEY):
                return "smgw"
            raise ApiError(403, "command '%s' is not allowed through the Smart Meter Gateway channel "
                                "(only with function 4, full administration)" % command.name)
        if not auth.password_set:
            if command.public_until_password:
                return None
            raise ApiError(403, "no admin password is set yet: set one with `chargemanager set-password --data "
                                "DIR` on the appliance, or with POST /cnf?cmd=set_password and body "
                                "{\"password\": \"...\"} (allowed only while no password is set)")
        client = request.environ.get("REMOTE_ADDR") or "?"  # not remote_addr: it trusts X-Forwarded-For
        wait_s = auth.retry_after_s(client)
        if wait_s > 0:
            raise ApiError(429, "too many failed logins from this client; try again in %d s" % wait_s,
                           retry_after_s=wait_s)
        header = request.get_header("Authorization")
        if not header:
            raise ApiError(401, "authentication required: HTTP Basic with user '%s'" % ADMIN_USER)
        if not auth.check(client, header):
            raise ApiError(401, "wrong user name or password")
        return "admin"

    @app.route("/cnf", method=["GET", "POST", "PUT", "DELETE", "PATCH"])
    def cnf():
        request = bottle.request
        try:
            name = request.query.get("cmd")
            if not name:
                raise ApiError(400, "missing parameter 'cmd'")
            command = commands.get(name)
            if command is None:
                raise ApiError(404, "unknown command '%s'" % name, commands=commands.names())
            if request.method not in command.methods:
                raise ApiError(405, "command '%s' accepts %s, not %s"
                               % (name, " or ".join(command.methods), request.method))
            principal = authorize(request, command)
            body = read_body(request)
            query = dict((key, request.query.getunicode(key)) for key in request.query.keys())
            api_request = ApiRequest(request.method, query, body, request.environ.get("REMOTE_ADDR"), principal)
            status, obj = command.handler(api_request)
            return respond(status, obj)
        except ApiError as exc:
            headers = {}
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="chargemanager", charset="UTF-8"'
            if exc.status == 429:
                headers["Retry-After"] = str(exc.extra.get("retry_after_s", 1))
            body = {"error": exc.message}
            body.update(exc.extra)
            return respond(exc.status, body, headers)
        except Exception:  # a bug must not kill the server thread nor leak a trace to the client
            log.exception("command %r failed", request.query.get("cmd"))
            return respond(500, {"error": "internal error; see the appliance log"})

    @app.error(404)
    def not_found(error):
        bottle.response.content_type = "application/json; charset=utf-8"
        return json.dumps({"error": "no such path: %s" % bottle.request.path}) + "\n"

    @app.error(405)
    def not_allowed(error):
        bottle.response.content_type = "application/json; charset=utf-8"
        return json.dumps({"error": "method %s not allowed here" % bottle.request.method}) + "\n"

    if extra_routes is not None:
        extra_routes(app)
    return app


# --- the foundation's commands -------------------------------------------------------------------------------------

def _batch_error(exc, prefix=""):
    extra = {}
    if exc.index is not None:
        extra["index"] = exc.index
        prefix = "vars[%d]: " % exc.index
    if exc.name is not None:
        extra["name"] = exc.name
    if exc.position is not None:
        extra["position"] = exc.position
    return ApiError(400, prefix + exc.message, **extra)


def register_variable_commands(commands, variables):
    """set_cm_vars and get_cm_vars, exactly as in the seed; both callable through the SMGW channel."""

    def set_cm_vars(req):
        clear = req.flag("clear")
        persist = not req.flag("tmp")
        if req.method == "POST" and req.body:
            doc = req.json_body()
            if not isinstance(doc, dict) or not isinstance(doc.get("vars"), list):
                raise ApiError(400, "body must be a JSON object {\"vars\": [{\"name\": ..., \"expr\": ...}, ...]}")
            entries = []
            for index, item in enumerate(doc["vars"]):
                if not isinstance(item, dict) or "name" not in item or "expr" not in item:
                    raise ApiError(400, "vars[%d]: each entry needs \"name\" and \"expr\"" % index, index=index)
                entries.append((item["name"], item["expr"]))
        else:
            name = req.param("name", required=True)
            value = req.query.get("val")
            if value is None:
                raise ApiError(400, "missing parameter 'val'")
            entries = [(name, value)]
        try:
            names = variables.set_batch(entries, clear=clear, persist=persist, source=req.principal or "api")
        except VariableError as exc:
            raise _batch_error(exc)
        except OSError as exc:
            log.error("cannot store variables: %s", exc)
            raise ApiError(500, "cannot store variables on the data partition; nothing was changed")
        return 200, {"ok": True, "set": names, "cleared": clear, "persisted": persist}

    def get_cm_vars(req):
        return 200, {"vars": variables.listing()}

    commands.register("set_cm_vars", set_cm_vars, methods=("GET", "POST"), cls=True)
    commands.register("get_cm_vars", get_cm_vars, methods=("GET",), cls=True)


def register_password_command(commands, auth):
    def set_password(req):
        doc = req.json_body() if req.body else {}
        password = doc.get("password") if isinstance(doc, dict) else None
        if password is None:
            raise ApiError(400, "body must be {\"password\": \"...\"}")
        if auth.password_set and req.principal != "admin":
            raise ApiError(401, "authentication required to change the password")
        try:
            auth.set_password(password)
        except PasswordError as exc:
            raise ApiError(400, str(exc))
        return 200, {"ok": True}

    commands.register("set_password", set_password, methods=("POST",), public_until_password=True)


SECRET_KEYS = ("password",)
REDACTED = "********"


def redact(doc):
    """A copy with every secret (keys named `password`) replaced by a marker; never returns a secret."""
    if isinstance(doc, dict):
        return dict((k, (REDACTED if (k in SECRET_KEYS and v) else redact(v))) for k, v in doc.items())
    if isinstance(doc, list):
        return [redact(v) for v in doc]
    return doc


def restore_secrets(new, old):
    """Where `new` carries the redaction marker, keep the value from `old` (the page shows markers, not secrets)."""
    if isinstance(new, dict):
        old = old if isinstance(old, dict) else {}
        return dict((k, (old.get(k, "") if (k in SECRET_KEYS and v == REDACTED) else restore_secrets(v, old.get(k))))
                    for k, v in new.items())
    if isinstance(new, list):
        old = old if isinstance(old, list) else []
        return [restore_secrets(v, old[i] if i < len(old) else None) for i, v in enumerate(new)]
    return new


def register_config_commands(commands, runtime):
    """get_config / set_config: the whole document, validated by the one schema, never half-applied."""

    def get_config(req):
        return 200, {"config": redact(runtime.config)}

    def set_config(req):
        doc = req.json_body()
        if isinstance(doc, dict) and "config" in doc:
            doc = doc["config"]
        doc = restore_secrets(doc, runtime.config)
        clean, errors = validate_config(doc)
        if not errors:
            for check in getattr(runtime, "config_checks", ()):
                errors.extend(check(clean))
        if errors:
            raise ApiError(400, "configuration rejected: %d field(s) invalid; nothing was changed" % len(errors),
                           fields=errors)
        try:
            runtime.apply_config(clean)
        except OSError as exc:
            log.error("cannot store configuration: %s", exc)
            raise ApiError(500, "cannot store the configuration on the data partition; nothing was changed")
        return 200, {"ok": True, "config": redact(clean)}

    commands.register("get_config", get_config)
    commands.register("set_config", set_config, methods=("POST",))


def register_status_command(commands, runtime):
    def get_status(req):
        return 200, runtime.status()

    commands.register("get_status", get_status)


__all__ = ["ApiError", "ApiRequest", "CommandTable", "build_app", "json_number", "PRINCIPAL_KEY",
           "CLS_FULL_ADMIN_KEY", "register_variable_commands", "register_password_command",
           "register_config_commands", "register_status_command", "redact"]
