"""Per-EVSE charging rules on variables and time (SPEC §2 TARIF, issue 3 item 6).

A rule is a dict (validated by `core/config.py`):
    {"enabled": true, "condition": "TARIF == 1", "time": {"from": "22:00", "to": "06:00", "weekdays": [1, 2]},
     "action": "set" | "limit" | "pause", "current_ma": 10000 or formula, "power_w": 3700 or formula,
     "stop": false}
- A rule applies when its condition formula is true (non-zero) AND the time of day lies in its window on one of
  its weekdays; a missing part counts as true. A window whose `to` is not after `from` runs past midnight and
  belongs to the weekday on which it started; `from` == `to` is the whole day. Weekdays: 1 = Monday … 7 = Sunday
  (as the formula name `TIME.weekday`).
- Rules are evaluated in order. `set` replaces the limit that earlier rules set, `limit` lowers it (never raises
  it), `pause` forbids charging (a later `set` may allow it again). With `stop`, no further rule is evaluated once
  this one applied. The EVSE's own maximum and the site limits still bound whatever a rule sets.
- `current_ma` and `power_w` may both be given: the lower of the two binds; power is converted with the EVSE's
  phases and the site voltage (rounded down).
- A condition or value that cannot be evaluated (unknown name, division by zero…) makes that rule not apply; the
  error is reported, the tick goes on.
Units: mA per phase, W, minutes of the day (0..1439). This module never reads the clock: the caller passes the
local time of day and weekday.
"""

from chargemanager.core.formula import FormulaError, compile_formula
from chargemanager.core.limits import limit_power_to_current_ma

ACTIONS = ("set", "limit", "pause")


class RuleError(Exception):
    """A rule that cannot be compiled: `index` in the list and a message."""

    def __init__(self, message, index=None):
        super().__init__(message)
        self.message = message
        self.index = index

    def __str__(self):
        if self.index is None:
            return self.message
        return "rule %d: %s" % (self.index, self.message)


def parse_hhmm(text):
    """'HH:MM' (or minutes as a number) -> minute of the day 0..1440; raises ValueError."""
    if isinstance(text, bool):
        raise ValueError("time must be 'HH:MM'")
    if isinstance(text, int):
        minute = text
    elif isinstance(text, str):
        parts = text.strip().split(":")
        if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
            raise ValueError("time %r must be 'HH:MM'" % text)
        hours = int(parts[0])
        minutes = int(parts[1])
        if minutes > 59:
            raise ValueError("time %r: minutes must be 00..59" % text)
        minute = hours * 60 + minutes
    else:
        raise ValueError("time must be 'HH:MM'")
    if minute < 0 or minute > 1440:
        raise ValueError("time %r outside 00:00..24:00" % (text,))
    return minute


def _compile_value(value, what):
    if value is None:
        return None
    if isinstance(value, bool):
        raise RuleError("%s must be a number or a formula" % what)
    if isinstance(value, (int, float)):
        if value < 0:
            raise RuleError("%s must not be negative" % what)
        return value
    if isinstance(value, str):
        try:
            return compile_formula(value)
        except FormulaError as exc:
            raise RuleError("%s: %s" % (what, exc))
    raise RuleError("%s must be a number or a formula" % what)


class Rule:
    """One compiled rule (see the module docstring for the fields)."""

    def __init__(self, spec, index=None):
        if not isinstance(spec, dict):
            raise RuleError("must be an object", index)
        try:
            self._init(spec)
        except RuleError as exc:
            exc.index = index
            raise

    def _init(self, spec):
        self.enabled = spec.get("enabled", True) is not False
        self.action = spec.get("action", "limit")
        if self.action not in ACTIONS:
            raise RuleError("action must be one of %s" % ", ".join(ACTIONS))
        self.stop = bool(spec.get("stop", False))
        condition = spec.get("condition") or ""
        if not isinstance(condition, str):
            raise RuleError("condition must be a formula string")
        self.condition_text = condition
        self.condition = None
        if condition.strip():
            try:
                self.condition = compile_formula(condition)
            except FormulaError as exc:
                raise RuleError("condition: %s" % exc)
        self.window = None
        window = spec.get("time")
        if window:
            if not isinstance(window, dict):
                raise RuleError("time must be an object with from, to, weekdays")
            try:
                start = parse_hhmm(window.get("from", "00:00"))
                end = parse_hhmm(window.get("to", "24:00"))
            except ValueError as exc:
                raise RuleError("time: %s" % exc)
            weekdays = window.get("weekdays")
            if weekdays is None or weekdays == []:
                days = None
            else:
                if not isinstance(weekdays, list):
                    raise RuleError("time.weekdays must be a list of 1 (Monday) .. 7 (Sunday)")
                days = []
                for day in weekdays:
                    if isinstance(day, bool) or not isinstance(day, int) or day < 1 or day > 7:
                        raise RuleError("time.weekdays must be a list of 1 (Monday) .. 7 (Sunday)")
                    days.append(day)
            self.window = (start, end, days)
        self.current_ma = _compile_value(spec.get("current_ma"), "current_ma")
        self.power_w = _compile_value(spec.get("power_w"), "power_w")
        if self.action in ("set", "limit") and self.current_ma is None and self.power_w is None:
            raise RuleError("action %s needs current_ma or power_w" % self.action)

    def in_window(self, minute, weekday):
        """True when (minute of day, weekday) lies in the window; raises ValueError without a time."""
        if self.window is None:
            return True
        if minute is None or weekday is None:
            raise ValueError("no time of day given")
        start, end, days = self.window
        if start == end or (start == 0 and end >= 1440):
            return days is None or weekday in days
        if start < end:
            return start <= minute < end and (days is None or weekday in days)
        # Past midnight: the early part belongs to the day before.
        if minute >= start:
            return days is None or weekday in days
        if minute < end:
            return days is None or (weekday - 1 if weekday > 1 else 7) in days
        return False


def compile_rules(specs):
    """Compile a list of rule dicts; raises RuleError naming the first bad rule."""
    rules = []
    for index, spec in enumerate(specs or []):
        rules.append(Rule(spec, index))
    return rules


class RuleResult:
    """Outcome of evaluating an EVSE's rules.

    `limit_ma`: current per phase the rules allow (None: rules set nothing), `paused`: a rule forbids charging,
    `rule`: index of the last rule that changed the outcome (None: none), `errors`: messages of rules that could
    not be evaluated."""

    def __init__(self):
        self.limit_ma = None
        self.paused = False
        self.rule = None
        self.errors = []

    def to_dict(self):
        return {"limit_ma": self.limit_ma, "paused": self.paused, "rule": self.rule, "errors": list(self.errors)}


def _value(value, lookup):
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return value
    return value.evaluate(lookup)


def evaluate_rules(rules, lookup, minute, weekday, voltage_v, phases):
    """Evaluate compiled `rules` in order -> RuleResult.

    `lookup(name)` resolves formula names (raises FormulaError); `minute`: local minute of the day, `weekday`:
    1 = Monday … 7 = Sunday; `voltage_v`, `phases`: to convert `power_w` into mA per phase."""
    result = RuleResult()
    for index, rule in enumerate(rules):
        if not rule.enabled:
            continue
        try:
            if not rule.in_window(minute, weekday):
                continue
            if rule.condition is not None and not rule.condition.evaluate(lookup):
                continue
            limit = None
            if rule.action != "pause":
                current = _value(rule.current_ma, lookup)
                power = _value(rule.power_w, lookup)
                if current is not None:
                    limit = max(0, int(current))
                if power is not None:
                    from_power = limit_power_to_current_ma(power, voltage_v, phases)
                    if limit is None or from_power < limit:
                        limit = from_power
        except (FormulaError, ValueError) as exc:
            result.errors.append("rule %d: %s" % (index, exc))
            continue
        if rule.action == "pause":
            result.paused = True
        elif rule.action == "set":
            result.paused = False
            result.limit_ma = limit
        elif result.limit_ma is None or limit < result.limit_ma:
            result.limit_ma = limit
        result.rule = index
        if rule.stop:
            break
    return result
