"""OCPP 1.6 JSON-schema validation at the adapter edge, with the schemas bundled in the `ocpp` package.

Returns (failed JSON-schema keyword, message) so that `core.ocpp_session` maps it to the 1.6 error code; the `ocpp`
package's own error classes use 2.0.1 spellings and are not used. Schemas are validated with Draft 4 (their
`$schema`), floats as Decimal where the schema uses `multipleOf: 0.1` (21.4 / 0.1 is not integral in binary floating
point), and `date-time` is checked (jsonschema does not check formats by default). A date-time without a zone is
accepted: many boxes send local time (REFERENCE A4 #11); the station treats it as charger-local.

Speed: jsonschema costs ~0.9 ms for a MeterValues with 10 sampled values, paid by every wallbox message. Each
schema is therefore also compiled into a fast path that only ever says "surely valid": `schema_fast` (about 4x
faster than fastjsonschema on MeterValues) for the schemas it handles completely, fastjsonschema for the others
(the security white paper ones with `$ref`). When the fast path is not sure, jsonschema decides and names the failed
keyword, so error codes and messages come from one place. Schemas that need Decimal arithmetic (multipleOf) skip
the fast path.
"""

import decimal
import json
import os
import re

import fastjsonschema
import jsonschema
import ocpp

from chargemanager.adapters import schema_fast

_SCHEMA_DIR = os.path.join(os.path.dirname(ocpp.__file__), "v16", "schemas")
_DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$"
_DATE_TIME = re.compile(_DATE_TIME_PATTERN)
# (kind, action) pairs whose schemas use multipleOf on numbers.
_DECIMAL = {("call", "SetChargingProfile"), ("call", "RemoteStartTransaction"),
            ("result", "GetCompositeSchedule")}

_format_checker = jsonschema.FormatChecker(formats=())


@_format_checker.checks("date-time")
def _is_date_time(value):
    if not isinstance(value, str):
        return True
    return bool(_DATE_TIME.match(value))


def _raising_to_bool(validate):
    def check(payload):
        try:
            validate(payload)
            return True
        except fastjsonschema.JsonSchemaException:
            return False
    return check


class Schemas:
    """Cached Draft-4 validators for the 1.6 schemas. `validate(kind, action, payload)` -> None or (keyword, msg);
    kind "call" = request schema, "result" = response schema of `action`."""

    def __init__(self):
        self._cache = {}
        self._fast = {}

    def _validator(self, kind, action):
        key = (kind, action)
        v = self._cache.get(key, False)
        if v is False:
            name = action + ("Response" if kind == "result" else "") + ".json"
            path = os.path.join(_SCHEMA_DIR, name)
            if not os.path.exists(path):
                v = None
            else:
                with open(path, encoding="utf-8-sig") as f:
                    text = f.read()
                schema = json.loads(text, parse_float=decimal.Decimal)
                v = jsonschema.Draft4Validator(schema, format_checker=_format_checker)
                if key not in _DECIMAL:
                    plain = json.loads(text)
                    fast = schema_fast.compile_fast(plain, {"date-time": _DATE_TIME.match})
                    if fast is None:
                        fast = _raising_to_bool(fastjsonschema.compile(plain,
                                                                       formats={"date-time": _DATE_TIME_PATTERN}))
                    self._fast[key] = fast
            self._cache[key] = v
        return v

    def validate(self, kind, action, payload):
        v = self._validator(kind, action)
        if v is None:
            return None
        fast = self._fast.get((kind, action))
        if fast is not None and fast(payload):
            return None
        # Not surely valid: jsonschema decides and names the failed keyword (it may also find no error at all).
        if (kind, action) in _DECIMAL:
            payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
        err = next(iter(v.iter_errors(payload)), None)
        if err is None:
            return None
        where = "/".join(str(p) for p in err.absolute_path)
        return (err.validator, "%s%s" % (where + ": " if where else "", err.message))

    __call__ = validate

    def outgoing_ok(self, action, payload):
        """Check a CALL we are about to send (our own bug guard; used in tests and the bench)."""
        return self.validate("call", action, payload)
