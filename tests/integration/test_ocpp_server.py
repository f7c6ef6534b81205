"""OCPP server against real websockets peers over loopback: charge points built on the Python `ocpp` package and raw
websocket clients for malformed frames. Test names follow the OCTT 1.6 CSMS cases where one exists."""

import asyncio
import time
import base64
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chargemanager.adapters.ocpp_server import OcppServer
from ocpp_pybox import close_box, open_box

EVSES = [
    {"dev_id": "E1", "type": "ocpp16", "address": "BOX1", "id": 1, "phases": 3},
    {"dev_id": "E2", "type": "ocpp16", "address": "BOX2", "id": 1, "phases": 1, "stack_level_zero": True},
    {"dev_id": "E3", "type": "ocpp16", "address": "BOX3", "id": 1, "phases": 3, "mode": "monitor"},
    {"dev_id": "E4", "type": "ocpp16", "address": "TWIN", "id": 1, "phases": 3},
    {"dev_id": "E5", "type": "ocpp16", "address": "TWIN", "id": 2, "phases": 3},
]


@pytest.fixture
def server():
    srv = OcppServer(EVSES, host="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def pw_server():
    srv = OcppServer(EVSES, host="127.0.0.1", port=0, password="0123456789abcdef0123")
    srv.start()
    yield srv
    srv.stop()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _raw(port, cbid, subprotocols=("ocpp1.6",), headers=None):
    return await connect("ws://127.0.0.1:%d/%s" % (port, cbid), subprotocols=list(subprotocols),
                         additional_headers=headers, compression=None)


async def _raw_boot(ws):
    await ws.send(json.dumps([2, "boot-1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
    reply = json.loads(await ws.recv())
    assert reply[:2] == [3, "boot-1"] and reply[2]["status"] == "Accepted"


async def _recv_until_result(ws, msg_id):
    """Receive frames (answering the server's CALLs with CALLERROR NotSupported) until the answer to msg_id."""
    while True:
        msg = json.loads(await ws.recv())
        if msg[0] == 2:
            await ws.send(json.dumps([4, msg[1], "NotSupported", "", {}]))
            continue
        if msg[1] == msg_id:
            return msg


def _profile_limit(profile):
    return profile["charging_schedule"]["charging_schedule_period"][0]["limit"]


def test_tc_001_cold_boot_and_default_zero_profile(server):
    async def main():
        box, ws, task = await open_box(server.port, "BOX1")
        res = await box.boot()
        assert res.status == "Accepted" and res.interval > 0
        assert res.current_time.endswith("Z")
        connector, profile = await box.profiles.get()
        assert connector == 1
        assert profile["charging_profile_purpose"] == "TxDefaultProfile"
        assert profile["stack_level"] == 8  # the box's ChargeProfileMaxStackLevel
        assert profile["charging_schedule"]["charging_rate_unit"] == "A"
        assert _profile_limit(profile) == 0
        assert box.calls[0] == "GetConfiguration"
        from ocpp.v16 import call
        await box.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        hb = await box.call(call.Heartbeat())
        assert hb.current_time.endswith("Z")
        await close_box(ws, task)

    run(main())
    state = server.snapshot()["E1"]
    assert state["status"] == "Preparing"
    assert state["profile"] == {"unit": "A", "limit": 0.0, "stack_level": 8}


def test_tc_056_limit_change_arrives_as_new_profile_only_when_changed(server):
    async def main():
        box, ws, task = await open_box(server.port, "BOX1")
        await box.boot()
        _, first = await box.profiles.get()
        assert _profile_limit(first) == 0
        server.set_limits({"E1": 16000})
        _, second = await box.profiles.get()
        assert _profile_limit(second) == 16.0
        assert second["charging_profile_id"] == first["charging_profile_id"]
        server.set_limits({"E1": 16000})  # unchanged: nothing is sent
        server.set_limits({"E1": 10550})
        _, third = await box.profiles.get()
        assert _profile_limit(third) == 10.5  # rounded down, never above the grant
        assert box.profiles.empty()
        await close_box(ws, task)

    run(main())


def test_limits_resent_after_reconnect(server):
    async def main():
        box, ws, task = await open_box(server.port, "BOX1")
        await box.boot()
        await box.profiles.get()
        server.set_limits({"E1": 8000})
        _, p = await box.profiles.get()
        assert _profile_limit(p) == 8.0
        await close_box(ws, task)
        # reconnect without a new BootNotification (OCPP-J §5.4): the limit comes again
        box, ws, task = await open_box(server.port, "BOX1")
        _, p = await box.profiles.get()
        assert _profile_limit(p) == 8.0
        await close_box(ws, task)

    run(main())


def test_stack_level_zero_option_and_power_unit(server):
    async def main():
        box, ws, task = await open_box(server.port, "BOX2", config={
            "ChargeProfileMaxStackLevel": "3", "ChargingScheduleAllowedChargingRateUnit": "Power"})
        await box.boot()
        server.set_limits({"E2": 10000})
        _, p = await box.profiles.get()
        if _profile_limit(p) == 0:
            _, p = await box.profiles.get()
        assert p["stack_level"] == 0
        assert p["charging_schedule"]["charging_rate_unit"] == "W"
        assert _profile_limit(p) == 2300  # 230 V x 10 A x 1 phase
        await close_box(ws, task)

    run(main())


def test_rejected_stack_level_falls_back_to_zero(server):
    async def main():
        box, ws, task = await open_box(server.port, "BOX1", reject_stack_above=0)
        await box.boot()
        _, p = await box.profiles.get()
        assert p["stack_level"] == 0 and _profile_limit(p) == 0
        await close_box(ws, task)

    run(main())
    assert any("stack level 0" in text for _, text in server.stations["BOX1"].events)


def test_monitor_mode_sends_no_profile(server):
    async def main():
        box, ws, task = await open_box(server.port, "BOX3")
        await box.boot()
        server.set_limits({"E3": 16000})
        # a Heartbeat round trip after the limit: anything the server would send has been sent by then
        from ocpp.v16 import call
        await box.call(call.Heartbeat())
        await box.call(call.Heartbeat())
        assert box.profiles.empty()
        await close_box(ws, task)

    run(main())


def test_twin_box_one_profile_per_connector(server):
    async def main():
        box, ws, task = await open_box(server.port, "TWIN")
        await box.boot()
        got = {}
        for _ in range(2):
            cid, p = await box.profiles.get()
            got[cid] = p
        assert sorted(got) == [1, 2]
        assert got[1]["charging_profile_id"] != got[2]["charging_profile_id"]
        server.set_limits({"E5": 6000})
        cid, p = await box.profiles.get()
        assert cid == 2 and _profile_limit(p) == 6.0
        await close_box(ws, task)

    run(main())


def test_tc_067_clear_profiles_command(server):
    async def main():
        box, ws, task = await open_box(server.port, "BOX1")
        await box.boot()
        await box.profiles.get()
        result = await asyncio.to_thread(server.clear_profiles, "BOX1")
        assert result == {"status": "Accepted"}
        assert await box.clears.get() == {}
        await close_box(ws, task)

    run(main())
    # the server notices the closed link on its own thread; a command sent before that gets "disconnected"
    deadline = time.monotonic() + 10
    while "BOX1" in server.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.clear_profiles("BOX1") == {"error": "not connected"}


def test_transaction_and_meter_values_reach_the_snapshot(server):
    from ocpp.v16 import call

    async def main():
        box, ws, task = await open_box(server.port, "BOX1")
        await box.boot()
        start = call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=1000,
                                      timestamp="2026-01-01T10:00:00Z")
        r1 = await box.call(start)
        r2 = await box.call(start)  # resent before the answer was seen: same transaction (A4 #8)
        assert r1.transaction_id == r2.transaction_id
        assert r1.id_tag_info["status"] == "Accepted"
        await box.call(call.MeterValues(connector_id=1, transaction_id=r1.transaction_id, meter_value=[{
            "timestamp": "2026-01-01T10:00:10Z",
            "sampledValue": [
                {"value": "15.9", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "16.1", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
                {"value": "0", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
                {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                {"value": "1.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
            ]}]))
        state = server.snapshot()["E1"]
        assert state["transaction"]["transaction_id"] == r1.transaction_id
        assert state["current_ma"] == [15900, 16100, 0]
        assert state["power_w"] == 7400 and state["energy_wh"] == 1500
        stop = await box.call(call.StopTransaction(meter_stop=2000, timestamp="2026-01-01T11:00:00Z",
                                                   transaction_id=r1.transaction_id, id_tag="TAG1"))
        assert stop.id_tag_info["status"] == "Accepted"
        # StopTransaction for an unknown id is still answered (A4 #6-7)
        stop = await box.call(call.StopTransaction(meter_stop=2000, timestamp="2026-01-01T11:00:00Z",
                                                   transaction_id=-1))
        assert stop.id_tag_info is None
        await close_box(ws, task)

    run(main())
    state = server.snapshot()["E1"]
    assert state["transaction"] is None and state["energy_wh"] == 2000
    assert state["connected"] is False


def test_other_notifications_answered(server):
    from ocpp.v16 import call

    async def main():
        box, ws, task = await open_box(server.port, "BOX1")
        await box.boot()
        await box.call(call.Authorize(id_tag="TAG"))
        r = await box.call(call.DataTransfer(vendor_id="com.example", message_id="x", data="y"))
        assert r.status == "UnknownVendorId"
        await box.call(call.DiagnosticsStatusNotification(status="Idle"))
        await box.call(call.FirmwareStatusNotification(status="Idle"))
        await box.call(call.SecurityEventNotification(type="StartupOfTheDevice", timestamp="2026-01-01T00:00:00Z",
                                                              tech_info="power on"))
        await close_box(ws, task)

    run(main())
    assert any("StartupOfTheDevice" in text for _, text in server.stations["BOX1"].events)


def test_tc_085_wrong_password_refused(pw_server):
    async def main():
        with pytest.raises(InvalidStatus) as e:
            await open_box(pw_server.port, "BOX1", password="wrong-password-123")
        assert e.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as e:
            await open_box(pw_server.port, "BOX1")  # no credentials
        assert e.value.response.status_code == 401
        # right password under another ChargeBox ID's name (username must equal the id)
        token = base64.b64encode(b"BOX2:0123456789abcdef0123").decode()
        with pytest.raises(InvalidStatus) as e:
            await _raw(pw_server.port, "BOX1", headers={"Authorization": "Basic " + token})
        assert e.value.response.status_code == 401
        for header in ("Basic bm9jb2xvbg==",  # "nocolon"
                       "Basic " + base64.b64encode(b"BOX1:").decode(),  # empty password
                       "Basic !!not-base64!!", "Bearer abc"):
            with pytest.raises(InvalidStatus) as e:
                await _raw(pw_server.port, "BOX1", headers={"Authorization": header})
            assert e.value.response.status_code == 401, header
        box, ws, task = await open_box(pw_server.port, "BOX1", password="0123456789abcdef0123")
        assert (await box.boot()).status == "Accepted"
        await close_box(ws, task)

    run(main())


def test_unknown_chargebox_id_refused_404_and_listed(server):
    async def main():
        with pytest.raises(InvalidStatus) as e:
            await _raw(server.port, "STRANGER")
        assert e.value.response.status_code == 404
        for path in ("", "BOX%2F1", "BOX%201", "B" * 300, "%00"):
            with pytest.raises(InvalidStatus) as e:
                await _raw(server.port, path)
            assert e.value.response.status_code == 404, path

    run(main())
    seen = server.seen_unconfigured()
    assert sorted(s["chargebox_id"] for s in seen) == ["BOX 1", "BOX/1", "STRANGER"]
    assert all(s["count"] == 1 for s in seen)


def test_tc_088_subprotocol_negotiation(server):
    async def main():
        for offered in ((), ("ocpp0.1",)):
            with pytest.raises(InvalidStatus) as e:
                await _raw(server.port, "BOX1", subprotocols=offered)
            assert e.value.response.status_code == 400
        ws = await _raw(server.port, "BOX1", subprotocols=("ocpp0.1", "ocpp1.6"))
        assert ws.subprotocol == "ocpp1.6"
        await ws.close()

    run(main())


def test_security_error_before_boot(server):
    async def main():
        ws = await _raw(server.port, "BOX2")
        await ws.send('[2, "h1", "Heartbeat", {}]')
        assert json.loads(await ws.recv())[:3] == [4, "h1", "SecurityError"]
        await _raw_boot(ws)
        await ws.send('[2, "h2", "Heartbeat", {}]')
        assert (await _recv_until_result(ws, "h2"))[0] == 3
        await ws.close()

    run(main())


BAD_FRAMES = [
    # (frame, expected CALLERROR id, expected code); REFERENCE A7 minimum bad-input set
    ("this is not json", "-1", "FormationViolation"),
    ('{"not": "an array"}', "-1", "FormationViolation"),
    ("[]", "-1", "FormationViolation"),
    ('[2, "m1"]', "m1", "FormationViolation"),
    ('[2, "m2", "Heartbeat"]', "m2", "FormationViolation"),
    ('[2, "m3", "Heartbeat", {}, {}, {}]', "m3", "FormationViolation"),
    ('[2, 42, "Heartbeat", {}]', "-1", "FormationViolation"),
    ('[2, "%s", "Heartbeat", {}]' % ("x" * 37), "x" * 37, "FormationViolation"),
    ('[2, "m4", "Heartbeat", null]', "m4", "FormationViolation"),
    ('[2, "m5", "MakeCoffee", {}]', "m5", "NotImplemented"),
    ('[2, "m6", "StatusNotification", {"connectorId": 1, "status": "Available"}]', "m6", "ProtocolError"),
    ('[2, "m7", "StatusNotification", {"connectorId": "one", "errorCode": "NoError", "status": "Available"}]',
     "m7", "TypeConstraintViolation"),
    ('[2, "m8", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"}]',
     "m8", "PropertyConstraintViolation"),
    ('[2, "m9", "Heartbeat", {"extra": 1}]', "m9", "FormationViolation"),
    ('[2, "m10", "MeterValues", {"connectorId": 1, "meterValue": []}]', "m10", "OccurenceConstraintViolation"),
    ('[2, "m11", "Authorize", {"idTag": "%s"}]' % ("T" * 21), "m11", "TypeConstraintViolation"),
    ('[2, "m12", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "yesterday"}]',
     "m12", "PropertyConstraintViolation"),
    ('[2, "m13", "Reset", {"type": "Hard"}]', "m13", "NotSupported"),
    # StopTransaction is answered with a CALLRESULT even with a payload problem (REFERENCE A4 #6): kind 3
    ('[2, "m14", "StopTransaction", {"transactionId": 5, "meterStop": 1, "timestamp": "2026-01-01T00:00:00Z", '
     '"reason": "Sleepy"}]', "m14", None),
]


def test_malformed_frames_get_the_right_callerror_and_connection_stays_usable(server):
    async def main():
        ws = await _raw(server.port, "BOX1")
        await _raw_boot(ws)
        for frame, want_id, want_code in BAD_FRAMES:
            await ws.send(frame)
            reply = await _recv_until_result(ws, want_id)
            if want_code is None:
                assert reply[0] == 3, (frame, reply)
                continue
            assert reply[0] == 4 and reply[2] == want_code, (frame, reply)
            assert isinstance(reply[3], str) and isinstance(reply[4], dict)
        # unknown MessageTypeIds are ignored: no answer; a Heartbeat right after is answered first
        for kind in (0, 1, 5, 99):
            await ws.send(json.dumps([kind, "u%d" % kind, "Heartbeat", {}]))
        await ws.send(b"\x00\x01binary")
        await ws.send('[2, "after", "Heartbeat", {}]')
        binary_reply = await _recv_until_result(ws, "-1")
        assert binary_reply[2] == "FormationViolation"
        reply = await _recv_until_result(ws, "after")
        assert reply[0] == 3 and reply[2]["currentTime"].endswith("Z")
        await ws.close()

    run(main())


def test_oversized_message_closes_with_1009():
    srv = OcppServer(EVSES, host="127.0.0.1", port=0, max_message_bytes=4096)
    srv.start()
    try:
        async def main():
            ws = await _raw(srv.port, "BOX1")
            await _raw_boot(ws)
            await ws.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "y" * 5000}]))
            with pytest.raises(Exception):
                while True:
                    await ws.recv()
            assert ws.close_code == 1009

        run(main())
    finally:
        srv.stop()


def test_new_connection_replaces_half_open_one(server):
    async def main():
        old = await _raw(server.port, "BOX1")
        await _raw_boot(old)
        # the old link is never closed by the client (half-open from the server's view); a new one takes over
        box, ws, task = await open_box(server.port, "BOX1")
        _, p = await box.profiles.get()  # boot known: no new BootNotification needed
        assert _profile_limit(p) == 0
        await old.wait_closed()
        assert old.close_code == 1000
        await close_box(ws, task)

    run(main())


def test_box_that_never_answers_is_disconnected():
    # A box that stops answering CALLs while its socket stays up (REFERENCE A4 #2) is closed so it reconnects.
    srv = OcppServer(EVSES, host="127.0.0.1", port=0, response_timeout_s=0.2, close_after_timeouts=3)
    srv.start()
    try:
        async def main():
            ws = await _raw(srv.port, "BOX1")
            await _raw_boot(ws)
            calls = []
            with pytest.raises(Exception):
                while True:  # read the server's CALLs and never answer them
                    msg = json.loads(await ws.recv())
                    if msg[0] == 2:
                        calls.append(msg[2])
            assert ws.close_code == 1011
            # capability read timed out -> defaults -> zero profile anyway -> status trigger (-> profile retried)
            assert calls[:3] == ["GetConfiguration", "SetChargingProfile", "TriggerMessage"]
            assert calls[3:] in ([], ["SetChargingProfile"])

        run(main())
        assert any("timed out" in text for _, text in srv.stations["BOX1"].events)
        assert any("GetConfiguration failed (Timeout)" in text for _, text in srv.stations["BOX1"].events)
    finally:
        srv.stop()


def _self_signed(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cs.crt", tmp_path / "cs.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_listener_takes_an_ssl_context_security_profile_2(tmp_path):
    # The TLS module will build the context (and `detect`); the server only has to take it.
    import ssl

    from ocpp_pybox import PyBox, basic_auth_header

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    srv = OcppServer(EVSES, host="127.0.0.1", port=0, ssl=server_ctx, password="0123456789abcdef0123")
    srv.start()
    try:
        async def main():
            ws = await connect("wss://localhost:%d/BOX1" % srv.port, subprotocols=["ocpp1.6"], ssl=client_ctx,
                               additional_headers=basic_auth_header("BOX1", "0123456789abcdef0123"))
            box = PyBox("BOX1", ws)
            task = asyncio.get_running_loop().create_task(box.start())
            assert (await box.boot()).status == "Accepted"
            _, p = await box.profiles.get()
            assert _profile_limit(p) == 0
            task.cancel()
            await ws.close()

        run(main())
    finally:
        srv.stop()


def test_gateway_hooks_answer_calls_and_inject_calls(server):
    # The gateway (issue 4) attaches to each connection: it may answer a CALL itself (forwarding it to a backend)
    # and send its own CALLs to the box; it sees every event.
    seen = []

    def attach(conn):
        def hook(c, ev):
            if ev.action == "Authorize":
                c.reply(ev.msg_id, {"idTagInfo": {"status": "Blocked"}})
                c.call("TriggerMessage", {"requestedMessage": "MeterValues"}, ref=("gateway", 1))
                return True
            return False
        conn.call_hook = hook
        conn.observers.append(lambda c, ev: seen.append((type(ev).__name__, getattr(ev, "ref", None))))

    server.on_connect.append(attach)

    async def main():
        from ocpp.v16 import call
        box, ws, task = await open_box(server.port, "BOX1")
        await box.boot()
        r = await box.call(call.Authorize(id_tag="CARD"))
        assert r.id_tag_info["status"] == "Blocked"
        await box.call(call.Heartbeat())  # answered by the station as usual
        while "TriggerMessage:MeterValues" not in box.calls:
            await asyncio.sleep(0.01)
        await box.call(call.Heartbeat())  # after the box's answer on the same link: the server has seen it
        await close_box(ws, task)

    run(main())
    assert ("ResultReceived", ("gateway", 1)) in seen



def test_flood_of_10000_frames_is_answered_in_order_while_another_box_talks(server):
    async def main():
        flood = await _raw(server.port, "BOX1")
        await _raw_boot(flood)
        other = await _raw(server.port, "BOX2")
        await _raw_boot(other)
        n = 10000

        async def send_all():
            for i in range(n):
                await flood.send('[2,"f%d","Heartbeat",{}]' % i)

        sender = asyncio.ensure_future(send_all())
        await other.send('[2,"o1","Heartbeat",{}]')
        assert (await _recv_until_result(other, "o1"))[0] == 3
        answered = 0
        while answered < n:
            msg = json.loads(await flood.recv())
            if msg[0] == 2:
                await flood.send(json.dumps([4, msg[1], "NotSupported", "", {}]))
                continue
            assert msg[:2] == [3, "f%d" % answered]
            answered += 1
        await sender
        await flood.close()
        await other.close()

    run(main())


def test_switch_to_monitor_removes_our_profile_from_the_box(server):
    async def main():
        from ocpp.v16 import call
        box, ws, task = await open_box(server.port, "BOX1")
        await box.boot()
        await box.profiles.get()  # our zero default is on the box
        await box.call(call.Heartbeat())  # its answer has reached the server
        evses = [dict(e, mode="monitor") if e["dev_id"] == "E1" else e for e in EVSES]
        server.update_evses(evses)
        assert await asyncio.wait_for(box.clears.get(), 10) == {"id": 101}
        server.set_limits({"E1": 16000})
        await box.call(call.Heartbeat())
        await box.call(call.Heartbeat())
        assert box.profiles.empty()
        await close_box(ws, task)

    run(main())
