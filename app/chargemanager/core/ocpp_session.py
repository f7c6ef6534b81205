"""Sans-I/O OCPP-J 1.6 session: one per websocket connection (text in, frames and events out, like h11).

Invariants:
- Never reads the clock, the network or a file: every call that depends on time takes `now_ms` (monotonic
  milliseconds, supplied by the adapter). Message ids come from an injected generator so they stay unique across
  reconnects (OCPP-J §4.1.4, errata 3.1/3.7).
- At most one outstanding CALL per direction we send (OCPP-J §4.1.1): further CALLs wait in a FIFO queue and go out
  when the previous one is answered or has timed out after `response_timeout_ms`.
- Every incoming CALL gets exactly one answer (CALLRESULT or CALLERROR) from the session or from the application,
  except a CALL that reuses the id of a CALL still pending (dropped: an answer would be ambiguous); CALLERROR codes
  are spelled as in OCPP-J 1.6 Table 7 (`FormationViolation`, `OccurenceConstraintViolation`). A frame without a
  readable id is answered with id "-1"; an unknown MessageTypeId is ignored (OCPP-J §4.1.3).
- Schema validation is injected (`validator`), because the JSON schemas live in a third-party package at the adapter
  edge; this module maps the failing JSON-schema keyword to the 1.6 error code (`error_code_for_keyword`).
- Role "cs" (we are the Central System): CALLs other than BootNotification are answered `SecurityError` until a
  BootNotification was answered Accepted or Pending (1.6 §4.2, errata 3.10), except StopTransaction, which is
  always processed so that no billing record is lost (1.6 §4.10), even when its payload fails the schema (the event
  carries the problem). Role "cp" (the gateway's upstream leg) gates nothing.

The application reads `out` (texts to send, in order) after each call into the session, and reacts to the events
returned by `receive()` and `poll()`.
"""

import json

CALL = 2
CALLRESULT = 3
CALLERROR = 4

MAX_ID_LEN = 36
# Used as message id of a CALLERROR when the offending frame has no readable id (the OCPP 2.0.1 convention; 1.6 is
# silent on it).
UNKNOWN_ID = "-1"

# Every OCPP 1.6 action (edition 2 + security white paper). A name outside this set is `NotImplemented`; a known
# action that the application does not handle is answered `NotSupported` by the application.
ACTIONS_CP = (
    "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification", "FirmwareStatusNotification",
    "Heartbeat", "MeterValues", "StartTransaction", "StatusNotification", "StopTransaction",
    "LogStatusNotification", "SecurityEventNotification", "SignCertificate", "SignedFirmwareStatusNotification",
)
ACTIONS_CS = (
    "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache", "ClearChargingProfile",
    "DataTransfer", "GetCompositeSchedule", "GetConfiguration", "GetDiagnostics", "GetLocalListVersion",
    "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile",
    "TriggerMessage", "UnlockConnector", "UpdateFirmware", "CertificateSigned", "DeleteCertificate",
    "ExtendedTriggerMessage", "GetInstalledCertificateIds", "GetLog", "InstallCertificate", "SignedUpdateFirmware",
)
KNOWN_ACTIONS = frozenset(ACTIONS_CP + ACTIONS_CS)

# Actions the Central System must process even before an accepted boot (see module docstring).
UNGATED_ACTIONS = ("BootNotification", "StopTransaction")
# Actions answered with a CALLRESULT even when the payload fails the schema (the problem travels with the event):
# a CALLERROR to StopTransaction makes the box retry it and finally drop the billing record (REFERENCE A4 #6).
LENIENT_ACTIONS = ("StopTransaction",)

# JSON-schema keyword that failed -> OCPP-J 1.6 CALLERROR code (Table 7). The `ocpp` package uses 2.0.1 spellings
# (`FormatViolation`), so the mapping lives here.
_KEYWORD_CODES = {
    "type": "TypeConstraintViolation",
    # CiStringNType is a 1.6 data type: a string that is too long violates the type, not a value constraint.
    "maxLength": "TypeConstraintViolation",
    "minLength": "TypeConstraintViolation",
    "required": "ProtocolError",  # "Payload for Action is incomplete"
    "additionalProperties": "FormationViolation",  # not conform the PDU structure
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
    "uniqueItems": "OccurenceConstraintViolation",
    "enum": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "exclusiveMinimum": "PropertyConstraintViolation",
    "exclusiveMaximum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
    "pattern": "PropertyConstraintViolation",
    "format": "PropertyConstraintViolation",
}

ERROR_CODES = (
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError", "FormationViolation",
    "PropertyConstraintViolation", "OccurenceConstraintViolation", "TypeConstraintViolation", "GenericError",
)


def error_code_for_keyword(keyword):
    """1.6 CALLERROR code for a failed JSON-schema keyword (OCPP-J 1.6 Table 7)."""
    return _KEYWORD_CODES.get(keyword, "FormationViolation")


class CallReceived:
    """The peer sent a CALL that passed framing, gating and validation; answer with `reply` or `reply_error`.
    `problem`: None, or (1.6 error code, message) for a lenient action whose payload failed the schema. `text`: the
    frame as it arrived (a relay forwards it without parsing it again, byte for byte)."""

    def __init__(self, msg_id, action, payload, problem=None, text=None):
        self.msg_id = msg_id
        self.action = action
        self.payload = payload
        self.problem = problem
        self.text = text

    def __repr__(self):
        return "CallReceived(%r, %r)" % (self.msg_id, self.action)


class ResultReceived:
    """The peer answered our CALL `action` with a valid CALLRESULT."""

    def __init__(self, msg_id, action, payload, ref):
        self.msg_id = msg_id
        self.action = action
        self.payload = payload
        self.ref = ref

    def __repr__(self):
        return "ResultReceived(%r, %r)" % (self.msg_id, self.action)


class CallFailed:
    """Our CALL failed: the peer sent a CALLERROR (`local` False), its CALLRESULT was invalid, or it timed out
    (`local` True, code `Timeout` for a timeout)."""

    def __init__(self, msg_id, action, code, description, details, ref, local):
        self.msg_id = msg_id
        self.action = action
        self.code = code
        self.description = description
        self.details = details
        self.ref = ref
        self.local = local

    def __repr__(self):
        return "CallFailed(%r, %r, %r)" % (self.msg_id, self.action, self.code)


class Violation:
    """The peer broke the protocol in a way that has no answer on the wire (recorded for the admin)."""

    def __init__(self, description):
        self.description = description

    def __repr__(self):
        return "Violation(%r)" % (self.description,)


def counter_ids(prefix):
    """Id generator `prefix` + counter; the adapter passes a prefix unique per process start (e.g. from boot time
    and randomness) so ids stay unique across reconnects and restarts."""
    state = [0]

    def new_id():
        state[0] += 1
        return "%s%d" % (prefix, state[0])

    return new_id


class Session:
    """One OCPP-J connection. `validator(kind, action, payload)` returns None when valid, else (keyword, message);
    kind is "call" (incoming CALL) or "result" (a CALLRESULT to our CALL `action`)."""

    def __init__(self, new_id, role="cs", validator=None, response_timeout_ms=30000, boot_accepted=False,
                 max_queue=100):
        self.new_id = new_id
        self.role = role
        self.validator = validator
        self.response_timeout_ms = response_timeout_ms
        self.boot_accepted = boot_accepted or role != "cs"
        self.max_queue = max_queue
        self.out = []
        self.queue = []  # [(action, payload, ref, msg_id)] waiting for the outstanding CALL to finish
        self.in_flight = None  # (msg_id, action, ref, sent_ms)
        self.incoming = {}  # msg_id -> action of CALLs received and not yet answered
        self.consecutive_timeouts = 0

    # ---- sending ----------------------------------------------------------------------------------------------

    def call(self, action, payload, now_ms, ref=None, msg_id=None):
        """Queue a CALL; it goes out at once when nothing is outstanding. Returns False when the queue is full.
        `msg_id`: send under this id instead of a new one (a relay that keeps the original id, OCPP-J §4.1.4)."""
        if len(self.queue) >= self.max_queue:
            return False
        self.queue.append((action, payload, ref, msg_id))
        self._pump(now_ms)
        return True

    def reply(self, msg_id, payload):
        """Answer an incoming CALL with a CALLRESULT."""
        action = self.incoming.pop(msg_id, None)
        if action is None:
            return False
        if action == "BootNotification" and self.role == "cs":
            status = payload.get("status") if isinstance(payload, dict) else None
            if status in ("Accepted", "Pending"):
                self.boot_accepted = True
        self.out.append(json.dumps([CALLRESULT, msg_id, payload], separators=(",", ":")))
        return True

    def reply_raw(self, msg_id, payload_text, payload=None):
        """Answer an incoming CALL with a CALLRESULT whose payload is the JSON object text `payload_text`, sent as
        is (a relay passes another peer's answer on byte for byte). `payload`: the parsed object when the caller
        has it; it is parsed here only where the session needs it (the answer to a BootNotification)."""
        action = self.incoming.pop(msg_id, None)
        if action is None:
            return False
        if action == "BootNotification" and self.role == "cs":
            if payload is None:
                try:
                    payload = json.loads(payload_text)
                except ValueError:
                    payload = None
            status = payload.get("status") if isinstance(payload, dict) else None
            if status in ("Accepted", "Pending"):
                self.boot_accepted = True
        self.out.append("[3," + json.dumps(msg_id) + "," + payload_text + "]")
        return True

    def reply_error(self, msg_id, code, description="", details=None):
        """Answer an incoming CALL with a CALLERROR."""
        if self.incoming.pop(msg_id, None) is None:
            return False
        self._error(msg_id, code, description, details)
        return True

    def pending_incoming(self):
        return list(self.incoming.keys())

    def queued(self):
        return len(self.queue) + (1 if self.in_flight else 0)

    def next_deadline_ms(self):
        """Monotonic ms at which `poll` has work (a response timeout), or None."""
        if self.in_flight is None:
            return None
        return self.in_flight[3] + self.response_timeout_ms

    def poll(self, now_ms):
        """Expire the outstanding CALL if its response is overdue; returns events."""
        events = []
        f = self.in_flight
        if f is not None and now_ms - f[3] >= self.response_timeout_ms:
            self.in_flight = None
            self.consecutive_timeouts += 1
            events.append(CallFailed(f[0], f[1], "Timeout", "no response within %d ms" % self.response_timeout_ms,
                                     {}, f[2], True))
            self._pump(now_ms)
        return events

    def _pump(self, now_ms):
        if self.in_flight is not None or not self.queue:
            return
        action, payload, ref, msg_id = self.queue.pop(0)
        if msg_id is None:
            msg_id = self.new_id()
        self.in_flight = (msg_id, action, ref, now_ms)
        self.out.append(json.dumps([CALL, msg_id, action, payload], separators=(",", ":")))

    def _error(self, msg_id, code, description, details=None):
        self.out.append(json.dumps([CALLERROR, msg_id, code, description or "", details or {}],
                                   separators=(",", ":")))

    # ---- receiving --------------------------------------------------------------------------------------------

    def receive(self, text, now_ms):
        """Feed one websocket text message; returns events (answers to bad frames are put in `out`)."""
        events = self.poll(now_ms)
        try:
            msg = json.loads(text)
        except ValueError as e:
            self._error(UNKNOWN_ID, "FormationViolation", "not valid JSON: %s" % (e,))
            return events
        if not isinstance(msg, list) or not msg:
            self._error(UNKNOWN_ID, "FormationViolation", "a message must be a non-empty JSON array")
            return events
        kind = msg[0]
        if not isinstance(kind, int) or isinstance(kind, bool):
            self._error(UNKNOWN_ID, "FormationViolation", "MessageTypeId must be an integer")
            return events
        if kind == CALL:
            self._receive_call(msg, events, text)
        elif kind == CALLRESULT:
            self._receive_result(msg, events, now_ms)
        elif kind == CALLERROR:
            self._receive_error(msg, events, now_ms)
        else:
            # OCPP-J §4.1.3: an unknown MessageTypeId is ignored.
            events.append(Violation("unknown MessageTypeId %d ignored" % kind))
        return events

    def _receive_call(self, msg, events, text=None):
        msg_id = msg[1] if len(msg) > 1 else None
        if not isinstance(msg_id, str) or not msg_id:
            self._error(UNKNOWN_ID, "FormationViolation", "UniqueId must be a non-empty string")
            return
        if len(msg_id) > MAX_ID_LEN:
            self._error(msg_id, "FormationViolation", "UniqueId longer than %d characters" % MAX_ID_LEN)
            return
        if len(msg) != 4:
            self._error(msg_id, "FormationViolation", "a CALL has 4 elements, got %d" % len(msg))
            return
        action, payload = msg[2], msg[3]
        if not isinstance(action, str):
            self._error(msg_id, "FormationViolation", "Action must be a string")
            return
        if not isinstance(payload, dict):
            self._error(msg_id, "FormationViolation", "Payload must be a JSON object ({} when empty)")
            return
        if msg_id in self.incoming:
            # Answering would be ambiguous for the peer: the first CALL with this id is still being processed.
            events.append(Violation("CALL %s reuses the id of a CALL still pending" % msg_id))
            return
        if action not in KNOWN_ACTIONS:
            self._error(msg_id, "NotImplemented", "unknown action %s" % action)
            return
        if not self.boot_accepted and action not in UNGATED_ACTIONS:
            self._error(msg_id, "SecurityError", "%s before an accepted BootNotification" % action)
            return
        problem = None
        if self.validator is not None:
            bad = self.validator("call", action, payload)
            if bad is not None:
                problem = (error_code_for_keyword(bad[0]), bad[1])
                if self.role != "cs" or action not in LENIENT_ACTIONS:
                    self._error(msg_id, problem[0], problem[1])
                    return
        self.incoming[msg_id] = action
        events.append(CallReceived(msg_id, action, payload, problem, text))

    def _take_in_flight(self, msg_id, events, what):
        f = self.in_flight
        if f is None or f[0] != msg_id:
            # A late answer to a timed-out CALL, or garbage: matching strictly by id avoids the off-by-one of
            # consuming it as the answer to the next CALL (REFERENCE A4 #5).
            events.append(Violation("%s for unknown or expired id %r dropped" % (what, msg_id)))
            return None
        self.in_flight = None
        self.consecutive_timeouts = 0
        return f

    def _receive_result(self, msg, events, now_ms):
        if len(msg) != 3 or not isinstance(msg[1], str):
            events.append(Violation("malformed CALLRESULT dropped"))
            return
        f = self._take_in_flight(msg[1], events, "CALLRESULT")
        if f is None:
            return
        msg_id, action, ref = f[0], f[1], f[2]
        payload = msg[2]
        if not isinstance(payload, dict):
            events.append(CallFailed(msg_id, action, "FormationViolation", "CALLRESULT payload is not an object",
                                     {}, ref, True))
        else:
            bad = self.validator("result", action, payload) if self.validator is not None else None
            if bad is not None:
                events.append(CallFailed(msg_id, action, error_code_for_keyword(bad[0]), bad[1], {}, ref, True))
            else:
                events.append(ResultReceived(msg_id, action, payload, ref))
        self._pump(now_ms)

    def _receive_error(self, msg, events, now_ms):
        # Some charge points omit the details element; accept 4 or 5 elements.
        if len(msg) not in (4, 5) or not isinstance(msg[1], str):
            events.append(Violation("malformed CALLERROR dropped"))
            return
        f = self._take_in_flight(msg[1], events, "CALLERROR")
        if f is None:
            return
        code = msg[2] if isinstance(msg[2], str) else "GenericError"
        description = msg[3] if isinstance(msg[3], str) else ""
        details = msg[4] if len(msg) == 5 and isinstance(msg[4], dict) else {}
        events.append(CallFailed(f[0], f[1], code, description, details, f[2], False))
        self._pump(now_ms)

    def drain(self):
        """Texts to send, in order; empties the outbox."""
        out = self.out
        self.out = []
        return out
