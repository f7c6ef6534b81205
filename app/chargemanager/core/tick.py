"""One control tick of the load management: readings in, per-EVSE limits out (SPEC §1, §10; issue 3 item 4).

    decision, new_state = tick(config, values, snapshot, state, now_ms)

Invariants and units:
- Pure: no clock (`now_ms` is a monotonic time in ms passed in), no I/O, no globals; `state` is never mutated,
  a new State is returned. Runs under CPython and MicroPython.
- Currents are integer mA per phase, power integer W, voltage V. Grid phases are 0, 1, 2 inside (L1..L3).
- Safety first: per grid phase, the grants of the EVSEs we control never add up to more than
  site limit - reserve - load that is not ours (measured) - overdraft cut. Unknown is never zero: a stale or missing
  grid meter gives the configured fallback budget, a stale EVSE reading counts as 0 A of EV load (so the house
  load is over-, never under-estimated), an offline box is presumed to keep drawing its last grant, and a site
  limit formula that cannot be evaluated is replaced by the fallback budget.
- A lower limit takes effect in the same tick; a raise may be ramped (`site.ramp_ma_per_s`).
- An EVSE that the manager stopped (no room for its minimum, a rule, a limit below its minimum) stays stopped for
  `site.min_pause_s` before it may start again; one that is charging keeps its place against newcomers of the same
  priority.
- Every EVSE result names the reason that bound it (see REASONS); `send` is false in monitor mode (site or EVSE)
  and for offline boxes: the adapter then sends nothing.

Inputs:
- `config`: the validated configuration dict (`site`, `evses`, `meters`) or a Plan made from it by `prepare(config)`
  (compiles formulas and rules once; the runtime keeps one per configuration version).
- `values`: a dict name -> number (None = that value has an error) or a callable lookup(name) that raises
  `FormulaError`; variables (`AVAIL`, `TARIF`), device values (`M1.power_w`), inputs. The formula settings
  (`site.max_power_w`, `site.max_current_ma`, `evses[].max_current_ma`, `evses[].max_power_w`) and the rules are
  evaluated with it.
- `snapshot`: {"time": {"minute_of_day": 0..1439, "weekday": 1..7 (Monday = 1)},
               "meters": {"M1": {"current_ma": [l1, l2, l3], "power_w": n, "age_ms": n}},
               "evses": {"E1": {"online": bool, "wants": bool, "current_ma": [box L1, L2, L3], "power_w": n,
                                "age_ms": n}},
               "overrides": {"E1": {"current_ma": n or None, "charging": bool, "rules": bool}},
               "reset_max_overdraft": bool,
               "evse_cap_w": n or absent (§14a dimming: total power of the controlled EVSEs)}
- `state`: the State returned by the previous tick (None at start).
"""

from chargemanager.core.allocate import Demand, allocate
from chargemanager.core.formula import FormulaError, UnknownName, compile_formula
from chargemanager.core.limits import (
    box_to_grid_ma, floor_step, limit_power_to_current_ma, load_power_to_current_ma, phase_set,
    section_14a_min_power_w,
)
from chargemanager.core.rules import RuleError, compile_rules, evaluate_rules

REASONS = (
    "fuse",           # the site's maximum current per phase (a number)
    "site_power",     # the site's maximum total power (a number)
    "grid_operator",  # a site limit given by a formula (AVAIL, §14a dimming)
    "formula_error",  # a limit formula could not be evaluated: the fallback budget applies
    "reserve",        # the reserve kept free below the limit
    "meter_stale",    # the grid meter reading is missing or too old: the fallback budget applies
    "overdraft",      # the available current is cut after a measured overdraft
    "phase_skew",     # the phase imbalance limit (single- and two-phase cars)
    "evse_max",       # the EVSE's own maximum current or power
    "rule",           # a charging rule (limit, set, pause)
    "override",       # a manual override (current or charging disabled)
    "ramp",           # a raise is being ramped
    "ev_minimum",     # its minimum current did not fit: paused
    "min_pause",      # paused, waiting out the minimum pause time
    "no_demand",      # no car, or the car does not ask for current
    "offline",        # the box is not connected: nothing can be sent
    "monitor",        # the EVSE is in monitor mode: its draw is observed, nothing is sent
)

UNLIMITED_MA = 1000000

SITE_DEFAULTS = {
    "max_power_w": 11000,
    "max_current_ma": 16000,
    "reserve_w": 0,
    "voltage_v": 230,
    "phases": 3,
    "max_skew_w": 4600,
    "mode": "active",
    "min_pause_s": 300,
    "fallback_current_ma": 6000,
    "meter_max_age_ms": 10000,
    "evse_max_age_ms": 60000,
    "overdraft_delay_s": 15,
    "overdraft_hold_s": 300,
    "ramp_ma_per_s": 0,
    "current_step_ma": 100,
    "min_raise_ma": 500,
    "section_14a": False,
}

EVSE_DEFAULTS = {
    "phases": 3,
    "l1_phase": 1,
    "min_current_ma": 6000,
    "max_current_ma": 16000,
    "max_power_w": None,
    "prio": 1,
    "mode": "active",
}

# Reasons whose zero grant was the manager's decision: they start the minimum pause time.
_MANAGER_STOPS = ("fuse", "site_power", "grid_operator", "formula_error", "reserve", "meter_stale", "overdraft",
                  "phase_skew", "evse_max", "rule", "ev_minimum", "ramp")


def _get(section, defaults, key):
    value = section.get(key)
    if value is None:
        return defaults[key]
    return value


class _Setting:
    """A setting that is a number or a formula, compiled once; `key` names it in error messages."""

    def __init__(self, raw, key):
        self.key = key
        self.raw = raw
        self.formula = None
        self.error = None
        self.is_formula = isinstance(raw, str)
        if self.is_formula:
            try:
                self.formula = compile_formula(raw)
            except FormulaError as exc:
                self.error = "%s: %s" % (key, exc)

    def resolve(self, lookup):
        """(value or None, error message or None); a negative result counts as 0."""
        if self.raw is None:
            return None, None
        if not self.is_formula:
            return self.raw, None
        if self.formula is None:
            return None, self.error
        try:
            value = self.formula.evaluate(lookup)
        except FormulaError as exc:
            return None, "%s: %s" % (self.key, exc)
        return (value if value > 0 else 0), None


class EvsePlan:
    """An EVSE's configuration, prepared: phases mapped to grid phases, formulas and rules compiled."""

    def __init__(self, spec, index, site_phases, voltage_v=230):
        self.dev_id = spec["dev_id"]
        self.index = index
        self.phases = int(_get(spec, EVSE_DEFAULTS, "phases"))
        self.grid_phases = phase_set(_get(spec, EVSE_DEFAULTS, "l1_phase"), self.phases, site_phases)
        self.all_phases = len(self.grid_phases) == 3  # draws on L1, L2 and L3 (in some order)
        self.min_ma = int(_get(spec, EVSE_DEFAULTS, "min_current_ma"))
        raw_max = spec.get("max_current_ma", EVSE_DEFAULTS["max_current_ma"])
        self.max_current = _Setting(raw_max, "evses.%s.max_current_ma" % self.dev_id)
        self.max_power = _Setting(spec.get("max_power_w"), "evses.%s.max_power_w" % self.dev_id)
        self.prio = _get(spec, EVSE_DEFAULTS, "prio")
        self.monitor = _get(spec, EVSE_DEFAULTS, "mode") == "monitor"
        self.rules_error = None
        try:
            self.rules = compile_rules(spec.get("rules") or [])
        except RuleError as exc:
            self.rules = []
            self.rules_error = str(exc)
        # The EVSE's own maximum as (target_ma, reason) before rounding, when both settings are plain numbers (the
        # usual case): the tick then need not resolve them every time. None when a formula is involved.
        self.fixed_cap = None
        if not self.max_current.is_formula and not self.max_power.is_formula:
            target, reason = UNLIMITED_MA, "evse_max"
            if self.max_current.raw is not None and int(self.max_current.raw) < target:
                target = int(self.max_current.raw)
            if self.max_power.raw is not None:
                value = limit_power_to_current_ma(self.max_power.raw, voltage_v, self.phases)
                if value < target:
                    target = value
            self.fixed_cap = (target, reason)


class Plan:
    """The configuration prepared for ticking (see `prepare`)."""

    def __init__(self, config):
        site = config.get("site") or {}
        self.site = site
        self.voltage_v = int(_get(site, SITE_DEFAULTS, "voltage_v"))
        self.site_phase_count = max(1, min(3, int(_get(site, SITE_DEFAULTS, "phases"))))
        self.site_phases = tuple(range(self.site_phase_count))
        self.max_power = _Setting(site.get("max_power_w", SITE_DEFAULTS["max_power_w"]), "site.max_power_w")
        self.max_current = _Setting(site.get("max_current_ma", SITE_DEFAULTS["max_current_ma"]),
                                    "site.max_current_ma")
        self.reserve_w = _get(site, SITE_DEFAULTS, "reserve_w")
        self.max_skew_ma = limit_power_to_current_ma(_get(site, SITE_DEFAULTS, "max_skew_w"), self.voltage_v, 1)
        self.monitor = _get(site, SITE_DEFAULTS, "mode") == "monitor"
        self.min_pause_ms = int(_get(site, SITE_DEFAULTS, "min_pause_s")) * 1000
        self.fallback_ma = int(_get(site, SITE_DEFAULTS, "fallback_current_ma"))
        self.meter_max_age_ms = int(_get(site, SITE_DEFAULTS, "meter_max_age_ms"))
        self.evse_max_age_ms = int(_get(site, SITE_DEFAULTS, "evse_max_age_ms"))
        self.overdraft_delay_ms = int(_get(site, SITE_DEFAULTS, "overdraft_delay_s") * 1000)
        self.overdraft_hold_ms = int(_get(site, SITE_DEFAULTS, "overdraft_hold_s") * 1000)
        self.ramp_ma_per_s = int(_get(site, SITE_DEFAULTS, "ramp_ma_per_s"))
        self.step_ma = max(1, int(_get(site, SITE_DEFAULTS, "current_step_ma")))
        self.min_raise_ma = int(_get(site, SITE_DEFAULTS, "min_raise_ma"))
        self.evses = []
        for index, spec in enumerate(config.get("evses") or []):
            self.evses.append(EvsePlan(spec, index, self.site_phase_count, self.voltage_v))
        # §14a EnWG: a limit from the grid operator (a formula) never dims the controllable EVSEs below the legal
        # minimum; a formula that fails counts as "dimming active" and gives exactly that minimum.
        self.floor_14a_ma = None
        if _get(site, SITE_DEFAULTS, "section_14a"):
            active = len([ev for ev in self.evses if not ev.monitor])
            if active:
                self.floor_14a_ma = limit_power_to_current_ma(section_14a_min_power_w(active), self.voltage_v,
                                                              self.site_phase_count)
        self.grid_meters = []
        for meter in config.get("meters") or []:
            if meter.get("role", "grid") == "grid":
                age = meter.get("max_age_ms")
                self.grid_meters.append((meter["dev_id"], self.meter_max_age_ms if age is None else int(age)))


def prepare(config):
    """Compile a validated configuration dict into a Plan (formulas and rules compiled once)."""
    return Plan(config)


def make_lookup(values):
    """A formula lookup over `values` (dict, or already a callable). Names are tried as given, then upper case
    (variables are case-insensitive); a None value is an error."""
    if values is None:
        values = {}
    if callable(values):
        return values

    def lookup(name):
        if name in values:
            value = values[name]
        else:
            value = values.get(name.upper(), _MISSING)
            if value is _MISSING:
                raise UnknownName(name)
        if value is None:
            raise FormulaError("'%s' has no value" % name)
        return value
    return lookup


_MISSING = object()


class EvseState:
    """What the manager remembers of an EVSE between ticks."""

    def __init__(self, granted_ma=0, charging=False, paused_at_ms=None):
        self.granted_ma = granted_ma
        self.charging = charging
        self.paused_at_ms = paused_at_ms

    def to_dict(self):
        return {"granted_ma": self.granted_ma, "charging": self.charging, "paused_at_ms": self.paused_at_ms}

    @classmethod
    def from_dict(cls, d):
        return cls(d.get("granted_ma", 0), bool(d.get("charging", False)), d.get("paused_at_ms"))


class State:
    """Everything one tick hands to the next: per-EVSE state and the overdraft bookkeeping (mA per phase)."""

    def __init__(self, evses=None, last_ms=None, over_since_ms=None, cut_ma=None, cut_until_ms=None,
                 max_overdraft_ma=0, max_overdraft_at_ms=None):
        self.evses = evses if evses is not None else {}
        self.last_ms = last_ms
        self.over_since_ms = over_since_ms
        self.cut_ma = list(cut_ma) if cut_ma is not None else [0, 0, 0]
        self.cut_until_ms = cut_until_ms
        self.max_overdraft_ma = max_overdraft_ma
        self.max_overdraft_at_ms = max_overdraft_at_ms

    def to_dict(self):
        evses = {}
        for dev_id in self.evses:
            evses[dev_id] = self.evses[dev_id].to_dict()
        return {"evses": evses, "last_ms": self.last_ms, "over_since_ms": self.over_since_ms,
                "cut_ma": list(self.cut_ma), "cut_until_ms": self.cut_until_ms,
                "max_overdraft_ma": self.max_overdraft_ma, "max_overdraft_at_ms": self.max_overdraft_at_ms}

    @classmethod
    def from_dict(cls, d):
        evses = {}
        for dev_id, e in (d.get("evses") or {}).items():
            evses[dev_id] = EvseState.from_dict(e)
        return cls(evses, d.get("last_ms"), d.get("over_since_ms"), d.get("cut_ma"), d.get("cut_until_ms"),
                   d.get("max_overdraft_ma", 0), d.get("max_overdraft_at_ms"))


def reset_max_overdraft(state):
    """A copy of `state` with the recorded maximum overdraft cleared (the admin's reset)."""
    d = state.to_dict()
    d["max_overdraft_ma"] = 0
    d["max_overdraft_at_ms"] = None
    return State.from_dict(d)


class EvseDecision:
    """The result for one EVSE.

    `current_ma`: granted current per phase (0 = no charging); `phase_current_ma`: the same on grid phases L1..L3;
    `enable`: charging allowed; `reason`: what bound it (REASONS); `send`: the adapter should apply it (false in
    monitor mode or offline); `changed`: differs from the previous tick; `rule`: index of the rule that shaped it;
    `errors`: formulas or rules that could not be evaluated; `target_ma`: what it would take without the site."""

    def __init__(self, dev_id, current_ma, phase_current_ma, enable, reason, send, changed=False, rule=None,
                 errors=None, target_ma=None):
        self.dev_id = dev_id
        self.current_ma = current_ma
        self.phase_current_ma = phase_current_ma
        self.enable = enable
        self.reason = reason
        self.send = send
        self.changed = changed
        self.rule = rule
        self.errors = errors if errors is not None else []
        self.target_ma = target_ma

    def to_dict(self):
        return {"dev_id": self.dev_id, "current_ma": self.current_ma,
                "phase_current_ma": list(self.phase_current_ma), "enable": self.enable, "reason": self.reason,
                "send": self.send, "changed": self.changed, "rule": self.rule, "errors": list(self.errors),
                "target_ma": self.target_ma}

    @classmethod
    def from_dict(cls, d):
        return cls(d["dev_id"], d["current_ma"], d.get("phase_current_ma", [0, 0, 0]), d["enable"], d["reason"],
                   d["send"], d.get("changed", False), d.get("rule"), d.get("errors"), d.get("target_ma"))


class SiteFigures:
    """Site-wide figures of a tick (per-phase values are lists of three mA values); read with `get(name)`.

    Keys: mode, send, limit_ma, limit_reason, reserve_ma, grid_ma, house_ma, meter_stale, uncontrolled_ma,
    available_ma, allocated_ma, overdraft_ma, overdraft_cut_ma, overdraft_until_ms, max_overdraft_ma,
    max_overdraft_at_ms."""

    def __init__(self, fields):
        self.fields = fields

    def get(self, name):
        return self.fields.get(name)

    def to_dict(self):
        out = {}
        for key in self.fields:
            value = self.fields[key]
            out[key] = list(value) if isinstance(value, list) else value
        return out

    @classmethod
    def from_dict(cls, d):
        return cls(dict(d))


class Decision:
    """`site`: SiteFigures; `evses`: {dev_id: EvseDecision} in configuration order; `errors`: site messages."""

    def __init__(self, site, evses, errors=None):
        self.site = site
        self.evses = evses
        self.errors = errors if errors is not None else []

    def to_dict(self):
        evses = {}
        for dev_id in self.evses:
            evses[dev_id] = self.evses[dev_id].to_dict()
        return {"site": self.site.to_dict(), "evses": evses, "errors": list(self.errors)}

    @classmethod
    def from_dict(cls, d):
        evses = {}
        for dev_id, e in (d.get("evses") or {}).items():
            evses[dev_id] = EvseDecision.from_dict(e)
        return cls(SiteFigures.from_dict(d.get("site") or {}), evses, d.get("errors"))


def _phase_currents(quantities):
    values = [quantities.get("current_l1_ma"), quantities.get("current_l2_ma"), quantities.get("current_l3_ma")]
    if values[0] is None:
        return None
    return values


def snapshot_from_readings(plan, readings, now_ms, minute_of_day=None, weekday=None, overrides=None,
                           reset_max_overdraft=False):
    """Build a tick snapshot from the ReadingBoard's `{dev_id: (quantities, taken_ms, max_age_ms)}`.

    Meter quantities: `current_l1_ma`.. `current_l3_ma` and/or `power_w`. EVSE quantities: the same, plus
    `online`, `wants` (true when a car is connected and may charge) and optionally `meter_age_ms` (how old the
    currents already were when published; added to the reading's age). A grid meter that lacks a phase's current
    is read by its power instead, so a missing value never becomes 0 A."""
    meters = {}
    for dev_id, _ in plan.grid_meters:
        entry = readings.get(dev_id)
        if entry is None:
            continue
        quantities, taken_ms, _ = entry
        currents = _phase_currents(quantities)
        if currents is not None and None in currents[:plan.site_phase_count]:
            currents = None
        meters[dev_id] = {"current_ma": currents, "power_w": quantities.get("power_w"),
                          "age_ms": now_ms - taken_ms}
    evses = {}
    for ev in plan.evses:
        entry = readings.get(ev.dev_id)
        if entry is None:
            continue
        quantities, taken_ms, _ = entry
        get = quantities.get
        age_ms = now_ms - taken_ms
        meter_age_ms = get("meter_age_ms")
        if meter_age_ms is not None:
            age_ms += meter_age_ms
        l1 = get("current_l1_ma")
        evses[ev.dev_id] = {"online": bool(get("online", True)), "wants": bool(get("wants")),
                            "current_ma": None if l1 is None else [l1, get("current_l2_ma"), get("current_l3_ma")],
                            "power_w": get("power_w"), "age_ms": age_ms}
    return {"time": {"minute_of_day": minute_of_day, "weekday": weekday}, "meters": meters, "evses": evses,
            "overrides": overrides or {}, "reset_max_overdraft": reset_max_overdraft}


# OCPP 1.6 ChargePointStatus values in which a car is plugged in and may take current. SuspendedEVSE is the box
# waiting for us (our default profile allows 0 A): leaving it out would keep every new car at 0 A for ever.
OCPP_WANTS_STATUSES = ("Preparing", "Charging", "SuspendedEVSE", "SuspendedEV")


def quantities_from_ocpp_state(state):
    """ReadingBoard quantities for an OCPP EVSE from the OCPP server's per-EVSE state dict (`connected`, `booted`,
    `status`, `current_ma` [box L1, L2, L3], `power_w`, `energy_wh`, `meter_age_ms`).

    Online once connected and booted; wanting current in OCPP_WANTS_STATUSES. The meter values carry their own age
    (`meter_age_ms`, added to the reading's age by snapshot_from_readings); without any, no draw is known."""
    age = state.get("meter_age_ms")
    quantities = {"online": bool(state.get("connected")) and state.get("booted", True) is not False,
                  "wants": state.get("status") in OCPP_WANTS_STATUSES, "state": state.get("status"),
                  "energy_wh": state.get("energy_wh")}
    currents = state.get("current_ma")
    if age is not None:
        quantities["meter_age_ms"] = age
        quantities["power_w"] = state.get("power_w")
        if currents:
            for k in range(min(3, len(currents))):
                quantities["current_l%d_ma" % (k + 1)] = currents[k]
    return quantities


def _reading_grid_ma(reading, grid_phases, voltage_v):
    """A reading's current on grid phases (three mA values): per-phase currents, or power spread evenly."""
    currents = reading.get("current_ma")
    if currents:
        return box_to_grid_ma(currents, grid_phases)
    power = reading.get("power_w")
    grid = [0, 0, 0]
    if power is not None and power > 0:
        per_phase = load_power_to_current_ma(power, voltage_v, len(grid_phases))
        for p in grid_phases:
            grid[p] += per_phase
    return grid


def _above(value, floor):
    return value if floor is None or value >= floor else floor


_NO_OVERRIDE = {}     # shared, never written to
_ZERO_MA = (0, 0, 0)  # the draw of an EVSE without a fresh reading (shared, never written to)


def _add(total, part):
    for p in range(3):
        total[p] += part[p]


def tick(config, values, snapshot, state, now_ms):
    """One load-management tick -> (Decision, new State). See the module docstring for the shapes."""
    plan = config if isinstance(config, Plan) else Plan(config)
    snapshot = snapshot or {}
    if state is None:
        state = State()
    elif isinstance(state, dict):
        state = State.from_dict(state)
    lookup = make_lookup(values)
    site_errors = []
    nphases = plan.site_phase_count
    site_phases = plan.site_phases
    voltage = plan.voltage_v

    # 1. Site limit per phase, and the reason for it.
    floor_ma = plan.floor_14a_ma
    failed_ma = plan.fallback_ma if floor_ma is None else floor_ma
    candidates = []
    current_value, error = plan.max_current.resolve(lookup)
    if error:
        site_errors.append(error)
        candidates.append((failed_ma, "formula_error"))
    elif current_value is not None:
        if plan.max_current.is_formula:
            candidates.append((_above(int(current_value), floor_ma), "grid_operator"))
        else:
            candidates.append((int(current_value), "fuse"))
    power_value, error = plan.max_power.resolve(lookup)
    if error:
        site_errors.append(error)
        candidates.append((failed_ma, "formula_error"))
    elif power_value is not None:
        power_ma = limit_power_to_current_ma(power_value, voltage, nphases)
        if plan.max_power.is_formula:
            candidates.append((_above(power_ma, floor_ma), "grid_operator"))
        else:
            candidates.append((power_ma, "site_power"))
    if not candidates:
        candidates.append((plan.fallback_ma, "formula_error"))
    limit_one, limit_reason = candidates[0]
    for value, reason in candidates[1:]:
        if value < limit_one:
            limit_one, limit_reason = value, reason
    limit_one = max(0, limit_one)
    limit_ma = [limit_one if p < nphases else 0 for p in range(3)]
    reserve_one = load_power_to_current_ma(plan.reserve_w, voltage, nphases)
    reserve_ma = [reserve_one if p < nphases else 0 for p in range(3)]

    # 2. What the EVSEs draw, and what is not ours to control (monitored and offline boxes).
    readings = snapshot.get("evses") or {}
    overrides = snapshot.get("overrides") or {}
    controlled_draw = [0, 0, 0]
    all_draw = [0, 0, 0]
    uncontrolled = [0, 0, 0]
    draws = {}
    evse_max_age_ms = plan.evse_max_age_ms
    for ev in plan.evses:
        reading = readings.get(ev.dev_id)
        online = reading is not None and reading.get("online", True) is not False
        if online and reading.get("age_ms", 0) <= evse_max_age_ms:
            draw = _reading_grid_ma(reading, ev.grid_phases, voltage)
            all_draw[0] += draw[0]
            all_draw[1] += draw[1]
            all_draw[2] += draw[2]
        else:
            draw = _ZERO_MA
        draws[ev.dev_id] = draw
        if not online:
            previous = state.evses.get(ev.dev_id)
            presumed = previous.granted_ma if previous is not None else 0
            for p in ev.grid_phases:
                uncontrolled[p] += presumed
        elif ev.monitor:
            _add(uncontrolled, draw)
        else:
            controlled_draw[0] += draw[0]
            controlled_draw[1] += draw[1]
            controlled_draw[2] += draw[2]

    # 3. The grid meter: house load that is not EV charging, or the fallback when it is stale.
    grid_ma = None
    meter_stale = False
    if plan.grid_meters:
        meters = snapshot.get("meters") or {}
        grid_ma = [0, 0, 0]
        for dev_id, max_age_ms in plan.grid_meters:
            reading = meters.get(dev_id)
            if reading is None or reading.get("age_ms", 0) > max_age_ms or (
                    not reading.get("current_ma") and reading.get("power_w") is None):
                meter_stale = True
                break
            _add(grid_ma, _reading_grid_ma(reading, site_phases, voltage))
        if meter_stale:
            grid_ma = None
            site_errors.append("grid meter reading missing or older than its limit: fallback budget")

    house_ma = None
    available = [0, 0, 0]
    phase_reason = [limit_reason, limit_reason, limit_reason]
    if grid_ma is not None:
        house_ma = [max(0, grid_ma[p] - controlled_draw[p]) if p < nphases else 0 for p in range(3)]
        measured = grid_ma
        for p in site_phases:
            available[p] = limit_ma[p] - reserve_ma[p] - house_ma[p]
    elif meter_stale:
        measured = None
        for p in site_phases:
            room = limit_ma[p] - reserve_ma[p]
            if plan.fallback_ma < room:
                room = plan.fallback_ma
                phase_reason[p] = "meter_stale"
            available[p] = room - uncontrolled[p]
    else:
        measured = all_draw
        for p in site_phases:
            available[p] = limit_ma[p] - reserve_ma[p] - uncontrolled[p]

    # 4. Overdraft: measured draw above limit - reserve, held for overdraft_delay_s, cuts for overdraft_hold_s.
    over_ma = [0, 0, 0]
    over_since = state.over_since_ms
    cut_ma = list(state.cut_ma)
    cut_until = state.cut_until_ms
    max_over = 0 if snapshot.get("reset_max_overdraft") else state.max_overdraft_ma
    max_over_at = None if snapshot.get("reset_max_overdraft") else state.max_overdraft_at_ms
    if cut_until is not None and now_ms >= cut_until:
        cut_ma = [0, 0, 0]
        cut_until = None
    if measured is not None:
        for p in site_phases:
            over_ma[p] = max(0, measured[p] - (limit_ma[p] - reserve_ma[p]))
    if max(over_ma) > 0:
        if over_since is None:
            over_since = now_ms
        if now_ms - over_since >= plan.overdraft_delay_ms:
            for p in range(3):
                if over_ma[p] > cut_ma[p]:
                    cut_ma[p] = over_ma[p]
            cut_until = now_ms + plan.overdraft_hold_ms
            if max(over_ma) > max_over:
                max_over = max(over_ma)
                max_over_at = now_ms
    else:
        over_since = None
    if cut_until is not None:
        for p in site_phases:
            if cut_ma[p] > 0:
                available[p] -= cut_ma[p]
                phase_reason[p] = "overdraft"

    # 4b. §14a dimming: the controlled EVSEs together get at most `evse_cap_w` (core/gridcontrol.py), spread
    # evenly over the site's phases so that the total can never exceed it.
    evse_cap_w = snapshot.get("evse_cap_w")
    if evse_cap_w is not None:
        cap_one = limit_power_to_current_ma(evse_cap_w, voltage, nphases)
        for p in site_phases:
            if cap_one < available[p]:
                available[p] = cap_one
                phase_reason[p] = "grid_operator"

    # 5. What each controlled EVSE asks for.
    tick_ms = 0 if state.last_ms is None else max(0, now_ms - state.last_ms)
    time_in = snapshot.get("time") or {}
    minute = time_in.get("minute_of_day")
    weekday = time_in.get("weekday")
    step_ma = plan.step_ma
    demands = []
    fixed = {}     # dev_id -> (current_ma, reason) decided without the allocation
    extras = {}    # dev_id -> (rule index, errors, target_ma)
    for ev in plan.evses:
        reading = readings.get(ev.dev_id)
        previous = state.evses.get(ev.dev_id) or EvseState()
        errors = []
        if ev.rules_error:
            errors.append(ev.rules_error)
        if reading is None or reading.get("online", True) is False:
            fixed[ev.dev_id] = (0, "offline")
            extras[ev.dev_id] = (None, errors, None)
            continue
        if ev.monitor:
            draw = draws[ev.dev_id]
            fixed[ev.dev_id] = (max([draw[p] for p in ev.grid_phases]), "monitor")
            extras[ev.dev_id] = (None, errors, None)
            continue
        override = overrides.get(ev.dev_id) or _NO_OVERRIDE
        # The target is the least of the caps below, taken in this order (the first of equal ones names the reason).
        if ev.fixed_cap is not None:
            target, target_reason = ev.fixed_cap
        else:
            target, target_reason = UNLIMITED_MA, "evse_max"
            value, error = ev.max_current.resolve(lookup)
            if error:
                errors.append(error)
                if ev.min_ma < target:
                    target, target_reason = ev.min_ma, "formula_error"
            elif value is not None and int(value) < target:
                target, target_reason = int(value), "evse_max"
            value, error = ev.max_power.resolve(lookup)
            if error:
                errors.append(error)
                if ev.min_ma < target:
                    target, target_reason = ev.min_ma, "formula_error"
            elif value is not None:
                value = limit_power_to_current_ma(value, voltage, ev.phases)
                if value < target:
                    target, target_reason = value, "evse_max"
        rule_index = None
        rule_paused = False
        if ev.rules and override.get("rules", True) is not False:
            result = evaluate_rules(ev.rules, lookup, minute, weekday, voltage, ev.phases)
            errors.extend(result.errors)
            rule_index = result.rule
            rule_paused = result.paused
            if result.limit_ma is not None and result.limit_ma < target:
                target, target_reason = result.limit_ma, "rule"
        if override.get("current_ma") is not None and int(override["current_ma"]) < target:
            target, target_reason = int(override["current_ma"]), "override"
        if plan.ramp_ma_per_s > 0:
            if previous.charging:
                value = previous.granted_ma + plan.ramp_ma_per_s * tick_ms // 1000
            else:
                value = ev.min_ma
            if value < target:
                target, target_reason = value, "ramp"
        target = floor_step(target, step_ma)
        extras[ev.dev_id] = (rule_index, errors, target)
        if override.get("charging", True) is False:
            fixed[ev.dev_id] = (0, "override")
        elif rule_paused:
            fixed[ev.dev_id] = (0, "rule")
        elif not reading.get("wants", False):
            fixed[ev.dev_id] = (0, "no_demand")
        elif (not previous.charging and previous.paused_at_ms is not None
              and now_ms - previous.paused_at_ms < plan.min_pause_ms):
            fixed[ev.dev_id] = (0, "min_pause")
        else:
            demands.append(Demand(ev.dev_id, ev.grid_phases, ev.min_ma, target, target_reason, ev.prio,
                                  previous.charging, ev.index))

    # 6. Share.
    grants = allocate(demands, available, phase_reason, plan.max_skew_ma, plan.step_ma, uncontrolled, site_phases)

    # Small rises wait until they are worth a new profile. This only ever lowers a grant, and only of boxes on every
    # site phase (lowering a single-phase box could deepen the phase imbalance), so every bound still holds.
    if plan.min_raise_ma > 0:
        for d in demands:
            previous = state.evses.get(d.dev_id)
            g = grants[d.dev_id]
            if (previous is not None and previous.charging and g.reason != "ramp"
                    and len(d.phases) == nphases):
                if 0 < g.current_ma - previous.granted_ma < plan.min_raise_ma:
                    g.current_ma = previous.granted_ma

    # The reserve is named when it alone keeps the EVSEs on a phase below their targets.
    if reserve_one > 0:
        shortfall = [0, 0, 0]
        for d in demands:
            g = grants[d.dev_id]
            if g.current_ma > 0 and g.reason in phase_reason:
                for p in d.phases:
                    shortfall[p] += d.target_ma - g.current_ma
        for d in demands:
            g = grants[d.dev_id]
            if g.current_ma > 0 and g.reason == limit_reason and g.reason in phase_reason:
                if all(0 < shortfall[p] <= reserve_ma[p] for p in d.phases):
                    g.reason = "reserve"

    # 7. Decisions and the next state.
    evse_decisions = {}
    new_evses = {}
    allocated = [0, 0, 0]
    site_sends = not plan.monitor
    for ev in plan.evses:
        dev_id = ev.dev_id
        previous = state.evses.get(dev_id) or EvseState()
        decided = fixed.get(dev_id)
        if decided is not None:
            current, reason = decided
        else:
            grant = grants[dev_id]
            current, reason = grant.current_ma, grant.reason
        rule_index, errors, target = extras[dev_id]
        if ev.all_phases:
            phase_current = [current, current, current]
        else:
            phase_current = [0, 0, 0]
            for p in ev.grid_phases:
                phase_current[p] = current
        if reason == "offline":
            new_evses[dev_id] = previous
            send = False
            changed = False
        else:
            charging = current > 0
            paused_at = previous.paused_at_ms
            if charging:
                paused_at = None
            elif previous.charging and reason in _MANAGER_STOPS:
                paused_at = now_ms
            if ev.monitor:
                new_evses[dev_id] = EvseState(0, False, None)
            else:
                new_evses[dev_id] = EvseState(current, charging, paused_at)
                allocated[0] += phase_current[0]
                allocated[1] += phase_current[1]
                allocated[2] += phase_current[2]
            send = site_sends and not ev.monitor
            changed = current != previous.granted_ma or charging != previous.charging
        evse_decisions[dev_id] = EvseDecision(dev_id, current, phase_current, current > 0, reason, send,
                                              changed, rule_index, errors, target)

    site = SiteFigures(dict(
        mode="monitor" if plan.monitor else "active",
        send=not plan.monitor,
        limit_ma=limit_ma,
        limit_reason=limit_reason,
        reserve_ma=reserve_ma,
        grid_ma=grid_ma,
        house_ma=house_ma,
        meter_stale=meter_stale,
        uncontrolled_ma=uncontrolled,
        available_ma=[max(0, a) for a in available],
        allocated_ma=allocated,
        overdraft_ma=over_ma,
        overdraft_cut_ma=cut_ma if cut_until is not None else [0, 0, 0],
        overdraft_until_ms=cut_until,
        max_overdraft_ma=max_over,
        max_overdraft_at_ms=max_over_at,
    ))
    new_state = State(new_evses, now_ms, over_since, cut_ma if cut_until is not None else [0, 0, 0], cut_until,
                      max_over, max_over_at)
    return Decision(site, evse_decisions, site_errors), new_state
