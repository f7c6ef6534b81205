"""The configuration's formula fields, compiled once per configuration and evaluated every tick.

Fields that accept a number or a formula (SPEC §2): `site.max_power_w`, `site.max_current_ma`, and per EVSE
`max_current_ma` and `max_power_w`. `evaluate(lookup)` returns the numbers of this tick and, for every field whose
formula failed (unknown name, division by zero, stale device value), the message; the load management decides what
a failed limit means (a fallback), never this module. A negative result is clamped to 0 and reported, because a
negative limit has no meaning. This module is pure: no clock, no I/O.
"""

from chargemanager.core.formula import FormulaError, compile_formula, constant_formula

SITE_FORMULA_FIELDS = ("max_power_w", "max_current_ma")
EVSE_FORMULA_FIELDS = ("max_current_ma", "max_power_w")


def _compile(value):
    if value is None:
        return None
    if isinstance(value, str):
        return compile_formula(value)
    return constant_formula(value)


class ConfigFormulas:
    def __init__(self, config):
        """`config` is a validated document (formula syntax already checked by the schema)."""
        self._site = {}
        for key in SITE_FORMULA_FIELDS:
            self._site[key] = _compile(config["site"].get(key))
        self._evses = []
        for evse in config.get("evses", []):
            fields = {}
            for key in EVSE_FORMULA_FIELDS:
                fields[key] = _compile(evse.get(key))
            self._evses.append((evse["dev_id"], fields))

    def evaluate(self, lookup):
        """({"site": {key: number or None}, "evses": {dev_id: {key: number or None}}}, {"site.key": message, ...})."""
        errors = {}
        site = {}
        for key in self._site:
            site[key] = _evaluate(self._site[key], lookup, "site." + key, errors)
        evses = {}
        for dev_id, fields in self._evses:
            values = {}
            for key in fields:
                values[key] = _evaluate(fields[key], lookup, "evses.%s.%s" % (dev_id, key), errors)
            evses[dev_id] = values
        return {"site": site, "evses": evses}, errors


def _evaluate(formula, lookup, path, errors):
    if formula is None:
        return None
    try:
        value = formula.evaluate(lookup)
    except FormulaError as exc:
        errors[path] = str(exc)
        return None
    if value < 0:
        errors[path] = "negative value %s treated as 0" % value
        return 0
    return value
