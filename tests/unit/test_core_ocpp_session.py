# OCPP-J session: framing, CALLERROR codes for bad input (REFERENCE A2, A7), gating, queueing, timeouts.
# Plain asserts only: this file also runs under MicroPython.
import json

from chargemanager.core.ocpp_session import (
    CallFailed, CallReceived, ResultReceived, Session, Violation, counter_ids, error_code_for_keyword)


def _session(**kw):
    return Session(counter_ids("t-"), **kw)


def _booted(**kw):
    s = _session(boot_accepted=True, **kw)
    return s


def _sent(s):
    return [json.loads(t) for t in s.drain()]


def _one_error(s, text):
    events = s.receive(text, 0)
    out = _sent(s)
    assert len(out) == 1, out
    assert out[0][0] == 4, out
    return out[0], events


def test_non_json_is_formation_violation():
    err, _ = _one_error(_booted(), "{not json")
    assert err[1] == "-1" and err[2] == "FormationViolation"


def test_not_an_array_is_formation_violation():
    err, _ = _one_error(_booted(), '{"a": 1}')
    assert err[1] == "-1" and err[2] == "FormationViolation"


def test_empty_array_is_formation_violation():
    err, _ = _one_error(_booted(), "[]")
    assert err[2] == "FormationViolation"


def test_message_type_not_integer():
    err, _ = _one_error(_booted(), '["2", "1", "Heartbeat", {}]')
    assert err[2] == "FormationViolation"


def test_call_with_three_elements():
    err, _ = _one_error(_booted(), '[2, "a1", "Heartbeat"]')
    assert err[1] == "a1" and err[2] == "FormationViolation"


def test_call_with_five_elements():
    err, _ = _one_error(_booted(), '[2, "a1", "Heartbeat", {}, {}]')
    assert err[1] == "a1" and err[2] == "FormationViolation"


def test_call_id_not_a_string():
    err, _ = _one_error(_booted(), '[2, 17, "Heartbeat", {}]')
    assert err[1] == "-1" and err[2] == "FormationViolation"


def test_call_id_longer_than_36():
    long_id = "x" * 37
    err, _ = _one_error(_booted(), json.dumps([2, long_id, "Heartbeat", {}]))
    assert err[1] == long_id and err[2] == "FormationViolation"


def test_call_id_of_36_is_accepted():
    s = _booted()
    events = s.receive(json.dumps([2, "y" * 36, "Heartbeat", {}]), 0)
    assert len(events) == 1 and isinstance(events[0], CallReceived)


def test_payload_null_is_formation_violation():
    err, _ = _one_error(_booted(), '[2, "a1", "Heartbeat", null]')
    assert err[2] == "FormationViolation" and err[1] == "a1"


def test_payload_array_is_formation_violation():
    err, _ = _one_error(_booted(), '[2, "a1", "Heartbeat", []]')
    assert err[2] == "FormationViolation"


def test_action_not_a_string():
    err, _ = _one_error(_booted(), '[2, "a1", 5, {}]')
    assert err[2] == "FormationViolation"


def test_unknown_message_type_ignored():
    for kind in (0, 1, 5, 99):
        s = _booted()
        events = s.receive(json.dumps([kind, "a1", "Heartbeat", {}]), 0)
        assert s.drain() == []
        assert len(events) == 1 and isinstance(events[0], Violation)


def test_unknown_action_not_implemented():
    err, _ = _one_error(_booted(), '[2, "a1", "MakeCoffee", {}]')
    assert err[2] == "NotImplemented" and err[1] == "a1"
    assert err[3] != "" and err[4] == {}


def test_security_error_before_boot():
    s = _session()
    err, events = _one_error(s, '[2, "a1", "Heartbeat", {}]')
    assert err[2] == "SecurityError" and events == []


def test_boot_accepted_opens_the_gate():
    s = _session()
    events = s.receive('[2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]', 0)
    assert isinstance(events[0], CallReceived)
    assert not s.boot_accepted
    s.reply("b1", {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60})
    assert s.boot_accepted
    assert _sent(s)[0][:2] == [3, "b1"]
    events = s.receive('[2, "h1", "Heartbeat", {}]', 0)
    assert isinstance(events[0], CallReceived)


def test_boot_rejected_keeps_the_gate_closed():
    s = _session()
    s.receive('[2, "b1", "BootNotification", {}]', 0)
    s.reply("b1", {"status": "Rejected", "currentTime": "2026-01-01T00:00:00Z", "interval": 60})
    s.drain()
    err, _ = _one_error(s, '[2, "h1", "Heartbeat", {}]')
    assert err[2] == "SecurityError"


def test_stop_transaction_is_processed_before_boot():
    # 1.6 §4.10: StopTransaction is always answered; a SecurityError would make the box retry and drop the record.
    s = _session()
    events = s.receive('[2, "s1", "StopTransaction", {"transactionId": 1, "meterStop": 5, '
                       '"timestamp": "2026-01-01T00:00:00Z"}]', 0)
    assert isinstance(events[0], CallReceived) and events[0].action == "StopTransaction"


def test_cp_role_is_not_gated():
    s = _session(role="cp")
    events = s.receive('[2, "r1", "Reset", {"type": "Soft"}]', 0)
    assert isinstance(events[0], CallReceived)


def test_validator_failure_maps_to_16_code():
    def validator(kind, action, payload):
        if "bad" in payload:
            return ("required", "'x' is a required property")
        return None
    s = _session(validator=validator, boot_accepted=True)
    err, _ = _one_error(s, '[2, "a1", "Heartbeat", {"bad": 1}]')
    assert err[2] == "ProtocolError" and "required" in err[3]
    events = s.receive('[2, "a2", "Heartbeat", {}]', 0)
    assert isinstance(events[0], CallReceived)


def test_keyword_codes():
    # one row per JSON-schema keyword; 1.6 spellings (OCPP-J Table 7, errata 5.1/5.2)
    rows = (
        ("type", "TypeConstraintViolation"),
        ("maxLength", "TypeConstraintViolation"),
        ("required", "ProtocolError"),
        ("additionalProperties", "FormationViolation"),
        ("minItems", "OccurenceConstraintViolation"),
        ("enum", "PropertyConstraintViolation"),
        ("multipleOf", "PropertyConstraintViolation"),
        ("format", "PropertyConstraintViolation"),
        ("somethingNew", "FormationViolation"),
    )
    for keyword, code in rows:
        assert error_code_for_keyword(keyword) == code, keyword


def test_duplicate_pending_call_id_dropped():
    s = _booted()
    s.receive('[2, "d1", "Heartbeat", {}]', 0)
    events = s.receive('[2, "d1", "Heartbeat", {}]', 0)
    assert isinstance(events[0], Violation) and s.drain() == []
    assert s.reply("d1", {"currentTime": "2026-01-01T00:00:00Z"})
    assert not s.reply("d1", {})


def test_one_outstanding_call_and_queue():
    s = _booted()
    s.call("GetConfiguration", {"key": ["A"]}, 0, ref="r1")
    s.call("SetChargingProfile", {"connectorId": 1}, 0, ref="r2")
    out = _sent(s)
    assert len(out) == 1 and out[0][0] == 2 and out[0][2] == "GetConfiguration"
    first_id = out[0][1]
    events = s.receive(json.dumps([3, first_id, {"configurationKey": []}]), 5)
    assert isinstance(events[0], ResultReceived) and events[0].ref == "r1"
    out = _sent(s)
    assert len(out) == 1 and out[0][2] == "SetChargingProfile" and out[0][1] != first_id


def test_timeout_frees_the_slot_and_late_answer_dropped():
    s = _booted(response_timeout_ms=1000)
    s.call("GetConfiguration", {}, 0)
    s.call("TriggerMessage", {"requestedMessage": "Heartbeat"}, 0)
    first = _sent(s)[0]
    assert s.next_deadline_ms() == 1000
    assert s.poll(999) == []
    events = s.poll(1000)
    assert isinstance(events[0], CallFailed) and events[0].code == "Timeout" and events[0].local
    assert s.consecutive_timeouts == 1
    second = _sent(s)[0]
    assert second[2] == "TriggerMessage"
    # the late answer to the first CALL must not be taken as the answer to the second
    events = s.receive(json.dumps([3, first[1], {}]), 1100)
    assert len(events) == 1 and isinstance(events[0], Violation)
    events = s.receive(json.dumps([3, second[1], {"status": "Accepted"}]), 1200)
    assert isinstance(events[0], ResultReceived) and events[0].action == "TriggerMessage"
    assert s.consecutive_timeouts == 0


def test_callerror_received():
    s = _booted()
    s.call("ClearChargingProfile", {}, 0, ref=7)
    msg_id = _sent(s)[0][1]
    events = s.receive(json.dumps([4, msg_id, "NotSupported", "no", {}]), 1)
    assert isinstance(events[0], CallFailed) and events[0].code == "NotSupported" and not events[0].local
    assert events[0].ref == 7


def test_callerror_without_details_accepted():
    s = _booted()
    s.call("ClearChargingProfile", {}, 0)
    msg_id = _sent(s)[0][1]
    events = s.receive(json.dumps([4, msg_id, "InternalError", "x"]), 1)
    assert isinstance(events[0], CallFailed) and events[0].details == {}


def test_invalid_callresult_is_a_local_failure():
    def validator(kind, action, payload):
        if kind == "result" and "status" not in payload:
            return ("required", "'status' is a required property")
        return None
    s = _session(validator=validator, boot_accepted=True)
    s.call("SetChargingProfile", {}, 0)
    msg_id = _sent(s)[0][1]
    events = s.receive(json.dumps([3, msg_id, {}]), 1)
    assert isinstance(events[0], CallFailed) and events[0].code == "ProtocolError" and events[0].local


def test_ids_unique_across_sessions_with_shared_generator():
    gen = counter_ids("p-")
    ids = []
    for _ in range(3):
        s = Session(gen, boot_accepted=True)
        s.call("GetConfiguration", {}, 0)
        ids.append(_sent(s)[0][1])
    assert len(set(ids)) == 3


def test_queue_limit():
    s = _booted(max_queue=2)
    assert s.call("GetConfiguration", {}, 0)
    assert s.call("GetConfiguration", {}, 0)
    assert s.call("GetConfiguration", {}, 0)
    assert not s.call("GetConfiguration", {}, 0)
    assert s.queued() == 3


def test_session_stays_usable_after_bad_frames():
    s = _booted()
    for bad in ("nope", "[]", "[2]", '[2,"x","Heartbeat",null]', "[7]", '"str"'):
        s.receive(bad, 0)
    s.drain()
    events = s.receive('[2, "ok", "Heartbeat", {}]', 0)
    assert isinstance(events[0], CallReceived)


def test_call_with_given_id():
    s = _booted()
    s.call("DataTransfer", {"vendorId": "x"}, 0, msg_id="relay-7")
    out = _sent(s)
    assert out[0][:3] == [2, "relay-7", "DataTransfer"]
    events = s.receive('[3, "relay-7", {"status": "Accepted"}]', 1)
    assert isinstance(events[0], ResultReceived) and events[0].msg_id == "relay-7"


def test_stop_transaction_with_schema_problem_still_reaches_the_application():
    def validator(kind, action, payload):
        return ("enum", "'Sleepy' is not one of [...]") if payload.get("reason") == "Sleepy" else None
    s = _session(validator=validator, boot_accepted=True)
    events = s.receive('[2, "s1", "StopTransaction", {"transactionId": 1, "meterStop": 5, '
                       '"timestamp": "2026-01-01T00:00:00Z", "reason": "Sleepy"}]', 0)
    assert isinstance(events[0], CallReceived) and events[0].problem[0] == "PropertyConstraintViolation"
    assert s.drain() == []
    assert s.reply("s1", {})
    assert _sent(s) == [[3, "s1", {}]]
    # other actions with the same problem get a CALLERROR
    err, _ = _one_error(s, '[2, "h1", "Heartbeat", {"reason": "Sleepy"}]')
    assert err[2] == "PropertyConstraintViolation"
