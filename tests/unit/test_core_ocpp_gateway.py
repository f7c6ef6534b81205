# Gateway policy (core/ocpp_gateway.py): rules 1-12 of its docstring, without sockets.
# Plain asserts and module-level test functions: this file also runs under MicroPython.
import json

from chargemanager.core.ocpp_gateway import (Gateway, FrameError, clamp_profile, frame_head, parse_frame, raw_payload,
                                             result_parts)

BOOT = '{"chargePointVendor":"V","chargePointModel":"M"}'
SIGNED = ('OCMF|{"FV":"1.0","GI":"ABL","RD":[{"TM":"2026-01-01T10:00:00,000+0000 S","RV":1.234,'
          '"RI":"1-b:1.8.0","RU":"kWh"}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"3045A1\\u00e9"}')


def sends(actions, where):
    return [a[1] for a in actions if a[0] == where]


def persisted_first(actions):
    """The record is appended before the box gets its answer."""
    kinds = [a[0] for a in actions if a[0] in ("append", "box")]
    return kinds == ["append", "box"]


def frames(actions, where):
    return [json.loads(t) for t in sends(actions, where)]


def online(gw, now=0):
    """Connect box and backend and get the backend's boot acceptance."""
    gw.box_connected(now)
    gw.backend_connected(now)
    a = gw.box_text('[2,"b1","BootNotification",' + BOOT + ']', now)
    assert frames(a, "backend")[0][:3] == [2, "b1", "BootNotification"]
    a = gw.backend_text('[3,"b1",{"status":"Accepted","currentTime":"2026-01-01T00:00:00Z","interval":60}]', now)
    assert frames(a, "box")[0][1] == "b1"
    assert gw.backend_booted


def test_raw_payload_keeps_exact_text():
    text = '[2, "a,\\"b", "DataTransfer" ,{"vendorId":"GiroE","data":"x\\u00e9 , ]"} ]'
    assert raw_payload(text, 3) == '{"vendorId":"GiroE","data":"x\\u00e9 , ]"}'
    mtype, msg_id, action, payload, ptext = parse_frame(text)
    assert (mtype, msg_id, action) == (2, 'a,"b', "DataTransfer")
    assert payload["data"] == "x\u00e9 , ]"


def test_frame_head_and_result_parts_read_escaped_ids():
    assert raw_payload('[2,"a\\\\","x\\"y",{"k":"\\\\"}]', 3) == '{"k":"\\\\"}'
    assert frame_head('[3,"id\\"q\\\\",{}]')[:2] == (3, 'id"q\\')
    assert result_parts('[3, "m1" , {"transactionId":5} ]') == ("m1", '{"transactionId":5}')
    for bad in ('{"a":1}', '[3,"open', '[3,7,{}]', '[2,"a","B",{}]', '[x,"a",{}]', '[3,"a"'):
        try:
            result_parts(bad)
            assert False, bad
        except FrameError:
            pass


def test_box_call_takes_the_parsed_frame_and_forwards_its_text():
    gw = Gateway("gw-")
    online(gw)
    text = '[2,"m9","DataTransfer",{"vendorId":"GiroE","data":"a  b"}]'
    a = gw.box_call("m9", "DataTransfer", {"vendorId": "GiroE", "data": "a  b"}, text, 0)
    assert sends(a, "backend") == [text]
    assert sends(gw.backend_text('[3,"m9",{"status":"Accepted"}]', 0), "box") == ['[3,"m9",{"status":"Accepted"}]']
    a = gw.box_call("m10", "Heartbeat", {}, None, 0)
    assert sends(a, "backend") == ['[2,"m10","Heartbeat",{}]']


def test_rule1_box_call_forwarded_byte_for_byte():
    gw = Gateway("gw-")
    online(gw)
    text = ('[2,"77","MeterValues",{"connectorId":1,"transactionId":5,"meterValue":[{"timestamp":'
            '"2026-01-01T10:00:00Z","sampledValue":[{"value":"' + SIGNED.replace('"', '\\"') +
            '","format":"SignedData"}]}]}]')
    a = gw.box_text(text, 1)
    assert sends(a, "backend") == [text]
    a = gw.backend_text('[3,"77",{}]', 2)
    assert sends(a, "box") == ['[3,"77",{}]']


def test_rule2_backend_call_gets_own_id_and_answer_returns():
    gw = Gateway("gw-")
    online(gw)
    a = gw.backend_text('[2,"m1","RemoteStartTransaction",{"idTag":"T1","connectorId":1}]', 1)
    f = frames(a, "box")[0]
    assert f[0] == 2 and f[1] != "m1" and f[1].startswith("gw-b") and f[2] == "RemoteStartTransaction"
    a = gw.box_text('[3,"' + f[1] + '",{"status":"Accepted"}]', 2)
    assert sends(a, "backend") == ['[3,"m1",{"status":"Accepted"}]']


def test_rule3_manager_answers_not_shown_to_backend():
    gw = Gateway("gw-")
    online(gw)
    msg_id, a = gw.manager_call("GetConfiguration", {"key": ["ChargeProfileMaxStackLevel"]}, 1)
    assert frames(a, "box")[0][1] == msg_id
    a = gw.box_text('[3,"' + msg_id + '",{"configurationKey":[]}]', 2)
    assert sends(a, "backend") == []
    ev = [x for x in a if x[0] == "event" and x[1] == "manager_result"]
    assert ev[0][2]["id"] == msg_id and ev[0][2]["ok"]


def test_rule4_one_outstanding_call_towards_box():
    gw = Gateway("gw-")
    online(gw)
    mid, a1 = gw.manager_call("GetConfiguration", {}, 1)
    a2 = gw.backend_text('[2,"x1","Reset",{"type":"Soft"}]', 1)
    assert len(sends(a1, "box")) == 1 and sends(a2, "box") == []
    a3 = gw.box_text('[3,"' + mid + '",{}]', 2)
    f = frames(a3, "box")
    assert len(f) == 1 and f[0][2] == "Reset"


def test_rule4_one_outstanding_call_towards_backend():
    gw = Gateway("gw-")
    online(gw)
    a1 = gw.box_text('[2,"h1","Heartbeat",{}]', 1)
    a2 = gw.box_text('[2,"h2","Authorize",{"idTag":"A"}]', 1)
    assert len(sends(a1, "backend")) == 1 and sends(a2, "backend") == []
    a3 = gw.backend_text('[3,"h1",{"currentTime":"2026-01-01T00:00:00Z"}]', 2)
    assert frames(a3, "box")[0][1] == "h1"
    assert frames(a3, "backend")[0][1] == "h2"


def test_rule5_backend_profile_clamped_to_local_limit():
    gw = Gateway("gw-")
    online(gw)
    gw.set_local_limit(1, 10000, 1)
    prof = {"chargingProfileId": 7, "stackLevel": 3, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}, {"startPeriod": 60, "limit": 6.0}]}}
    a = gw.backend_text(json.dumps([2, "s1", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": prof}]), 2)
    f = frames(a, "box")[0]
    periods = f[3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
    assert [p["limit"] for p in periods] == [10.0, 6.0]
    a = gw.box_text('[3,"' + f[1] + '",{"status":"Accepted"}]', 3)
    assert sends(a, "backend") == ['[3,"s1",{"status":"Accepted"}]']
    a = gw.set_local_limit(1, 8000, 4)
    f = frames(a, "box")[0]
    assert f[1].startswith("gw-m")
    assert [p["limit"] for p in f[3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]] == [8.0, 6.0]
    a = gw.box_text('[3,"' + f[1] + '",{"status":"Accepted"}]', 5)
    assert sends(a, "backend") == []


def test_rule5_watt_profiles_compare_at_voltage_and_phases():
    prof = {"chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0,
            "limit": 22000.0}, {"startPeriod": 10, "limit": 3000, "numberPhases": 1}]}}
    out = clamp_profile(prof, 16000, 230, 3)
    assert [p["limit"] for p in out["chargingSchedule"]["chargingSchedulePeriod"]] == [11040.0, 3000]
    assert prof["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 22000.0


def test_rule5_clear_removes_only_backend_profiles():
    gw = Gateway("gw-")
    online(gw)
    prof = {"chargingProfileId": 9, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}}
    a = gw.backend_text(json.dumps([2, "s1", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": prof}]), 1)
    gw.box_text('[3,"' + frames(a, "box")[0][1] + '",{"status":"Accepted"}]', 2)
    a = gw.backend_text('[2,"c1","ClearChargingProfile",{}]', 3)
    assert frames(a, "backend") == [[3, "c1", {"status": "Accepted"}]]
    assert frames(a, "box")[0][2:] == ["ClearChargingProfile", {"id": 9}]
    a = gw.backend_text('[2,"c2","ClearChargingProfile",{}]', 4)
    assert frames(a, "backend") == [[3, "c2", {"status": "Unknown"}]]


def test_rule6_new_backend_connection_starts_with_boot():
    gw = Gateway("gw-")
    online(gw)
    gw.backend_disconnected(5)
    a = gw.backend_connected(6)
    f = frames(a, "backend")[0]
    assert f[2] == "BootNotification" and f[3] == json.loads(BOOT)


def test_rule7_local_answers_while_backend_down():
    gw = Gateway("gw-", auth_policy="cache")
    gw.wall_offset_ms = 1767225600000
    gw.box_connected(0)
    f = frames(gw.box_text('[2,"1","BootNotification",' + BOOT + ']', 0), "box")[0]
    assert f[2]["status"] == "Accepted" and f[2]["currentTime"] == "2026-01-01T00:00:00Z"
    assert frames(gw.box_text('[2,"2","Heartbeat",{}]', 1000), "box")[0][2]["currentTime"].endswith("01Z")
    assert frames(gw.box_text('[2,"3","Authorize",{"idTag":"NEW"}]', 0), "box")[0][2] == {"idTagInfo": {"status": "Invalid"}}
    a = gw.box_text('[2,"4","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available"}]', 0)
    assert frames(a, "box")[0] == [3, "4", {}]
    assert frames(gw.box_text('[2,"5","Reset",{}]', 0), "box")[0][2] == "GenericError"
    gw2 = Gateway("gw-", auth_policy="accept")
    assert frames(gw2.box_text('[2,"3","Authorize",{"idTag":"NEW"}]', 0), "box")[0][2]["idTagInfo"]["status"] == "Accepted"


def test_rule7_cache_learns_from_backend():
    gw = Gateway("gw-")
    online(gw)
    gw.box_text('[2,"a1","Authorize",{"idTag":"CARD1"}]', 1)
    a = gw.backend_text('[3,"a1",{"idTagInfo":{"status":"Accepted"}}]', 2)
    assert ("save", {"k": "auth", "tag": "CARD1", "ok": True}) in a
    gw.backend_disconnected(3)
    f = frames(gw.box_text('[2,"a2","Authorize",{"idTag":"CARD1"}]', 4), "box")[0]
    assert f[2]["idTagInfo"]["status"] == "Accepted"


def test_rule7_status_sent_after_outage():
    gw = Gateway("gw-")
    online(gw)
    gw.backend_disconnected(1)
    gw.box_text('[2,"s","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Charging"}]', 2)
    a = gw.backend_connected(3)
    boot = frames(a, "backend")[0]
    a = gw.backend_text('[3,"' + boot[1] + '",{"status":"Accepted","currentTime":"2026-01-01T00:00:00Z","interval":60}]', 4)
    f = frames(a, "backend")[0]
    assert f[2] == "StatusNotification" and f[3]["status"] == "Charging"


def run_offline_transaction(gw, n, t):
    a = gw.box_text('[2,"st%d","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":%d,'
                    '"timestamp":"2026-01-01T00:00:00Z"}]' % (n, n * 100), t)
    assert persisted_first(a)
    ptx = frames(a, "box")[0][2]["transactionId"]
    a = gw.box_text('[2,"mv%d","MeterValues",{"connectorId":1,"transactionId":%d,"meterValue":[{"timestamp":'
                    '"2026-01-01T00:01:00Z","sampledValue":[{"value":"%d"}]}]}]' % (n, ptx, n * 100 + 5), t)
    assert persisted_first(a) and frames(a, "box")[0] == [3, "mv%d" % n, {}]
    a = gw.box_text('[2,"sp%d","StopTransaction",{"transactionId":%d,"meterStop":%d,'
                    '"timestamp":"2026-01-01T00:02:00Z"}]' % (n, ptx, n * 100 + 9), t)
    assert persisted_first(a)
    return ptx


def drain(gw, t, backend_tx, tag_status="Accepted", events=None):
    """Play a backend that answers everything (idTags with `tag_status`); returns the CALLs it received. `events`:
    a list that collects the gateway's events meanwhile."""
    got = []
    a = gw.backend_connected(t)
    while True:
        if events is not None:
            events.extend(x[1:] for x in a if x[0] == "event")
        calls = frames(a, "backend")
        if not calls:
            return got
        c = calls[0]
        got.append(c)
        if c[2] == "StartTransaction":
            backend_tx[0] += 1
            ans = {"transactionId": backend_tx[0], "idTagInfo": {"status": tag_status}}
        elif c[2] == "BootNotification":
            ans = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}
        else:
            ans = {}
        a = gw.backend_text(json.dumps([3, c[1], ans]), t)


def test_rule8_to_10_offline_transactions_replayed_in_order_with_backend_ids():
    gw = Gateway("gw-")
    gw.box_connected(0)
    gw.box_text('[2,"b","BootNotification",' + BOOT + ']', 0)
    p1 = run_offline_transaction(gw, 1, 1)
    p2 = run_offline_transaction(gw, 2, 2)
    assert p1 != p2 and gw.status()["queued_messages"] == 6
    got = drain(gw, 3, [500])
    actions = [c[2] for c in got]
    assert actions == ["BootNotification"] + ["StartTransaction", "MeterValues", "StopTransaction"] * 2
    assert got[2][3]["transactionId"] == 501 and got[3][3]["transactionId"] == 501
    assert got[5][3]["transactionId"] == 502 and got[6][3]["transactionId"] == 502
    assert len(set(c[1] for c in got)) == len(got)
    assert gw.status()["queued_messages"] == 0
    a = gw.box_text('[2,"late","MeterValues",{"connectorId":1,"transactionId":%d,"meterValue":[]}]' % p2, 4)
    assert frames(a, "backend")[0][3]["transactionId"] == 502
    a = gw.backend_text('[2,"rs","RemoteStopTransaction",{"transactionId":502}]', 5)
    assert frames(a, "box")[0][2:] == ["RemoteStopTransaction", {"transactionId": p2}]


def test_rule10_offline_transaction_rejected_on_replay_is_reported():
    gw = Gateway("gw-")
    gw.box_connected(0)
    gw.box_text('[2,"b","BootNotification",' + BOOT + ']', 0)
    ptx = run_offline_transaction(gw, 1, 1)
    events = []
    got = drain(gw, 3, [700], "Blocked", events)
    assert [c[2] for c in got] == ["BootNotification", "StartTransaction", "MeterValues", "StopTransaction"]
    entry = {"transaction_id": 701, "provisional_id": ptx, "id_tag": "T", "connector_id": 1,
             "start": "2026-01-01T00:00:00Z", "status": "Blocked"}
    assert ("backend_rejected_offline_tx", entry) in events
    st = gw.status()
    assert st["rejected_offline_tx"] == 1 and st["rejected_offline_recent"] == [entry]
    assert st["queued_messages"] == 0
    # an accepted one is not reported
    gw.backend_disconnected(4)
    run_offline_transaction(gw, 2, 4)
    drain(gw, 5, [800])
    assert gw.status()["rejected_offline_tx"] == 1


def test_rule9_restart_keeps_queue_and_map():
    gw = Gateway("gw1-")
    gw.box_connected(0)
    store = []
    acts = gw.box_text('[2,"b","BootNotification",' + BOOT + ']', 0)
    ptx = None
    for n in range(3):
        acts += gw.box_text('[2,"st%d","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":%d,'
                            '"timestamp":"2026-01-01T00:00:00Z"}]' % (n, n), 1)
    ptx = frames(acts, "box")[-1][2]["transactionId"]
    for x in acts:
        if x[0] in ("append", "save"):
            store.append(dict(x[1]))
    gw2 = Gateway("gw2-")
    gw2.load(store)
    assert gw2.status()["queued_messages"] == 3
    gw2.box_connected(2)
    a = gw2.box_text('[2,"st9","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":9,'
                     '"timestamp":"2026-01-01T00:00:00Z"}]', 3)
    assert frames(a, "box")[0][2]["transactionId"] == ptx + 1
    got = drain(gw2, 4, [0])
    assert [c[2] for c in got] == ["BootNotification"] + ["StartTransaction"] * 4
    gw3 = Gateway("gw3-")
    gw3.load(gw2.snapshot())
    assert gw3.status()["queued_messages"] == 0 and gw3.tx_map[ptx] == 3


def test_rule9_callerror_retried_then_skipped():
    gw = Gateway("gw-", max_attempts=2)
    gw.box_connected(0)
    gw.box_text('[2,"b","BootNotification",' + BOOT + ']', 0)
    gw.box_text('[2,"d","DataTransfer",{"vendorId":"GiroE","data":"abc"}]', 0)
    a = gw.backend_connected(1)
    boot = frames(a, "backend")[0]
    a = gw.backend_text(json.dumps([3, boot[1], {"status": "Accepted", "currentTime": "x", "interval": 1}]), 1)
    dt = frames(a, "backend")[0]
    assert dt[2] == "DataTransfer" and dt[3] == {"vendorId": "GiroE", "data": "abc"}
    a = gw.backend_text('[4,"' + dt[1] + '","InternalError","",{}]', 2)
    assert frames(a, "backend")[0][1] == dt[1]
    a = gw.backend_text('[4,"' + dt[1] + '","InternalError","",{}]', 3)
    assert ("ack", 1) in a and gw.status()["skipped"] == 1


def test_live_transaction_message_without_answer_is_queued():
    gw = Gateway("gw-", answer_timeout_ms=1000)
    online(gw)
    a = gw.box_text('[2,"s1","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
                    '"timestamp":"2026-01-01T00:00:00Z"}]', 10)
    assert frames(a, "backend")[0][1] == "s1"
    a = gw.tick(1010)
    assert persisted_first(a) and a[0][1]["id"] == "s1"
    assert "transactionId" in frames(a, "box")[0][2]


def test_rule11_bound_thins_periodic_meter_values_only():
    gw = Gateway("gw-", max_queue_bytes=1500)
    gw.box_connected(0)
    gw.box_text('[2,"st","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
                '"timestamp":"2026-01-01T00:00:00Z"}]', 0)
    ptx = gw.queue[0]["ptx"]
    acked = []
    for n in range(30):
        signed = ',"format":"SignedData"' if n % 10 == 0 else ''
        a = gw.box_text('[2,"m%d","MeterValues",{"connectorId":1,"transactionId":%d,"meterValue":[{"timestamp":'
                        '"2026-01-01T00:00:00Z","sampledValue":[{"value":"%d"%s}]}]}]' % (n, ptx, n, signed), n)
        acked += [x[1] for x in a if x[0] == "ack"]
    assert acked and gw.queue_bytes <= 1500
    kinds = [r["action"] for r in gw.queue]
    assert kinds[0] == "StartTransaction"
    signed_left = [r for r in gw.queue if "SignedData" in r["payload"]]
    assert len(signed_left) == 3
    assert gw.status()["thinned_out"] == len(acked)


def test_backend_call_while_box_away_gets_error():
    gw = Gateway("gw-")
    gw.backend_connected(0)
    f = frames(gw.backend_text('[2,"r","Reset",{"type":"Hard"}]', 0), "backend")[0]
    assert f[:3] == [4, "r", "GenericError"]


def test_repeated_transaction_message_is_stored_once():
    gw = Gateway("gw-")
    gw.box_connected(0)
    start = ('"StartTransaction",{"connectorId":1,"idTag":"T","meterStart":42,'
             '"timestamp":"2026-01-01T00:00:00Z"}]')
    a1 = gw.box_text('[2,"x1",' + start, 1)
    store = [x[1] for x in a1 if x[0] == "append"]
    gw2 = Gateway("gw2-")
    gw2.load([dict(r) for r in store])
    gw2.box_connected(2)
    a2 = gw2.box_text('[2,"x2",' + start, 3)
    assert [x for x in a2 if x[0] == "append"] == []
    assert frames(a2, "box")[0][2]["transactionId"] == frames(a1, "box")[0][2]["transactionId"]
    assert gw2.status()["queued_messages"] == 1


def test_config_rejects_bad_gateway_url():
    from chargemanager.core.config import validate_config
    ok = {"evses": [{"dev_id": "E1", "address": "WB1", "gateway": {"url": "wss://b.example/ocpp/", "client_id": "x"}}]}
    clean, errors = validate_config(ok)
    assert errors == [] and clean["evses"][0]["gateway"]["auth_policy"] == "cache"
    for url in ("http://b.example/", "ws://", "ws://b.example/?k=1", "wss:/b.example"):
        bad = {"evses": [{"dev_id": "E1", "address": "WB1", "gateway": {"url": url}}]}
        clean, errors = validate_config(bad)
        assert [e["field"] for e in errors] == ["evses[0].gateway.url"], url


def test_rule6_boot_refused_is_asked_again_after_interval():
    gw = Gateway("gw-")
    gw.box_connected(0)
    gw.box_text('[2,"b","BootNotification",' + BOOT + ']', 0)
    boot = frames(gw.backend_connected(0), "backend")[0]
    a = gw.backend_text(json.dumps([3, boot[1], {"status": "Pending", "currentTime": "x", "interval": 10}]), 0)
    assert frames(a, "backend") == [] and not gw.backend_booted
    assert frames(gw.tick(9999), "backend") == []
    again = frames(gw.tick(10000), "backend")
    assert again[0][2] == "BootNotification" and again[0][1] != boot[1]


def test_without_a_known_boot_box_calls_are_answered_locally():
    gw = Gateway("gw-")
    gw.backend_connected(0)
    gw.box_connected(0)
    a = gw.box_text('[2,"h","Heartbeat",{}]', 0)
    assert frames(a, "backend") == [] and frames(a, "box")[0][1] == "h"


def test_rule5_backend_tx_profile_ends_with_its_transaction():
    gw = Gateway("gw-")
    online(gw)
    gw.box_text('[2,"s","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":0,'
                '"timestamp":"2026-01-01T00:00:00Z"}]', 1)
    gw.backend_text('[3,"s",{"transactionId":44,"idTagInfo":{"status":"Accepted"}}]', 1)
    prof = {"chargingProfileId": 3, "transactionId": 44, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative", "chargingSchedule": {"chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 20}]}}
    a = gw.backend_text(json.dumps([2, "p", "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": prof}]), 2)
    gw.box_text('[3,"' + frames(a, "box")[0][1] + '",{"status":"Accepted"}]', 2)
    assert gw.status()["backend_profiles"] == 1
    gw.box_text('[2,"e","StopTransaction",{"transactionId":44,"meterStop":10,"timestamp":"2026-01-01T01:00:00Z"}]', 3)
    assert gw.status()["backend_profiles"] == 0
    assert sends(gw.set_local_limit(1, 6000, 4), "box") == []


def _profile(pid, purpose, stack, limit, unit="A", start=None, periods=None, kind="Absolute", **extra):
    sched = {"chargingRateUnit": unit,
             "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": limit}]}
    if start is not None:
        sched["startSchedule"] = start
    prof = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": sched}
    prof.update(extra)
    return prof


def _keep(gw, connector, prof, now=2):
    gw.backend_text(json.dumps([2, "k%d" % prof["chargingProfileId"], "SetChargingProfile",
                                {"connectorId": connector, "csChargingProfiles": prof}]), now)


def test_backend_limit_none_without_backend_profiles():
    gw = Gateway("gw-")
    online(gw)
    assert gw.backend_limit_ma(1, 5) is None


def test_backend_limit_highest_stack_level_and_own_connector_win():
    gw = Gateway("gw-")
    online(gw)
    _keep(gw, 0, _profile(1, "TxDefaultProfile", 1, 20))
    assert gw.backend_limit_ma(1, 5) == 20000
    _keep(gw, 0, _profile(2, "TxDefaultProfile", 3, 12))
    assert gw.backend_limit_ma(1, 5) == 12000
    _keep(gw, 1, _profile(3, "TxDefaultProfile", 0, 14))  # the connector's own profile overrides connector 0
    assert gw.backend_limit_ma(1, 5) == 14000
    assert gw.backend_limit_ma(2, 5) == 12000


def test_backend_limit_tx_profile_overrides_default_and_max_profile_caps():
    gw = Gateway("gw-")
    online(gw)
    _keep(gw, 1, _profile(1, "TxDefaultProfile", 1, 10))
    _keep(gw, 1, _profile(2, "TxProfile", 1, 16, transactionId=7))
    assert gw.backend_limit_ma(1, 5) == 16000
    _keep(gw, 0, _profile(3, "ChargePointMaxProfile", 1, 13))
    assert gw.backend_limit_ma(1, 5) == 13000


def test_backend_limit_in_watts_uses_phases_and_voltage():
    gw = Gateway("gw-", voltage_v=230, phases=3)
    online(gw)
    _keep(gw, 1, _profile(1, "TxDefaultProfile", 1, 11040, unit="W"))
    assert gw.backend_limit_ma(1, 5) == 16000
    _keep(gw, 1, _profile(1, "TxDefaultProfile", 1, 0, unit="W",
                          periods=[{"startPeriod": 0, "limit": 2300, "numberPhases": 1}]))
    assert gw.backend_limit_ma(1, 5) == 10000


def test_backend_limit_follows_the_schedule_in_wall_time():
    gw = Gateway("gw-")
    online(gw)
    gw.wall_offset_ms = 1767225600000  # 2026-01-01T00:00:00Z at now_ms 0
    periods = [{"startPeriod": 0, "limit": 16}, {"startPeriod": 3600, "limit": 6}]
    _keep(gw, 1, _profile(1, "TxDefaultProfile", 1, 0, start="2026-01-01T00:00:00Z", periods=periods))
    assert gw.backend_limit_ma(1, 60000) == 16000
    assert gw.backend_limit_ma(1, 3600000) == 6000
    # a schedule that starts later does not restrict yet; one whose duration ended no longer does
    _keep(gw, 1, _profile(2, "TxDefaultProfile", 2, 8, start="2026-01-01T02:00:00+01:00"))
    assert gw.backend_limit_ma(1, 60000) == 16000
    assert gw.backend_limit_ma(1, 3600000) == 8000
    ended = _profile(2, "TxDefaultProfile", 2, 8, start="2025-12-31T23:00:00Z")
    ended["chargingSchedule"]["duration"] = 1800
    _keep(gw, 1, ended)
    assert gw.backend_limit_ma(1, 60000) == 16000
    daily = _profile(3, "TxDefaultProfile", 5, 0, start="2025-12-01T00:00:00Z", kind="Recurring",
                     periods=[{"startPeriod": 0, "limit": 10}, {"startPeriod": 7200, "limit": 32}],
                     recurrencyKind="Daily")
    _keep(gw, 1, daily)
    assert gw.backend_limit_ma(1, 60000) == 10000
    assert gw.backend_limit_ma(1, 3 * 3600000) == 32000
    expired = _profile(4, "ChargePointMaxProfile", 1, 6, validTo="2025-12-31T23:00:00Z")
    _keep(gw, 0, expired)
    assert gw.backend_limit_ma(1, 60000) == 10000


def test_backend_limit_gone_after_clear():
    gw = Gateway("gw-")
    online(gw)
    _keep(gw, 1, _profile(1, "TxDefaultProfile", 1, 0))
    assert gw.backend_limit_ma(1, 5) == 0
    gw.backend_text(json.dumps([2, "c1", "ClearChargingProfile", {"id": 1}]), 6)
    assert gw.backend_limit_ma(1, 7) is None
