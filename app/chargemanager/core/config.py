"""The configuration document: one versioned JSON object, one schema (this module), one generated reference
(docs/configuration.md, made by tools/gen_config_docs.py).

Invariants:
- `validate_config(doc)` returns `(clean, errors)`; a document with any error is applied nowhere.
- Units are in every key name: currents in mA per phase, power in W, times in ms or s as named.
- Settings that accept a formula keep it as a string; they are evaluated every tick by the runtime.
- `migrate(doc)` brings an older document up to CONFIG_VERSION with small numbered steps; unknown keys are kept.
This module is pure (MicroPython-compatible).
"""

from chargemanager.core.schema import (
    Bool, Enum, Field, List, Nullable, Number, NumberOrFormula, Object, String, validate, defaults,
)
from chargemanager.core.rules import Rule, RuleError
from chargemanager.core.ocpp_station import ocpp_endpoint

CONFIG_VERSION = 1


def _is_dev_id_char(ch):
    return ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def _is_chargebox_char(ch):
    # OCPP-J §3.1.1: the identity is part of the URL path; keep to characters that need no escaping.
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch in "-_.:*@+"


def _is_backend_url(url):
    for scheme in ("ws://", "wss://"):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            host = rest.split("/", 1)[0]
            return bool(host) and host[0] not in ":@" and "?" not in url and "#" not in url and " " not in url
    return False


SITE = Object([
    Field("max_power_w", NumberOrFormula(minimum=0), 11000,
          "Maximum total power of the house connection in W, a number or a formula such as `55000 * AVAIL / 100`."),
    Field("max_current_ma", NumberOrFormula(minimum=0), 16000,
          "Maximum current per phase of the house connection in mA, a number or a formula."),
    Field("reserve_w", Number(minimum=0, maximum=1000000, integer=True), 0,
          "Power kept free below the limit, in W."),
    Field("voltage_v", Number(minimum=100, maximum=400, integer=True), 230,
          "Nominal phase voltage in V, used to convert power to current."),
    Field("max_skew_w", Number(minimum=0, maximum=1000000, integer=True), 4600,
          "Largest allowed imbalance between phases in W (single-phase cars)."),
    Field("mode", Enum(("active", "monitor")), "active",
          "`active` sends limits to the wallboxes; `monitor` only observes and shows what it would send."),
    Field("tick_ms", Number(minimum=100, maximum=60000, integer=True), 1000,
          "Period of the control loop in ms."),
    Field("min_pause_s", Number(minimum=0, maximum=3600, integer=True), 300,
          "Minimum time an EVSE stays paused before it may start again, in s (relays and cars dislike rapid "
          "on/off)."),
    # Load management (docs/load-management.md).
    Field("phases", Number(minimum=1, maximum=3, integer=True), 3,
          "Phases of the house connection (1 or 3; power limits are spread evenly over them)."),
    Field("fallback_current_ma", Number(minimum=0, maximum=1000000, integer=True), 6000,
          "Current per phase in mA that all EVSEs together may use while the grid meter reading is missing or "
          "stale, or while a site limit formula cannot be evaluated (never more than limit - reserve)."),
    Field("meter_max_age_ms", Number(minimum=100, maximum=3600000, integer=True), 10000,
          "A grid meter reading older than this (ms) is unknown: the fallback budget applies."),
    Field("evse_max_age_ms", Number(minimum=100, maximum=3600000, integer=True), 60000,
          "An EVSE current reading older than this (ms) counts as 0 A of EV load (so house load is "
          "over-, never under-estimated)."),
    Field("overdraft_delay_s", Number(minimum=0, maximum=600, integer=True), 15,
          "An overdraft (measured draw above limit - reserve) must last this long (s) before the available "
          "current is cut; it lets cars settle after a lower limit."),
    Field("overdraft_hold_s", Number(minimum=0, maximum=86400, integer=True), 300,
          "How long (s) the available current stays cut by the overdraft (to let the fuse cool down)."),
    Field("ramp_ma_per_s", Number(minimum=0, maximum=100000, integer=True), 0,
          "Largest rise of an EVSE's current per second in mA (0: raise at once). Lower limits always apply at "
          "once."),
    Field("current_step_ma", Number(minimum=1, maximum=10000, integer=True), 100,
          "Grants are rounded down to multiples of this (mA), so small load changes do not resend profiles."),
    Field("min_raise_ma", Number(minimum=0, maximum=10000, integer=True), 500,
          "A charging EVSE on every phase rises only by at least this much (mA); smaller rises wait, so a noisy house "
          "load does not resend profiles every tick. Lowering is always immediate."),
    Field("section_14a", Bool(), False,
          "§14a EnWG: a site limit given by a formula (the grid operator's) never dims the active EVSEs below "
          "4200 W + (n - 1) x factor x 4200 W, and a failing formula counts as dimming to exactly that."),
    Field("p14a_input", String(max_length=16), "",
          "Name of the switching input (e.g. `IN1`) that signals §14a EnWG dimming; empty: none. While it is "
          "active the EVSEs together get at most the legal minimum (4200 W for one device, 4200 W + (n-1) x "
          "factor x 4200 W for n)."),
    Field("p14a_devices", Number(minimum=0, maximum=1000, integer=True), 0,
          "Number of controllable devices for the §14a minimum; 0: the number of active EVSEs."),
], "The site: the house connection and the control loop.")

def _check_rule(clean, path, errors):
    try:
        Rule(clean)
    except RuleError as exc:
        errors.append({"field": path, "error": exc.message})


RULE_TIME = Object([
    Field("from", String(max_length=5, min_length=4), "00:00", "Start of the window, `HH:MM` local time."),
    Field("to", String(max_length=5, min_length=4), "24:00",
          "End of the window, `HH:MM` (not after `from`: the window runs past midnight)."),
    Field("weekdays", List(Number(minimum=1, maximum=7, integer=True), max_items=7), [],
          "Weekdays the window starts on, 1 = Monday … 7 = Sunday (empty: every day)."),
], "A time window.")

RULE = Object([
    Field("enabled", Bool(), True, "A disabled rule is skipped."),
    Field("condition", String(max_length=1024), "",
          "A formula, e.g. `TARIF == 1`; the rule applies while it is true (non-zero). Empty: always."),
    Field("time", Nullable(RULE_TIME), None, "Optional time window; the rule applies only inside it."),
    Field("action", Enum(("set", "limit", "pause")), "limit",
          "`set`: charge with this current/power (replaces earlier rules), `limit`: at most this, `pause`: no "
          "charging."),
    Field("current_ma", Nullable(NumberOrFormula(minimum=0)), None, "Current per phase in mA for set/limit."),
    Field("power_w", Nullable(NumberOrFormula(minimum=0)), None, "Power in W for set/limit (the lower binds)."),
    Field("stop", Bool(), False, "Evaluate no further rules once this one applied."),
], "A charging rule.", check_whole=_check_rule)

GATEWAY = Object([
    Field("url", String(max_length=512), "",
          "Backend URL, `ws://` or `wss://`, with a path if the backend needs one (empty: no gateway)."),
    Field("password", String(max_length=128), "", "Password for HTTP Basic towards the backend (username = client ID)."),
    Field("client_id", String(max_length=64, allowed=_is_chargebox_char, allowed_doc="URL-safe characters"), "",
          "The id under which the station appears at the backend (empty: the ChargeBox ID)."),
    Field("auth_policy", Enum(("cache", "accept", "reject")), "cache",
          "Authorize while the backend is unreachable: `cache` accepts ids the backend accepted before, `accept` "
          "accepts every id, `reject` none."),
    Field("ca_file", String(max_length=256), "",
          "For `wss://`: PEM file with the CA certificates that may sign the backend's certificate, relative to "
          "the data folder (empty: the system trust store). OCPP security profile 2."),
    Field("client_cert", String(max_length=256), "",
          "For `wss://`: PEM client certificate for the backend (profile 3), relative to the data folder."),
    Field("client_key", String(max_length=256), "",
          "The private key of `client_cert` (PEM), relative to the data folder."),
    Field("client_cert_id", String(max_length=64), "",
          "For `wss://`: id of a certificate with key in the certificate store (`get_certs`) to present to this "
          "backend (profile 3); before `client_cert`. Empty: `client_cert`, else the store's newest client "
          "certificate."),
], "OCPP gateway to the wallbox's billing backend.")

EVSE = Object([
    Field("dev_id", String(max_length=8, min_length=2, allowed=_is_dev_id_char, allowed_doc="like E1"), None,
          "Device id used in the API and in formulas, e.g. `E1`.", required=True),
    Field("name", String(max_length=64), "", "Display name."),
    Field("type", String(max_length=32, min_length=1), "ocpp16",
          "`ocpp16` (EVSE with OCPP 1.6) or a Modbus charger model id (see docs/devices.md)."),
    Field("address", String(max_length=128), "",
          "ChargeBox ID for OCPP; bus or host for Modbus."),
    Field("id", Number(minimum=0, maximum=255, integer=True), 1,
          "OCPP connector id (1 for single-connector boxes) or Modbus unit id."),
    Field("phases", Number(minimum=1, maximum=3, integer=True), 3, "Number of phases the EVSE uses."),
    Field("l1_phase", Number(minimum=1, maximum=3, integer=True), 1,
          "Grid phase (1..3) that the EVSE's L1 is wired to (phase rotation)."),
    Field("min_current_ma", Number(minimum=0, maximum=80000, integer=True), 6000,
          "Minimum charging current in mA; below it the EVSE pauses."),
    Field("max_current_ma", Nullable(NumberOrFormula(minimum=0)), 16000,
          "Maximum charging current per phase in mA, a number or a formula."),
    Field("max_power_w", Nullable(NumberOrFormula(minimum=0)), None,
          "Maximum charging power in W, a number or a formula (null: no power limit)."),
    Field("prio", Number(minimum=0, maximum=100, integer=True), 1, "Priority; higher is served first."),
    Field("mode", Enum(("active", "monitor")), "active", "`monitor`: observe only, send no limits."),
    Field("security_profile", Number(minimum=0, maximum=3, integer=True), 0,
          "OCPP security profile the box must connect with (white paper; one per box, refused on any other): 0 = ws "
          "without credentials, 1 = ws + server password, 2 = wss + server password, 3 = wss + client certificate "
          "from a trusted CA (`ca` entry of the certificate store). 2 and 3 need `ocpp.server.tls` `detect` or "
          "`on`; 1 and 2 need `ocpp.server.password`."),
    Field("rules", List(RULE, max_items=32), [], "Charging rules, evaluated in order (docs/load-management.md)."),
    Field("gateway", GATEWAY, {}, "OCPP gateway settings."),
    Field("stack_level_zero", Bool(), False,
          "OCPP quirk: send charging profiles at stack level 0 only (boxes that reject higher levels; docs/ocpp.md)."),
    Field("charging_rate_unit", Enum(("auto", "A", "W")), "auto",
          "OCPP quirk: unit of the charging profiles; `auto` uses A when the box allows it, else W."),
    Field("profile_kind", Enum(("Absolute", "Relative")), "Absolute",
          "OCPP quirk: `Relative` for boxes that mishandle absolute start times in charging profiles."),
    Field("poll_interval_ms", Number(minimum=0, maximum=60000, integer=True), 1000,
          "Modbus chargers: how often the box is read, in ms."),
    Field("max_age_ms", Number(minimum=100, maximum=600000, integer=True), 5000,
          "Modbus chargers: a reading older than this is unknown, in ms."),
    Field("watchdog_timeout_ms", Nullable(Number(minimum=0, maximum=65535, integer=True)), None,
          "Modbus chargers with a watchdog (Heidelberg): without a request for this long the box falls back "
          "to `failsafe_current_ma` by itself (null: the model's default, 15000)."),
    Field("failsafe_current_ma", Number(minimum=0, maximum=80000, integer=True), 0,
          "Modbus chargers with a watchdog: current the box falls back to when the manager stops, in mA "
          "(0: stop charging). Keep the sum over all boxes within the connection limit."),
    Field("ocpp_id", String(max_length=64), "",
          "Modbus chargers that also connect to our OCPP server: their ChargeBox ID; the box then gets the "
          "minimum of our limit and its billing backend's (kept by the gateway) and charges only if both allow "
          "(docs/devices.md)."),
    Field("ocpp_connector_id", Number(minimum=1, maximum=255, integer=True), 1,
          "Modbus chargers with `ocpp_id`: the OCPP connector id of this charger in that box."),
], "An EVSE (wallbox connector).")

METER = Object([
    Field("dev_id", String(max_length=8, min_length=2, allowed=_is_dev_id_char, allowed_doc="like M1"), None,
          "Device id used in the API and in formulas, e.g. `M1`.", required=True),
    Field("name", String(max_length=64), "", "Display name."),
    Field("type", String(max_length=32, min_length=1), None, "Meter model id (see docs/devices.md).",
          required=True),
    Field("role", Enum(("grid", "evse", "other")), "grid",
          "`grid`: measures the whole house connection; `evse`: measures one EVSE; `other`: shown only."),
    Field("max_age_ms", Nullable(Number(minimum=100, maximum=3600000, integer=True)), None,
          "A reading older than this (ms) is unknown (null: `site.meter_max_age_ms`)."),
    Field("address", String(max_length=128), "",
          "Modbus: serial device with settings (`/dev/ttyUSB0,9600,8,N,1`) or `host:port` for Modbus TCP."),
    Field("id", Number(minimum=0, maximum=255, integer=True), 1, "Modbus unit id."),
    Field("evse", String(max_length=8), "", "For role `evse`: the dev_id of the EVSE this meter measures."),
    Field("poll_interval_ms", Number(minimum=0, maximum=60000, integer=True), 1000, "How often it is read, in ms."),
    Field("timeout_ms", Nullable(Number(minimum=20, maximum=10000, integer=True)), None,
          "Answer timeout in ms (null: the model's default)."),
], "A meter.")

OCPP_SERVER = Object([
    Field("port", Number(minimum=1, maximum=65535, integer=True), 19520, "TCP port of the OCPP server."),
    Field("tls", Enum(("off", "detect", "on")), "off",
          "`off`: ws:// only; `detect`: ws:// and wss:// on the same port; `on`: wss:// only."),
    Field("password", String(max_length=128), "",
          "Optional server password (HTTP Basic, username = ChargeBox ID; OCPP security profile 1/2)."),
    Field("ping_interval_s", Number(minimum=0, maximum=59, integer=True), 30,
          "WebSocket ping interval in s (below 60 so half-open links are found); 0 turns pings off for boxes "
          "that do not answer them (docs/ocpp.md)."),
], "The OCPP 1.6J server the wallboxes connect to.")

HTTP = Object([
    Field("port", Number(minimum=1, maximum=65535, integer=True), 80,
          "TCP port of the HTTP API and config page (the command line's --http-port overrides it)."),
    Field("max_body_bytes", Number(minimum=1024, maximum=16 * 1024 * 1024, integer=True), 65536,
          "Largest accepted request body for /cnf, in bytes (larger: 413)."),
], "The HTTP API and config page.")


def _is_input_name_char(ch):
    return ("A" <= ch <= "Z") or ("a" <= ch <= "z") or ("0" <= ch <= "9")


INPUT = Object([
    Field("name", String(max_length=8, min_length=2, allowed=_is_input_name_char, allowed_doc="like IN1"), None,
          "Name in formulas, e.g. `IN1`.", required=True),
    Field("source", Enum(("file", "modbus", "gpio")), "file",
          "`file` (development), `modbus` (an I/O module's discrete input) or `gpio` (a board GPIO line)."),
    Field("path", String(max_length=256), "", "file: the file holding 0/1 (or JSON / NAME=0|1 lines with `key`)."),
    Field("key", String(max_length=32), "", "file: the key in that file (empty: the whole file is 0 or 1)."),
    Field("address", String(max_length=128), "", "modbus: the I/O module's bus or host:port."),
    Field("id", Number(minimum=0, maximum=255, integer=True), 1, "modbus: the I/O module's unit id."),
    Field("type", String(max_length=32), "generic_di8", "modbus: the I/O module's model id."),
    Field("channel", Number(minimum=1, maximum=8, integer=True), 1, "modbus: input number 1..8."),
    Field("chip", String(max_length=64), "/dev/gpiochip0", "gpio: the GPIO chip."),
    Field("line", Number(minimum=0, maximum=1023, integer=True), 0, "gpio: the line offset on that chip."),
    Field("active_low", Bool(), False, "gpio: the contact pulls the line low when closed."),
    Field("invert", Bool(), False, "Report 1 when the contact is open."),
], "A switching input (ripple control receiver, FNN control box, key switch). A failing source reads 1.")


SMGW_FAILSAFE = Object([
    Field("name", String(max_length=32, min_length=1), None, "Variable name, e.g. `AVAIL`.", required=True),
    Field("timeout_s", Number(minimum=10, maximum=7 * 86400, integer=True), 900,
          "If the variable has not been written for this long, it takes its failsafe value, in s."),
    Field("value", NumberOrFormula(), None,
          "Failsafe value (number or formula), e.g. the `AVAIL` that leaves 4.2 kW per controllable device (§14a).",
          required=True),
    Field("refresh_by", Enum(("smgw", "any")), "smgw",
          "Who keeps the variable out of failsafe by writing it: `smgw` only the grid operator through the Smart "
          "Meter Gateway, `any` also the admin."),
], "A variable the grid operator must keep refreshing.")

SMGW = Object([
    Field("enabled", Bool(), False, "Use a Smart Meter Gateway (SMGW) on the home network."),
    Field("address", String(max_length=256), "",
          "The SMGW's IP address or URL in the home network (`192.168.1.10`, `smgw.local:1080`, "
          "`https://192.168.1.10:3128`); a port given here overrides `proxy_port`."),
    Field("proxy_method", Enum(("socks5", "http_connect")), "socks5",
          "How outgoing connections pass the SMGW (function 1): TLS to the SMGW, then a SOCKS5 (RFC 1928) or an "
          "HTTP CONNECT request for the backend, then the backend's own TLS inside."),
    Field("proxy_port", Number(minimum=1, maximum=65535, integer=True), 1080, "TCP port of the SMGW's proxy."),
    Field("cert", String(max_length=64), "self-rsa",
          "Id of our certificate (with key) presented to the SMGW, both on the CLS listener and on outgoing "
          "connections (see get_certs)."),
    Field("trust", String(max_length=64), "",
          "Id of the trusted SMGW certificate or the CA that issued it (a `ca` entry, see get_certs)."),
    Field("cls_port", Number(minimum=1, maximum=65535, integer=True), 8443,
          "TCP port of the mutual-TLS listener for the CLS channel the SMGW opens towards us."),
    Field("f1_ocpp_gateway", Bool(), False, "Function 1: OCPP gateway connections to the backends go through the SMGW."),
    Field("f2_grid_power", Bool(), False,
          "Function 2: the grid operator may reduce the house connection power (set_cm_vars through the CLS channel)."),
    Field("f3_tariff", Bool(), False, "Function 3: the energy supplier announces tariffs (set_cm_vars, e.g. TARIF)."),
    Field("f4_admin", Bool(), False,
          "Function 4: the grid operator or supplier may call every /cnf command through the CLS channel."),
    Field("failsafe", List(SMGW_FAILSAFE, max_items=16, unique_key="name"), [],
          "Variables that fall to a failsafe value when the grid operator stops writing them."),
], "Smart Meter Gateway (seed 000): CLS channel, proxy for backends, failsafe variables.")


def _check_document(clean, path, errors):
    seen = {}
    for section in ("evses", "meters"):
        for index, entry in enumerate(clean.get(section) or []):
            dev_id = entry.get("dev_id")
            if dev_id in seen:
                errors.append({"field": "%s[%d].dev_id" % (section, index),
                               "error": "dev_id %r is already used by %s" % (dev_id, seen[dev_id])})
            else:
                seen[dev_id] = "%s[%d]" % (section, index)
    endpoints = {}
    for index, evse in enumerate(clean.get("evses") or []):
        if evse.get("type") == "ocpp16" and not evse.get("address"):
            errors.append({"field": "evses[%d].address" % index,
                           "error": "an OCPP EVSE needs its ChargeBox ID as address"})
        elif evse.get("type") == "ocpp16":
            for ch in evse["address"]:
                if not _is_chargebox_char(ch):
                    errors.append({"field": "evses[%d].address" % index,
                                   "error": "ChargeBox ID character %r not allowed" % ch})
                    break
        if evse.get("type") != "ocpp16" and evse.get("ocpp_id"):
            for ch in evse["ocpp_id"]:
                if not _is_chargebox_char(ch):
                    errors.append({"field": "evses[%d].ocpp_id" % index,
                                   "error": "ChargeBox ID character %r not allowed" % ch})
                    break
        endpoint = ocpp_endpoint(evse)
        if endpoint is not None and endpoint[0]:
            if endpoint in endpoints:
                errors.append({"field": "evses[%d]" % index,
                               "error": "ChargeBox ID %r connector %d is already used by %s"
                                        % (endpoint[0], endpoint[1], endpoints[endpoint])})
            else:
                endpoints[endpoint] = "evses[%d]" % index
        gw_url = (evse.get("gateway") or {}).get("url") or ""
        if gw_url and not _is_backend_url(gw_url):
            errors.append({"field": "evses[%d].gateway.url" % index,
                           "error": "must be ws://host[:port]/[path] or wss://...; no query or fragment"})
    server = (clean.get("ocpp") or {}).get("server") or {}
    for index, evse in enumerate(clean.get("evses") or []):
        profile = evse.get("security_profile", 0)
        if ocpp_endpoint(evse) is None or not profile:
            continue
        if profile >= 2 and server.get("tls", "off") == "off":
            errors.append({"field": "evses[%d].security_profile" % index,
                           "error": "profile %d needs TLS: set ocpp.server.tls to detect or on" % profile})
        if profile in (1, 2) and not server.get("password"):
            errors.append({"field": "evses[%d].security_profile" % index,
                           "error": "profile %d needs the OCPP server password (ocpp.server.password)" % profile})
    smgw = clean.get("smgw") or {}
    if smgw.get("enabled"):
        if not smgw.get("address"):
            errors.append({"field": "smgw.address", "error": "the SMGW's address is needed when the SMGW is enabled"})
        if not smgw.get("trust"):
            errors.append({"field": "smgw.trust",
                           "error": "choose the SMGW certificate or CA to trust when the SMGW is enabled"})


CONFIG_SCHEMA = Object([
    Field("version", Number(minimum=1, integer=True), CONFIG_VERSION, "Version of the document layout."),
    Field("site", SITE, {}, SITE.doc),
    Field("evses", List(EVSE, max_items=1024, unique_key="dev_id"), [], "The EVSEs."),
    Field("meters", List(METER, max_items=256, unique_key="dev_id"), [], "The meters."),
    Field("ocpp", Object([Field("server", OCPP_SERVER, {}, OCPP_SERVER.doc)], "OCPP settings."), {}, "OCPP settings."),
    Field("http", HTTP, {}, HTTP.doc),
    Field("inputs", List(INPUT, max_items=64, unique_key="name"), [], "Switching inputs IN1..."),
    Field("smgw", SMGW, {}, SMGW.doc),
], "The configuration document.", check_whole=_check_document)


# Migrations: MIGRATIONS[n] turns a version-n document into version n+1.
MIGRATIONS = {}


def migrate(doc):
    """Bring an older document up to CONFIG_VERSION; returns a new dict. Newer versions are left as they are."""
    if not isinstance(doc, dict):
        return doc
    doc = dict(doc)
    version = doc.get("version", 1)
    while isinstance(version, int) and version < CONFIG_VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
        doc["version"] = version
    return doc


def validate_config(doc):
    """(clean document with defaults, list of {"field", "error"})."""
    return validate(CONFIG_SCHEMA, migrate(doc))


def default_config():
    return defaults(CONFIG_SCHEMA)
