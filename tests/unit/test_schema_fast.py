"""The fast schema check (adapters/schema_fast.py) against jsonschema on the real OCPP 1.6 schemas: whatever it calls
valid, jsonschema calls valid too (it may only be unsure the other way), and the messages a wallbox sends all the
time take the fast path."""

import json
import os

import jsonschema
from hypothesis import given, settings, strategies as st

from chargemanager.adapters import ocpp_schemas
from chargemanager.adapters.schema_fast import compile_fast

FORMATS = {"date-time": ocpp_schemas._DATE_TIME.match}
NAMES = sorted(n[:-5] for n in os.listdir(ocpp_schemas._SCHEMA_DIR) if n.endswith(".json"))


def load(name):
    with open(os.path.join(ocpp_schemas._SCHEMA_DIR, name + ".json"), encoding="utf-8-sig") as f:
        return json.load(f)


COMPILED = dict((n, compile_fast(load(n), FORMATS)) for n in NAMES)
FAST = sorted(n for n in NAMES if COMPILED[n] is not None)
ANY = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 33, 2 ** 33) | st.floats(allow_nan=False) |
                   st.text(max_size=30), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                                               max_size=3),
                   max_leaves=6)


def near(schema):
    """Values that follow the schema most of the time and break it in one place now and then."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        fields = st.fixed_dictionaries({}, optional=dict((k, near(v)) for k, v in props.items()))
        required = st.fixed_dictionaries(dict((k, near(props.get(k, {}))) for k in schema.get("required") or ()))
        extra = st.dictionaries(st.sampled_from(["x", "connectorid", "value "]), ANY, max_size=1)
        return st.tuples(required, fields, extra, st.integers(0, 9)).map(
            lambda t: dict(t[1], **t[0]) if t[3] else dict(t[1], **dict(t[0], **t[2])))
    if kind == "array":
        item = near(schema.get("items") or {})
        return st.lists(item, max_size=4)
    if kind == "string":
        if "enum" in schema:
            base = st.sampled_from(schema["enum"])
        elif schema.get("format") == "date-time":
            base = st.sampled_from(["2026-01-01T10:00:00Z", "2026-01-01T10:00:00.5+01:00", "2026-01-01 10:00",
                                    "2026-13-01", "yesterday"])
        else:
            base = st.text(max_size=int(schema.get("maxLength", 30)) + 2)
        return base | ANY
    if kind == "integer":
        return st.integers(-5, 10 ** 6) | st.floats(-5, 5) | st.booleans()
    if kind == "number":
        return st.floats(allow_nan=False) | st.integers() | st.booleans()
    if kind == "boolean":
        return st.booleans() | st.integers(0, 1)
    return ANY


def test_all_common_actions_have_the_fast_path():
    for name in ("MeterValues", "StartTransaction", "StopTransaction", "StatusNotification", "BootNotification",
                 "Heartbeat", "Authorize", "DataTransfer", "BootNotificationResponse", "GetConfigurationResponse",
                 "SetChargingProfileResponse"):
        assert name in FAST, name


def test_a_signed_meter_value_is_surely_valid():
    payload = {"connectorId": 1, "transactionId": 7, "meterValue": [{"timestamp": "2026-01-01T10:00:00Z",
               "sampledValue": [{"value": "OCMF|{}|{}", "format": "SignedData", "context": "Sample.Periodic",
                                 "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}
    assert COMPILED["MeterValues"](payload) is True
    payload["meterValue"][0]["sampledValue"][0]["unit"] = "Wattstunden"
    assert COMPILED["MeterValues"](payload) is False


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_fast_valid_means_jsonschema_valid(data):
    name = data.draw(st.sampled_from(FAST))
    schema = load(name)
    payload = data.draw(near(schema))
    fast = COMPILED[name](payload)
    errors = list(jsonschema.Draft4Validator(schema, format_checker=ocpp_schemas._format_checker)
                  .iter_errors(payload))
    if fast:
        assert errors == [], (name, payload, errors[0].message)


def test_an_unhandled_keyword_gives_no_fast_path():
    assert compile_fast({"type": "object", "properties": {"a": {"$ref": "#/definitions/x"}}}) is None
    assert compile_fast({"type": "number", "multipleOf": 0.1}) is None
    assert compile_fast({"type": "object", "additionalProperties": {"type": "string"}}) is None
