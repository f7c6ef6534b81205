"""OCPP 1.6J gateway policy for one wallbox link and its billing backend (sans-I/O).

One `Gateway` object stands between one wallbox ("box") and the backend it bills through. It takes frame text and
events in and returns a list of actions; it never touches a socket, a file or the clock. The adapter executes the
actions strictly in list order:

    ("box", text)          send a frame to the wallbox
    ("backend", text)      send a frame to the backend
    ("append", record)     persist a record (fsync) BEFORE any later action of the same list is executed
    ("ack", seq)           persist that record `seq` is delivered or thinned out (it is never sent again)
    ("save", record)       persist a piece of state (tx id map, auth cache entry, boot payload, id counter)
    ("event", name, data)  tell the rest of the manager (manager call results, box CALLs seen, anomalies)

Forwarding rules (also in docs/ocpp.md, "Gateway"):

 1. Every CALL from the box goes to the backend while the backend link is up and has accepted a BootNotification;
    the backend's answer goes back to the box. The frame keeps the box's message id and its payload text byte for
    byte (signed Eichrecht meter values, Giro-E DataTransfer), except where rule 10 rewrites a transaction id.
 2. Every CALL from the backend goes to the box under an id the gateway mints (`<id_prefix>b<n>`), and the box's
    answer goes back under the backend's id with the box's payload text unchanged. A backend id therefore never
    reaches the box and can never collide with the manager's own ids (`<id_prefix>m<n>`).
 3. The manager's own CALLs to the box (profiles, configuration reads) go through `manager_call`; their answers are
    returned as events and never shown to the backend.
 4. One outstanding CALL per direction per link: CALLs to the box (backend's and manager's) wait in one FIFO;
    CALLs to the backend (box's live CALLs, replayed queue records, the gateway's own) wait their turn as well.
 5. A backend SetChargingProfile is kept (per connector, purpose and stack level) and the box receives it with every
    period limited to min(backend limit, local limit) (W limits are compared at voltage_v x phases). The backend gets
    the box's own answer to that clamped profile, which is the honest state of the box. When the local limit changes,
    kept profiles are re-sent clamped (as manager CALLs). A backend ClearChargingProfile removes kept profiles and
    clears exactly those ids at the box, never the manager's own profile. A kept TxProfile ends with its
    transaction.
 6. Each new backend connection starts with the box's last BootNotification (kept across restarts) sent by the
    gateway itself, because a backend refuses anything before an accepted boot; queued records follow.
 7. While the backend is down (or has not answered in `answer_timeout_ms`), the gateway answers the box locally:
    BootNotification Accepted, Heartbeat with the time, StatusNotification (the last status per connector is sent to
    the backend after it returns), Authorize by policy (`cache`: ids the backend accepted before; `accept`; `reject`),
    DiagnosticsStatusNotification / FirmwareStatusNotification / MeterValues without a transaction with `{}`.
    Any other action gets a CALLERROR GenericError (nothing the box must retry is answered with an error).
 8. Transaction messages - StartTransaction, StopTransaction, MeterValues with a transactionId - and DataTransfer
    (Giro-E payment data) are forwarded live only when the link is up and the queue is empty. Otherwise they are
    appended to the persistent queue (fsync) before the box gets its local answer, so no billing record is lost:
    StartTransaction gets a provisional transaction id (counting up from `provisional_tx_base`), DataTransfer
    `Accepted`, the others `{}`. A live transaction message whose answer does not come is queued the same way.
 9. Queued records are replayed to the backend one at a time, in order, each under its own stable message id, and
    acknowledged on disk when the backend answers, so a record is delivered once; after a crash between send and ack
    it is re-sent with the same message id, which a backend may use to drop the duplicate. A CALLERROR is retried
    up to `max_attempts` times, then the record is skipped with an event (OCPP 1.6 section 3.7.1).
10. When the backend answers a replayed StartTransaction, its transaction id replaces the provisional one in every
    later message of that transaction (queued or live, box to backend) and the reverse in backend CALLs to the box
    (RemoteStopTransaction, SetChargingProfile of a TxProfile). The map is persisted. When that answer does not
    accept the idTag, the transaction the box ran on a local answer is reported (event
    `backend_rejected_offline_tx`, counted and listed in `status()`); the charge is not stopped by the gateway.
11. The queue is bounded by `max_queue_bytes`: above it, periodic MeterValues without signed data are thinned out,
    oldest first. StartTransaction, StopTransaction, signed readings, Transaction.Begin/End readings and
    DataTransfer are never dropped.
12. A backend CALL while the box is not connected, or one the box does not answer in time, gets a CALLERROR
    GenericError to the backend.

Invariants: times are `now_ms` from a monotonic clock given by the caller; wall time is `now_ms + wall_offset_ms`.
Currents are integer mA per phase. Record `seq` numbers only grow. Imports: json and core only.
"""

import json

from chargemanager.core.ocpp_profiles import iso_utc, parse_iso_utc

CALL = 2
CALLRESULT = 3
CALLERROR = 4

TX_ACTIONS = ("StartTransaction", "StopTransaction", "MeterValues", "DataTransfer")
LOCAL_EMPTY = ("StatusNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification", "MeterValues")
AUTH_POLICIES = ("cache", "accept", "reject")
REJECTED_KEPT = 10  # offline transactions the backend rejected, shown in the status


class FrameError(Exception):
    pass


def _skip_scalar(text, i):
    """Index after the JSON number or string starting at text[i]. Strings are scanned with str.find (a frame is
    read at least twice per forwarded message: no Python loop per character)."""
    n = len(text)
    if i >= n:
        raise FrameError("missing element")
    if text[i] == '"':
        j = text.find('"', i + 1)
        while j != -1:
            k = j - 1
            while text[k] == "\\":
                k -= 1
            if (j - 1 - k) % 2 == 0:  # an even number of backslashes: the quote is not escaped
                return j + 1
            j = text.find('"', j + 1)
        raise FrameError("unterminated string")
    while i < n and text[i] in "0123456789+-.eE":
        i += 1
    return i


def _skip_ws(text, i):
    n = len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    return i


def raw_payload(text, n_skip):
    """The payload's exact source text in a frame after its first `n_skip` scalar elements."""
    n = len(text)
    i = _skip_ws(text, 0)
    if i >= n or text[i] != "[":
        raise FrameError("not a JSON array")
    i += 1
    for _ in range(n_skip):
        if i < n and text[i] in " \t\r\n":
            i = _skip_ws(text, i)
        i = _skip_scalar(text, i)
        if i < n and text[i] in " \t\r\n":
            i = _skip_ws(text, i)
        if i >= n or text[i] != ",":
            raise FrameError("missing element")
        i += 1
    end = text.rindex("]")
    return text[i:end].strip()


def frame_head(text):
    """(message type, message id, index of the next element) of a frame, read from its head only; FrameError if
    the head is not `[<int>,"<id>",`."""
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "[":
        raise FrameError("not a JSON array")
    i = _skip_ws(text, i + 1)
    j = _skip_scalar(text, i)
    try:
        mtype = int(text[i:j])
    except ValueError:
        raise FrameError("bad message type")
    i = _skip_ws(text, j)
    if i >= len(text) or text[i] != ",":
        raise FrameError("missing element")
    i = _skip_ws(text, i + 1)
    if i >= len(text) or text[i] != '"':
        raise FrameError("message id is not a string")
    j = _skip_scalar(text, i)
    raw_id = text[i + 1:j - 1]
    if "\\" in raw_id:
        try:
            raw_id = json.loads(text[i:j])
        except ValueError:
            raise FrameError("bad message id")
    i = _skip_ws(text, j)
    if i >= len(text) or text[i] != ",":
        raise FrameError("missing element")
    return mtype, raw_id, i + 1


def result_parts(text):
    """(message id, payload text) of a CALLRESULT frame without parsing its payload; FrameError if it is not one."""
    mtype, msg_id, i = frame_head(text)
    if mtype != CALLRESULT:
        raise FrameError("not a CALLRESULT")
    end = text.rfind("]")
    if end < i:
        raise FrameError("not a JSON array")
    return msg_id, text[i:end].strip()


def parse_frame(text):
    """(message type, id, action or None, payload object, payload text) of an OCPP-J frame; FrameError if bad."""
    try:
        msg = json.loads(text)
    except ValueError:
        raise FrameError("not JSON")
    if not isinstance(msg, list) or len(msg) < 3 or not isinstance(msg[1], str):
        raise FrameError("not an OCPP-J frame")
    mtype = msg[0]
    if mtype == CALL:
        if len(msg) != 4 or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
            raise FrameError("bad CALL")
        return mtype, msg[1], msg[2], msg[3], raw_payload(text, 3)
    if mtype == CALLRESULT:
        if len(msg) != 3 or not isinstance(msg[2], dict):
            raise FrameError("bad CALLRESULT")
        return mtype, msg[1], None, msg[2], raw_payload(text, 2)
    if mtype == CALLERROR:
        if len(msg) < 4:
            raise FrameError("bad CALLERROR")
        return mtype, msg[1], None, msg, None
    raise FrameError("unknown message type")


def _q(s):
    return json.dumps(s)


def call_text(msg_id, action, payload_text):
    return "[2," + _q(msg_id) + "," + _q(action) + "," + payload_text + "]"


def result_text(msg_id, payload_text):
    return "[3," + _q(msg_id) + "," + payload_text + "]"


def error_text(msg_id, code, description, details_text="{}"):
    return "[4," + _q(msg_id) + "," + _q(code) + "," + _q(description) + "," + details_text + "]"


def is_tx_message(action, payload):
    """Messages that carry billing data and are stored and forwarded (rule 8)."""
    return action in TX_ACTIONS and (action != "MeterValues" or payload.get("transactionId") is not None)


def is_signed_meter_values(payload):
    for mv in payload.get("meterValue") or ():
        for sv in mv.get("sampledValue") or ():
            if sv.get("format") == "SignedData":
                return True
    return False


def is_droppable_meter_values(payload):
    """Periodic readings without signed data: the only records the queue bound may thin out."""
    if is_signed_meter_values(payload):
        return False
    for mv in payload.get("meterValue") or ():
        for sv in mv.get("sampledValue") or ():
            if sv.get("context") in ("Transaction.Begin", "Transaction.End"):
                return False
    return True


def _clamp_limit(limit, unit, local_ma, voltage_v, phases):
    if unit == "W":
        cap = local_ma * voltage_v * phases / 1000.0
    else:
        cap = local_ma / 1000.0
    return limit if limit <= cap else cap


def clamp_profile(profile, local_ma, voltage_v, phases):
    """Copy of a chargingProfile object whose every period limit is at most the local limit (mA per phase)."""
    out = json.loads(json.dumps(profile))
    sched = out.get("chargingSchedule") or {}
    unit = sched.get("chargingRateUnit", "A")
    for period in sched.get("chargingSchedulePeriod") or ():
        n = period.get("numberPhases", phases)
        lim = _clamp_limit(period.get("limit", 0), unit, local_ma, voltage_v, n)
        period["limit"] = round(lim * 10) / 10.0
    return out


class Gateway:
    """Gateway state for one box <-> backend pair. See the module docstring for the rules."""

    def __init__(self, id_prefix, auth_policy="cache", max_queue_bytes=8000000, voltage_v=230, phases=3,
                 answer_timeout_ms=30000, max_attempts=3, provisional_tx_base=1900000000, heartbeat_s=300):
        if auth_policy not in AUTH_POLICIES:
            raise ValueError("auth_policy must be one of " + ", ".join(AUTH_POLICIES))
        self.id_prefix = id_prefix
        self.auth_policy = auth_policy
        self.max_queue_bytes = max_queue_bytes
        self.voltage_v = voltage_v
        self.phases = phases
        self.answer_timeout_ms = answer_timeout_ms
        self.max_attempts = max_attempts
        self.heartbeat_s = heartbeat_s
        self.wall_offset_ms = 0
        self.backend_up = False
        self.backend_booted = False
        self.boot_retry_ms = 0
        self.box_up = False
        self.queue = []              # pending records, oldest first: dicts with seq, id, action, payload(text)
        self.queue_bytes = 0
        self.next_seq = 1
        self.next_ptx = provisional_tx_base
        self.tx_map = {}             # provisional id -> backend id
        self.tx_rmap = {}            # backend id -> provisional id
        self.auth_cache = {}         # idTag -> True (accepted by the backend before)
        self.boot_payload = None     # the box's last BootNotification payload text
        self.statuses = {}           # connectorId -> StatusNotification payload text, to send after an outage
        self.status_dirty = []       # connectorIds whose status the backend has not seen
        self.up_out = None           # the CALL outstanding towards the backend
        self.up_wait = []            # live box CALLs waiting for the backend
        self.box_out = None          # the CALL outstanding towards the box
        self.box_wait = []           # CALLs waiting for the box
        self.profiles = []           # backend charging profiles: dicts connector_id, profile, sent (text)
        self.local_ma = {}           # connectorId -> local limit mA per phase
        self.tx_connector = {}       # transaction id the box knows -> connectorId (to end backend TxProfiles)
        self.recent = {}             # action|payload of recently queued records -> provisional tx id (or None)
        self.recent_keys = []
        self.n_ids = 0
        self.dropped = 0
        self.skipped = 0
        self.rejected_offline = 0    # offline transactions whose idTag the backend did not accept on replay
        self.rejected_recent = []    # the newest of them (dicts, see _replay_answered)
        self.last_error = ""
        self.out = []

    # ---- persistence -------------------------------------------------------------------------------------------

    def load(self, records):
        """Restore from persisted records (in file order), at start before any other call."""
        acked = {}
        msgs = []
        for r in records:
            k = r.get("k")
            if k == "msg":
                msgs.append(r)
                if r["seq"] >= self.next_seq:
                    self.next_seq = r["seq"] + 1
                if r.get("ptx") is not None and r["ptx"] >= self.next_ptx:
                    self.next_ptx = r["ptx"] + 1
            elif k == "ack":
                acked[r["seq"]] = True
                if r["seq"] >= self.next_seq:
                    self.next_seq = r["seq"] + 1
            elif k == "map":
                self.tx_map[r["ptx"]] = r["tx"]
                self.tx_rmap[r["tx"]] = r["ptx"]
                if r["ptx"] >= self.next_ptx:
                    self.next_ptx = r["ptx"] + 1
            elif k == "auth":
                if r["ok"]:
                    self.auth_cache[r["tag"]] = True
                elif r["tag"] in self.auth_cache:
                    del self.auth_cache[r["tag"]]
            elif k == "boot":
                self.boot_payload = r["payload"]
            elif k == "ids":
                if r["n"] > self.n_ids:
                    self.n_ids = r["n"]
                if r.get("ptx", 0) >= self.next_ptx:
                    self.next_ptx = r["ptx"]
                if r.get("seq", 0) >= self.next_seq:
                    self.next_seq = r["seq"]
        for r in msgs:
            self._remember(r)
            if r["seq"] not in acked:
                r["tries"] = 0
                self.queue.append(r)
                self.queue_bytes += len(r["payload"])

    def snapshot(self):
        """The smallest record list equivalent to the current persistent state (for compaction)."""
        recs = [{"k": "ids", "n": self.n_ids, "ptx": self.next_ptx, "seq": self.next_seq}]
        if self.boot_payload is not None:
            recs.append({"k": "boot", "payload": self.boot_payload})
        for tag in self.auth_cache:
            recs.append({"k": "auth", "tag": tag, "ok": True})
        for ptx in self.tx_map:
            recs.append({"k": "map", "ptx": ptx, "tx": self.tx_map[ptx]})
        for r in self.queue:
            c = {}
            for key in r:
                if key != "tries":
                    c[key] = r[key]
            recs.append(c)
        return recs

    # ---- helpers -----------------------------------------------------------------------------------------------

    def _take(self):
        out = self.out
        self.out = []
        return out

    def _mint(self, kind):
        self.n_ids += 1
        return self.id_prefix + kind + str(self.n_ids)

    def _now_iso(self, now_ms):
        return iso_utc(now_ms + self.wall_offset_ms)

    def _event(self, name, data):
        self.out.append(("event", name, data))

    def _tag_info(self, id_tag):
        if self.auth_policy == "accept" or (self.auth_policy == "cache" and id_tag in self.auth_cache):
            return {"status": "Accepted"}
        return {"status": "Invalid"}

    def _learn_auth(self, id_tag, info):
        if not id_tag or not isinstance(info, dict):
            return
        ok = info.get("status") == "Accepted"
        if ok and id_tag not in self.auth_cache:
            self.auth_cache[id_tag] = True
            self.out.append(("save", {"k": "auth", "tag": id_tag, "ok": True}))
        elif not ok and id_tag in self.auth_cache:
            del self.auth_cache[id_tag]
            self.out.append(("save", {"k": "auth", "tag": id_tag, "ok": False}))

    def _tx_for_backend(self, payload_obj, payload_text):
        """Payload text with a provisional transaction id replaced by the backend's, when one is known."""
        ptx = payload_obj.get("transactionId")
        if ptx is not None and ptx in self.tx_map:
            payload_obj = json.loads(payload_text)
            payload_obj["transactionId"] = self.tx_map[ptx]
            return json.dumps(payload_obj)
        return payload_text

    # ---- box side ----------------------------------------------------------------------------------------------

    def box_connected(self, now_ms):
        self.box_up = True
        self._pump_box(now_ms)
        return self._take()

    def box_disconnected(self, now_ms):
        self.box_up = False
        if self.box_out is not None:
            self._fail_box_call(self.box_out, "wallbox disconnected")
            self.box_out = None
        for c in self.box_wait:
            self._fail_box_call(c, "wallbox disconnected")
        self.box_wait = []
        return self._take()

    def box_text(self, text, now_ms):
        """A frame from the box."""
        try:
            mtype, msg_id, action, payload, ptext = parse_frame(text)
        except FrameError as e:
            self._event("box_bad_frame", str(e))
            return self._take()
        if mtype == CALL:
            self._box_call(msg_id, action, payload, ptext, text, now_ms)
        else:
            self._box_answer(mtype, msg_id, payload, ptext, now_ms)
        return self._take()

    def box_call(self, msg_id, action, payload, text, now_ms):
        """A CALL from the box that the caller has parsed (and validated) already: `payload` is its object, `text`
        the frame as it arrived (None if not at hand), whose payload text is forwarded byte for byte."""
        ptext = None
        if text is not None:
            try:
                ptext = raw_payload(text, 3)
            except (FrameError, ValueError):
                ptext = None
        if ptext is None:
            ptext = json.dumps(payload)
            text = call_text(msg_id, action, ptext)
        self._box_call(msg_id, action, payload, ptext, text, now_ms)
        return self._take()

    def _box_call(self, msg_id, action, payload, ptext, text, now_ms):
        self._event("box_call", {"action": action, "payload": payload})
        if action == "BootNotification" and ptext != self.boot_payload:
            self.boot_payload = ptext
            self.out.append(("save", {"k": "boot", "payload": ptext}))
        if action == "StatusNotification":
            key = str(payload.get("connectorId"))
            self.statuses[key] = ptext
        if action == "StopTransaction":
            self._end_tx_profiles(payload.get("transactionId"))
        item = {"id": msg_id, "action": action, "payload_obj": payload, "payload": ptext, "text": text,
                "at_ms": now_ms}
        boot_unknown = self.backend_up and not self.backend_booted and self.boot_payload is None
        if is_tx_message(action, payload) and (self.queue or not self.backend_up or boot_unknown):
            self._enqueue_and_answer(item, now_ms)
        elif boot_unknown and action != "BootNotification":
            # A backend refuses everything before a boot, and we have none to send for this box yet.
            self._answer_locally(item, now_ms)
        elif self.backend_up:
            self.up_wait.append(item)
            self._pump_up(now_ms)
        else:
            self._answer_locally(item, now_ms)

    def _enqueue_and_answer(self, item, now_ms):
        action = item["action"]
        payload = item["payload_obj"]
        key = action + "|" + item["payload"]
        if key in self.recent:
            # The box repeats a message whose answer it lost (a restart between fsync and answer): same answer,
            # no second record, so the backend gets it once (a retry may carry a new message id).
            self.out.append(("box", result_text(item["id"], self._local_tx_answer(action, payload,
                                                                                   self.recent[key]))))
            return
        # A record the backend may already have seen keeps the box's id so a backend can drop the duplicate; all
        # others get an id minted here, because a box that restarts its id counter would reuse old ids.
        msg_id = item["id"] if item.get("live_sent") else self._mint("q")
        rec = {"k": "msg", "seq": self.next_seq, "id": msg_id, "action": action, "payload": item["payload"]}
        self.next_seq += 1
        if action == "StartTransaction":
            rec["ptx"] = self.next_ptx
            self.next_ptx += 1
            self.tx_connector[rec["ptx"]] = payload.get("connectorId")
        elif action == "MeterValues":
            rec["drop"] = is_droppable_meter_values(payload)
        self.out.append(("append", rec))
        self._remember(rec)
        rec["tries"] = 0
        self.queue.append(rec)
        self.queue_bytes += len(rec["payload"])
        self._bound_queue()
        self.out.append(("box", result_text(item["id"], self._local_tx_answer(action, payload, rec.get("ptx")))))
        self._pump_up(now_ms)

    def _local_tx_answer(self, action, payload, ptx):
        if action == "StartTransaction":
            return json.dumps({"transactionId": ptx, "idTagInfo": self._tag_info(payload.get("idTag"))})
        if action == "DataTransfer":
            return json.dumps({"status": "Accepted"})
        return "{}"

    def _remember(self, rec):
        key = rec["action"] + "|" + rec["payload"]
        if key not in self.recent:
            self.recent_keys.append(key)
            if len(self.recent_keys) > 256:
                old = self.recent_keys.pop(0)
                del self.recent[old]
        self.recent[key] = rec.get("ptx")

    def _bound_queue(self):
        if self.queue_bytes <= self.max_queue_bytes:
            return
        keep = []
        for i in range(len(self.queue)):
            r = self.queue[i]
            sending = self.up_out is not None and self.up_out.get("rec") is r
            if self.queue_bytes > self.max_queue_bytes and r.get("drop") and not sending:
                self.queue_bytes -= len(r["payload"])
                self.dropped += 1
                self.out.append(("ack", r["seq"]))
            else:
                keep.append(r)
        self.queue = keep
        if self.queue_bytes > self.max_queue_bytes:
            self.last_error = "queue above its limit with nothing left to thin out"

    def _answer_locally(self, item, now_ms):
        action = item["action"]
        if is_tx_message(action, item["payload_obj"]):
            self._enqueue_and_answer(item, now_ms)
            return
        if action == "BootNotification":
            answer = json.dumps({"status": "Accepted", "currentTime": self._now_iso(now_ms),
                                 "interval": self.heartbeat_s})
        elif action == "Heartbeat":
            answer = json.dumps({"currentTime": self._now_iso(now_ms)})
        elif action == "Authorize":
            answer = json.dumps({"idTagInfo": self._tag_info(item["payload_obj"].get("idTag"))})
        elif action in LOCAL_EMPTY:
            answer = "{}"
            if action == "StatusNotification":
                key = str(item["payload_obj"].get("connectorId"))
                if key not in self.status_dirty:
                    self.status_dirty.append(key)
        else:
            self.out.append(("box", error_text(item["id"], "GenericError", "billing backend unreachable")))
            return
        self.out.append(("box", result_text(item["id"], answer)))

    def _box_answer(self, mtype, msg_id, payload, ptext, now_ms):
        c = self.box_out
        if c is None or c["id"] != msg_id:
            self._event("box_late_answer", msg_id)
            return
        self.box_out = None
        if c["origin"] == "backend":
            if mtype == CALLRESULT:
                self.out.append(("backend", result_text(c["backend_id"], ptext)))
            else:
                self.out.append(("backend", json.dumps([CALLERROR, c["backend_id"]] + payload[2:])))
        else:
            self._event("manager_result", {"id": msg_id, "action": c["action"], "ok": mtype == CALLRESULT,
                                           "payload": payload})
        self._pump_box(now_ms)

    def _fail_box_call(self, c, why):
        if c["origin"] == "backend" and self.backend_up:
            self.out.append(("backend", error_text(c["backend_id"], "GenericError", why)))
        elif c["origin"] == "manager":
            self._event("manager_result", {"id": c["id"], "action": c["action"], "ok": False, "payload": why})

    def _pump_box(self, now_ms):
        if self.box_out is not None or not self.box_up or not self.box_wait:
            return
        c = self.box_wait.pop(0)
        c["sent_ms"] = now_ms
        self.box_out = c
        self.out.append(("box", call_text(c["id"], c["action"], c["payload"])))

    def manager_call(self, action, payload_obj, now_ms):
        """Queue the manager's own CALL to the box; returns (message id, actions). The answer comes as event
        ("manager_result", {id, action, ok, payload})."""
        msg_id = self._mint("m")
        self.box_wait.append({"id": msg_id, "origin": "manager", "action": action,
                              "payload": json.dumps(payload_obj)})
        self._pump_box(now_ms)
        return msg_id, self._take()

    # ---- backend side ------------------------------------------------------------------------------------------

    def backend_connected(self, now_ms):
        self.backend_up = True
        self.backend_booted = False
        self.boot_retry_ms = 0
        self.last_error = ""
        self._pump_up(now_ms)
        return self._take()

    def backend_disconnected(self, now_ms, why="backend connection closed"):
        self.backend_up = False
        self.backend_booted = False
        self.last_error = why
        o = self.up_out
        self.up_out = None
        if o is not None and o["kind"] == "live":
            self._live_failed(o["item"], now_ms)
        waiting = self.up_wait
        self.up_wait = []
        for item in waiting:
            self._answer_locally(item, now_ms)
        return self._take()

    def _live_failed(self, item, now_ms):
        item["live_sent"] = True
        self._answer_locally(item, now_ms)

    def backend_text(self, text, now_ms):
        """A frame from the backend."""
        try:
            mtype, msg_id, action, payload, ptext = parse_frame(text)
        except FrameError as e:
            self._event("backend_bad_frame", str(e))
            return self._take()
        if mtype == CALL:
            self._backend_call(msg_id, action, payload, ptext, now_ms)
        else:
            self._backend_answer(mtype, msg_id, payload, ptext, now_ms)
        return self._take()

    def _backend_call(self, msg_id, action, payload, ptext, now_ms):
        if not self.box_up:
            self.out.append(("backend", error_text(msg_id, "GenericError", "wallbox not connected")))
            return
        if action == "SetChargingProfile":
            self._backend_profile(msg_id, payload, now_ms)
            return
        if action == "ClearChargingProfile":
            self._backend_clear(msg_id, payload, now_ms)
            return
        if action == "RemoteStopTransaction" and payload.get("transactionId") in self.tx_rmap:
            obj = json.loads(ptext)
            obj["transactionId"] = self.tx_rmap[obj["transactionId"]]
            ptext = json.dumps(obj)
        self.box_wait.append({"id": self._mint("b"), "origin": "backend", "backend_id": msg_id, "action": action,
                              "payload": ptext})
        self._pump_box(now_ms)

    def _backend_profile(self, msg_id, payload, now_ms):
        connector = payload.get("connectorId", 0)
        prof = payload.get("csChargingProfiles") or {}
        keep = []
        for p in self.profiles:
            q = p["profile"]
            same = (q.get("chargingProfileId") == prof.get("chargingProfileId") or
                    (p["connector_id"] == connector and q.get("stackLevel") == prof.get("stackLevel") and
                     q.get("chargingProfilePurpose") == prof.get("chargingProfilePurpose")))
            if not same:
                keep.append(p)
        entry = {"connector_id": connector, "profile": prof, "sent": None}
        keep.append(entry)
        self.profiles = keep
        text = self._clamped_text(entry)
        entry["sent"] = text
        self._event("backend_profile", {"connector_id": connector, "profile": prof})
        self.box_wait.append({"id": self._mint("b"), "origin": "backend", "backend_id": msg_id,
                              "action": "SetChargingProfile", "payload": text})
        self._pump_box(now_ms)

    def backend_limit_ma(self, connector_id, now_ms):
        """The current in mA per phase that the backend's kept profiles allow on a connector right now (None: the
        backend does not restrict it), as OCPP 1.6 section 3.13.2 combines them: within a purpose the highest stack
        level wins, a connector's own profile before one for connector 0, a TxProfile before the TxDefaultProfile,
        and a ChargePointMaxProfile caps the result. A schedule runs from its startSchedule (Absolute; Recurring
        repeats daily or weekly); without one (Relative: the transaction's start, which the gateway does not know)
        its first period counts. W limits are converted at voltage_v x the period's phases.

        Called from another thread than the one that changes the profiles: it reads one snapshot of the list."""
        wall_ms = now_ms + self.wall_offset_ms
        best = {}
        for entry in list(self.profiles):
            connector = entry["connector_id"]
            prof = entry["profile"]
            purpose = prof.get("chargingProfilePurpose")
            if purpose == "ChargePointMaxProfile":
                if connector != 0:
                    continue
            elif connector not in (connector_id, 0):
                continue
            limit_ma = self._profile_limit_ma(prof, wall_ms)
            if limit_ma is None:
                continue
            rank = (1 if connector == connector_id else 0, prof.get("stackLevel", 0))
            if purpose not in best or rank > best[purpose][0]:
                best[purpose] = (rank, limit_ma)
        tx = best.get("TxProfile") or best.get("TxDefaultProfile")
        limits = [v[1] for v in (tx, best.get("ChargePointMaxProfile")) if v is not None]
        return min(limits) if limits else None

    def _profile_limit_ma(self, prof, wall_ms):
        valid_from = parse_iso_utc(prof.get("validFrom"))
        valid_to = parse_iso_utc(prof.get("validTo"))
        if (valid_from is not None and wall_ms < valid_from) or (valid_to is not None and wall_ms >= valid_to):
            return None
        sched = prof.get("chargingSchedule") or {}
        periods = sched.get("chargingSchedulePeriod") or []
        if not periods:
            return None
        start_ms = parse_iso_utc(sched.get("startSchedule"))
        elapsed_s = 0
        if start_ms is not None and prof.get("chargingProfileKind") != "Relative":
            elapsed_s = (wall_ms - start_ms) // 1000
            if elapsed_s < 0:
                return None
            recurrency = {"Daily": 86400, "Weekly": 604800}.get(prof.get("recurrencyKind"))
            if prof.get("chargingProfileKind") == "Recurring" and recurrency:
                elapsed_s %= recurrency
        duration = sched.get("duration")
        if isinstance(duration, int) and start_ms is not None and elapsed_s >= duration:
            return None
        active = None
        for period in periods:
            if period.get("startPeriod", 0) <= elapsed_s and (
                    active is None or period.get("startPeriod", 0) >= active.get("startPeriod", 0)):
                active = period
        if active is None:
            return None
        limit = active.get("limit", 0)
        if sched.get("chargingRateUnit") == "W":
            phases = active.get("numberPhases") or self.phases
            return int(limit * 1000 / (self.voltage_v * phases))
        return int(limit * 1000)

    def _local_ma_for(self, connector):
        if connector in self.local_ma:
            return self.local_ma[connector]
        if connector == 0 and self.local_ma:
            total = 0
            for k in self.local_ma:
                total += self.local_ma[k]
            return total
        return None

    def _clamped_text(self, entry):
        prof = entry["profile"]
        local = self._local_ma_for(entry["connector_id"])
        if local is not None:
            prof = clamp_profile(prof, local, self.voltage_v, self.phases)
        ptx = prof.get("transactionId")
        if ptx is not None and ptx in self.tx_rmap:
            prof = json.loads(json.dumps(prof))
            prof["transactionId"] = self.tx_rmap[ptx]
        return json.dumps({"connectorId": entry["connector_id"], "csChargingProfiles": prof})

    def _backend_clear(self, msg_id, payload, now_ms):
        keep = []
        removed = []
        for p in self.profiles:
            q = p["profile"]
            match = True
            if payload.get("id") is not None and q.get("chargingProfileId") != payload["id"]:
                match = False
            if payload.get("connectorId") is not None and p["connector_id"] != payload["connectorId"]:
                match = False
            if (payload.get("chargingProfilePurpose") is not None and
                    q.get("chargingProfilePurpose") != payload["chargingProfilePurpose"]):
                match = False
            if payload.get("stackLevel") is not None and q.get("stackLevel") != payload["stackLevel"]:
                match = False
            (removed if match else keep).append(p)
        self.profiles = keep
        status = "Accepted" if removed else "Unknown"
        self.out.append(("backend", result_text(msg_id, json.dumps({"status": status}))))
        for p in removed:
            self.box_wait.append({"id": self._mint("m"), "origin": "manager", "action": "ClearChargingProfile",
                                  "payload": json.dumps({"id": p["profile"].get("chargingProfileId")})})
        self._pump_box(now_ms)

    def _end_tx_profiles(self, tx_id):
        """A backend TxProfile ends with its transaction (OCPP 1.6 3.13.4); it is not re-sent afterwards."""
        connector = self.tx_connector.pop(tx_id, None)
        if connector is None:
            return
        keep = []
        for p in self.profiles:
            if p["connector_id"] == connector and p["profile"].get("chargingProfilePurpose") == "TxProfile":
                continue
            keep.append(p)
        self.profiles = keep

    def set_local_limit(self, connector_id, limit_ma, now_ms):
        """The load management's limit for a connector (mA per phase); re-sends kept backend profiles clamped."""
        self.local_ma[connector_id] = limit_ma
        for p in self.profiles:
            if p["connector_id"] not in (connector_id, 0):
                continue
            text = self._clamped_text(p)
            if text != p["sent"]:
                p["sent"] = text
                self.box_wait.append({"id": self._mint("m"), "origin": "manager", "action": "SetChargingProfile",
                                      "payload": text})
        self._pump_box(now_ms)
        return self._take()

    def _backend_answer(self, mtype, msg_id, payload, ptext, now_ms):
        o = self.up_out
        if o is None or o["id"] != msg_id:
            self._event("backend_late_answer", msg_id)
            return
        self.up_out = None
        kind = o["kind"]
        if kind == "live":
            item = o["item"]
            if mtype == CALLRESULT:
                self.out.append(("box", result_text(item["id"], ptext)))
                if item["action"] == "BootNotification":
                    self.backend_booted = payload.get("status") == "Accepted" or self.backend_booted
                if item["action"] in ("Authorize", "StartTransaction"):
                    self._learn_auth(item["payload_obj"].get("idTag"), payload.get("idTagInfo"))
                if item["action"] == "StartTransaction" and "transactionId" in payload:
                    self.tx_connector[payload["transactionId"]] = item["payload_obj"].get("connectorId")
                if item["action"] == "StatusNotification":
                    key = str(item["payload_obj"].get("connectorId"))
                    if key in self.status_dirty:
                        self.status_dirty.remove(key)
            else:
                self.out.append(("box", json.dumps([CALLERROR, item["id"]] + payload[2:])))
        elif kind == "boot":
            if mtype == CALLRESULT and payload.get("status") == "Accepted":
                self.backend_booted = True
            else:
                # Pending/Rejected (or an error): ask again after the interval the backend named (OCPP 1.6 4.2).
                interval_s = payload.get("interval", 60) if mtype == CALLRESULT else 60
                if not isinstance(interval_s, int) or interval_s <= 0:
                    interval_s = 60
                self.boot_retry_ms = now_ms + interval_s * 1000
                self.last_error = "backend did not accept BootNotification"
                self._event("backend_boot_refused", payload)
        elif kind == "status":
            if o["key"] in self.status_dirty:
                self.status_dirty.remove(o["key"])
        elif kind == "replay":
            self._replay_answered(o["rec"], mtype, payload, now_ms)
        self._pump_up(now_ms)

    def _replay_answered(self, rec, mtype, payload, now_ms):
        if mtype != CALLRESULT:
            rec["tries"] = rec.get("tries", 0) + 1
            self.last_error = "backend refused queued " + rec["action"] + ": " + str(payload[2])
            if rec["tries"] < self.max_attempts:
                return
            self.skipped += 1
            self._event("queue_record_skipped", {"seq": rec["seq"], "action": rec["action"], "error": payload[2:]})
        else:
            obj = json.loads(rec["payload"])
            if rec["action"] == "StartTransaction" and "transactionId" in payload:
                tx = payload["transactionId"]
                self.tx_map[rec["ptx"]] = tx
                self.tx_rmap[tx] = rec["ptx"]
                self.out.append(("save", {"k": "map", "ptx": rec["ptx"], "tx": tx}))
                info = payload.get("idTagInfo") or {}
                if info.get("status") != "Accepted":
                    # The wallbox charged on a local answer; the backend would not have allowed it. Kept for the
                    # status (and the adapter's audit record): someone has to look at this transaction.
                    entry = {"transaction_id": tx, "provisional_id": rec["ptx"], "id_tag": obj.get("idTag"),
                             "connector_id": obj.get("connectorId"), "start": obj.get("timestamp"),
                             "status": info.get("status")}
                    self.rejected_offline += 1
                    self.rejected_recent.append(entry)
                    if len(self.rejected_recent) > REJECTED_KEPT:
                        self.rejected_recent.pop(0)
                    self._event("backend_rejected_offline_tx", entry)
            if rec["action"] in ("StartTransaction", "StopTransaction"):
                self._learn_auth(obj.get("idTag"), payload.get("idTagInfo"))
        if self.queue and self.queue[0] is rec:
            self.queue.pop(0)
        elif rec in self.queue:
            self.queue.remove(rec)
        self.queue_bytes -= len(rec["payload"])
        self.out.append(("ack", rec["seq"]))

    def _pump_up(self, now_ms):
        if not self.backend_up or self.up_out is not None:
            return
        if not self.backend_booted:
            for i in range(len(self.up_wait)):
                if self.up_wait[i]["action"] == "BootNotification":
                    self._send_live(self.up_wait.pop(i), now_ms)
                    return
            if self.boot_payload is not None and now_ms >= self.boot_retry_ms:
                msg_id = self._mint("g")
                self.up_out = {"kind": "boot", "id": msg_id, "sent_ms": now_ms}
                self.out.append(("backend", call_text(msg_id, "BootNotification", self.boot_payload)))
            return
        if self.up_wait:
            item = self.up_wait.pop(0)
            if self.queue and is_tx_message(item["action"], item["payload_obj"]):
                self._enqueue_and_answer(item, now_ms)
                return
            self._send_live(item, now_ms)
            return
        if self.queue:
            rec = self.queue[0]
            obj = json.loads(rec["payload"])
            text = call_text(rec["id"], rec["action"], self._tx_for_backend(obj, rec["payload"]))
            self.up_out = {"kind": "replay", "id": rec["id"], "rec": rec, "sent_ms": now_ms}
            self.out.append(("backend", text))
            return
        if self.status_dirty:
            key = self.status_dirty[0]
            if key not in self.statuses:
                self.status_dirty.pop(0)
                self._pump_up(now_ms)
                return
            msg_id = self._mint("g")
            self.up_out = {"kind": "status", "id": msg_id, "key": key, "sent_ms": now_ms}
            self.out.append(("backend", call_text(msg_id, "StatusNotification", self.statuses[key])))

    def _send_live(self, item, now_ms):
        text = item["text"]
        new_payload = self._tx_for_backend(item["payload_obj"], item["payload"])
        if new_payload is not item["payload"]:
            text = call_text(item["id"], item["action"], new_payload)
        self.up_out = {"kind": "live", "id": item["id"], "item": item, "sent_ms": now_ms}
        self.out.append(("backend", text))

    # ---- time --------------------------------------------------------------------------------------------------

    def tick(self, now_ms):
        """Time out unanswered CALLs in both directions."""
        o = self.up_out
        if o is not None and now_ms - o["sent_ms"] >= self.answer_timeout_ms:
            self.up_out = None
            self.last_error = "backend did not answer " + o["id"]
            if o["kind"] == "live":
                self._live_failed(o["item"], now_ms)
            self._pump_up(now_ms)
        if self.backend_up and not self.backend_booted and self.up_out is None:
            self._pump_up(now_ms)
        waiting = []
        for item in self.up_wait:
            if now_ms - item["at_ms"] >= self.answer_timeout_ms:
                self._answer_locally(item, now_ms)
            else:
                waiting.append(item)
        self.up_wait = waiting
        c = self.box_out
        if c is not None and now_ms - c["sent_ms"] >= self.answer_timeout_ms:
            self.box_out = None
            self._fail_box_call(c, "wallbox did not answer")
            self._pump_box(now_ms)
        return self._take()

    def status(self):
        return {"connected": self.backend_up, "booted": self.backend_booted, "wallbox_connected": self.box_up,
                "queued_messages": len(self.queue), "queued_bytes": self.queue_bytes, "thinned_out": self.dropped,
                "skipped": self.skipped, "last_error": self.last_error, "backend_profiles": len(self.profiles),
                "rejected_offline_tx": self.rejected_offline,
                "rejected_offline_recent": [dict(e) for e in self.rejected_recent]}
