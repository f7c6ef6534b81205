"""Charging-profile policy for OCPP 1.6 wallboxes (1.6 ed.2 §3.13, §5.16; REFERENCE A2, A4 #12-14, 2.2).

Invariants and units:
- Limits come in as integer mA per phase; `None` means "no grant from the load management yet", which installs the
  default profile with limit 0 (charging not allowed; SPEC §4).
- One TxDefaultProfile per connector with a fixed id (`PROFILE_ID_BASE + connector_id`) and a fixed stack level, so
  every new limit replaces the previous profile on the box instead of piling up (the "evcc approach", A4 #13). The
  stack level is the box's `ChargeProfileMaxStackLevel` (highest wins over foreign profiles at lower levels) or 0 for
  boxes that accept only stack level 0 (quirk `stack_level_zero`, or learnt after a rejection).
- Amperes are sent rounded down to 0.1 A (never above the grant); watts (for boxes that accept only W) are
  `voltage_v * A * phases`, rounded down to whole W.
- `Absolute` profiles start one minute in the past (so a box with a slightly late clock applies them at once, A2:
  "put startSchedule in the past when refreshing"); `Relative` is the quirk for boxes that mishandle absolute times.
- Pure: wall time comes in as `wall_ms` (Unix ms, UTC); this module never reads the clock.
"""

PROFILE_ID_BASE = 100
CAPABILITY_KEYS = ("ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit",
                   "MaxChargingProfilesInstalled")


# (seconds, text) of the last iso_utc result: a limit change formats the same second for every box. One tuple,
# replaced as a whole, so threads sharing it never see a second paired with another second's text.
_last_iso = [(None, None)]


def iso_utc(wall_ms):
    """ISO 8601 UTC with `Z` (A4 #11: emit UTC only) for Unix milliseconds."""
    secs = wall_ms // 1000
    last = _last_iso[0]
    if last[0] == secs:
        return last[1]
    text = _format_utc(secs)
    _last_iso[0] = (secs, text)
    return text


def _format_utc(secs):
    days, rem = divmod(secs, 86400)
    hh, rem = divmod(rem, 3600)
    mm, ss = divmod(rem, 60)
    # days since 1970-01-01 -> civil date (Howard Hinnant's algorithm)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, hh, mm, ss)


def _days_from_civil(y, m, d):
    # inverse of the civil-date algorithm in iso_utc (Howard Hinnant)
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + 9 if m <= 2 else m - 3) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_iso_utc(text):
    """Unix milliseconds for an OCPP dateTime (`YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)`), None if unreadable.
    A time without zone is taken as UTC (A4 #11: boxes and backends should send UTC anyway)."""
    if not isinstance(text, str) or len(text) < 19 or text[4] != "-" or text[7] != "-" or text[10] not in "Tt ":
        return None
    try:
        y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
        hh, mi, ss = int(text[11:13]), int(text[14:16]), int(text[17:19])
    except ValueError:
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 60):
        return None
    rest = text[19:]
    ms = 0
    if rest.startswith("."):
        i = 1
        while i < len(rest) and "0" <= rest[i] <= "9":
            i += 1
        frac = (rest[1:i] + "000")[:3]
        if i == 1:
            return None
        ms = int(frac)
        rest = rest[i:]
    offset_min = 0
    if rest in ("Z", "z", ""):
        pass
    elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
        try:
            offset_min = int(rest[1:3]) * 60 + int(rest[4:6])
        except ValueError:
            return None
        if rest[0] == "-":
            offset_min = -offset_min
    else:
        return None
    secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - offset_min * 60
    return secs * 1000 + ms


def parse_capabilities(get_configuration_result):
    """Capabilities from a GetConfiguration.conf payload; unknown or unreadable keys take safe defaults
    (stack level 0, unit A)."""
    caps = {"max_stack_level": 0, "units": ("A",), "max_profiles": None, "read": True}
    for item in get_configuration_result.get("configurationKey", ()):
        key, value = item.get("key"), item.get("value")
        if not isinstance(value, str):
            continue
        if key == "ChargeProfileMaxStackLevel":
            n = _int(value)
            if n is not None and n >= 0:
                caps["max_stack_level"] = n
        elif key == "ChargingScheduleAllowedChargingRateUnit":
            units = []
            for part in value.replace(";", ",").split(","):
                part = part.strip().lower()
                if part in ("current", "a") and "A" not in units:
                    units.append("A")
                elif part in ("power", "w") and "W" not in units:
                    units.append("W")
            if units:
                caps["units"] = tuple(units)
        elif key == "MaxChargingProfilesInstalled":
            caps["max_profiles"] = _int(value)
    return caps


def default_capabilities():
    """What we assume when the box does not answer GetConfiguration."""
    return {"max_stack_level": 0, "units": ("A",), "max_profiles": None, "read": False}


def _int(text):
    try:
        return int(text.strip())
    except ValueError:
        return None


def profile_for(connector_id, limit_ma, caps, opts, wall_ms):
    """(key, SetChargingProfile.req payload) for `limit_ma` on `connector_id`.

    opts: `phases` (1..3), `voltage_v`, `stack_level_zero` (bool), `unit` ("auto"|"A"|"W"),
    `profile_kind` ("Absolute"|"Relative"). `key` changes exactly when the box must be told something new."""
    limit_ma = 0 if limit_ma is None or limit_ma < 0 else int(limit_ma)
    phases = opts.get("phases", 3)
    unit = opts.get("unit", "auto")
    if unit not in ("A", "W"):
        unit = "A" if "A" in caps["units"] else "W"
    stack = 0 if opts.get("stack_level_zero") else caps["max_stack_level"]
    if unit == "A":
        limit = (limit_ma // 100) / 10
    else:
        limit = (opts.get("voltage_v", 230) * limit_ma * phases) // 1000
    kind = opts.get("profile_kind", "Absolute")
    schedule = {
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": phases}],
    }
    if kind == "Absolute":
        schedule["startSchedule"] = iso_utc(wall_ms - 60000)
    else:
        kind = "Relative"
    payload = {
        "connectorId": connector_id,
        "csChargingProfiles": {
            "chargingProfileId": PROFILE_ID_BASE + connector_id,
            "stackLevel": stack,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": kind,
            "chargingSchedule": schedule,
        },
    }
    return (unit, limit, stack, phases, kind), payload


def clear_profiles_payload():
    """ClearChargingProfile.req that removes every profile on the box (no criteria = all, 1.6 §5.5)."""
    return {}
