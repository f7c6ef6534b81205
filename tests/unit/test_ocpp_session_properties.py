"""Property tests (hypothesis) for the OCPP-J session with the real 1.6 schemas: any text or JSON value a peer may
send never raises, gets at most one answer, every answer is a well-formed CALLRESULT/CALLERROR with a 1.6 error
code, and the session stays usable afterwards (REFERENCE A7)."""

import json

from hypothesis import given, settings, strategies as st

from chargemanager.adapters.ocpp_schemas import Schemas
from chargemanager.core.ocpp_session import ERROR_CODES, CallReceived, Session, counter_ids

SCHEMAS = Schemas()
ACTIONS = st.sampled_from(["Heartbeat", "BootNotification", "StatusNotification", "MeterValues", "Authorize",
                           "StartTransaction", "StopTransaction", "DataTransfer", "Reset", "Nope", ""])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20)
FIELDS = st.sampled_from(["connectorId", "errorCode", "status", "idTag", "meterStart", "timestamp", "transactionId",
                          "meterValue", "chargePointVendor", "chargePointModel", "vendorId", "meterStop", "x"])
PAYLOADS = st.dictionaries(FIELDS, JSON, max_size=6)
FRAMES = st.one_of(
    st.text(max_size=60),
    JSON.map(json.dumps),
    st.tuples(st.sampled_from([2, 3, 4, 0, 99, "2"]), st.text(max_size=40) | st.integers(), ACTIONS, PAYLOADS)
    .map(lambda t: json.dumps(list(t))),
    st.tuples(st.just(2), st.text(min_size=1, max_size=36), ACTIONS, PAYLOADS).map(lambda t: json.dumps(list(t))),
)


def _check_answer(text, msg_id_hint=None):
    msg = json.loads(text)
    assert isinstance(msg, list) and msg[0] in (3, 4)
    assert isinstance(msg[1], str)
    if msg[0] == 4:
        assert len(msg) == 5 and msg[2] in ERROR_CODES and isinstance(msg[3], str) and isinstance(msg[4], dict)


@settings(max_examples=300, deadline=None)
@given(FRAMES)
def test_any_frame_gets_at_most_one_wellformed_answer(frame):
    s = Session(counter_ids("p-"), validator=SCHEMAS.validate, boot_accepted=True)
    events = s.receive(frame, 0)
    for ev in events:
        if isinstance(ev, CallReceived):
            s.reply(ev.msg_id, {})
    out = s.drain()
    assert len(out) <= 1
    for text in out:
        _check_answer(text)
    events = s.receive('[2,"after","Heartbeat",{}]', 1)
    assert any(isinstance(ev, CallReceived) for ev in events)


@settings(max_examples=150, deadline=None)
@given(PAYLOADS)
def test_valid_payloads_pass_and_invalid_ones_get_a_16_code(payload):
    s = Session(counter_ids("p-"), validator=SCHEMAS.validate, boot_accepted=True)
    events = s.receive(json.dumps([2, "m", "StatusNotification", payload]), 0)
    out = s.drain()
    if events:
        assert SCHEMAS.validate("call", "StatusNotification", payload) is None and out == []
    else:
        answer = json.loads(out[0])
        assert answer[0] == 4 and answer[2] in ERROR_CODES and answer[2] not in ("FormatViolation",)
