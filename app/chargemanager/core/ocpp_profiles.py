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


def iso_utc(wall_ms):
    """ISO 8601 UTC with `Z` (A4 #11: emit UTC only) for Unix milliseconds."""
    secs = wall_ms // 1000
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
