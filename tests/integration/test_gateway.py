"""OCPP gateway end to end: an ocpp-rpc (strict) wallbox -> the gateway process -> a Python `ocpp` backend."""
import asyncio
import json
import os

from gateway_peers import Backend, GatewayProcess, NodeWallbox, wait_for

BOX = "WB-01"
CLIENT = "backend-id-7"
PASSWORD = "a-backend-password-of-16+"
# An OCMF-signed reading as Eichrecht meters send it: quotes, pipes, a non-ASCII byte and an escaped slash.
SIGNED = ('OCMF|{"FV":"1.0","GI":"KEBA KCP30","GS":"17619300","PG":"T9","MV":"Phoenix Contact","RD":[{"TM":'
          '"2026-01-01T10:00:00,000+0000 S","TX":"B","RV":2935.6,"RI":"01-00:98.08.00.FF","RU":"kWh","ST":"G"}]}|'
          '{"SA":"ECDSA-secp256r1-SHA256","SD":"3046022100\u00e9A1/B2"}')
GIRO_E = {"vendorId": "GiroE", "messageId": "PaymentData", "data": '{"pan":"DE00 1234\\u00e4","amount":"12,34 \u20ac"}'}


def config(backend_port, max_current_ma=16000):
    return {"evses": [{"dev_id": "E1", "type": "ocpp16", "address": BOX, "id": 1, "max_current_ma": max_current_ma,
                       "gateway": {"url": "ws://127.0.0.1:%d/ocpp/path/to/resource/" % backend_port,
                                   "password": PASSWORD, "client_id": CLIENT}}]}


def start_tx(n, meter_start):
    return {"connectorId": 1, "idTag": "CARD%02d" % n, "meterStart": meter_start,
            "timestamp": "2026-01-01T10:%02d:00Z" % n}


def meter_values(tx, value, signed=False):
    sv = {"value": SIGNED if signed else str(value), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    if signed:
        sv["format"] = "SignedData"
    return {"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": "2026-01-01T10:30:00Z",
                                                                   "sampledValue": [sv]}]}


async def setup(tmp_path, backend_up=True):
    backend = Backend(password=PASSWORD)
    await backend.start()
    if not backend_up:
        await backend.stop()
    gw = GatewayProcess(str(tmp_path / "data"), config(backend.port))
    await gw.start()
    box = NodeWallbox("ws://127.0.0.1:%d/" % gw.port, BOX)
    await box.start()
    return backend, gw, box


async def teardown(backend, gw, box):
    await box.stop()
    await gw.stop()
    if backend.server is not None and backend.server.is_serving():
        await backend.stop()


def test_transparent_round_trips_both_ways(tmp_path):
    async def main():
        backend, gw, box = await setup(tmp_path)
        try:
            boot = await box.call("BootNotification", {"chargePointVendor": "KEBA", "chargePointModel": "P30"})
            assert boot["status"] == "Accepted" and boot["currentTime"] == "2026-01-01T00:00:00Z"
            # the backend saw the station under its client id, on the configured path, with Basic auth
            assert backend.paths[-1] == "/ocpp/path/to/resource/" + CLIENT
            assert backend.actions(CLIENT)[0] == "BootNotification"
            auth = await box.call("Authorize", {"idTag": "CARD1"})
            assert auth == {"idTagInfo": {"status": "Accepted"}}
            dt = await box.call("DataTransfer", GIRO_E)
            assert dt == {"status": "Accepted", "data": "ok"}
            got = [r for r in backend.received if r["action"] == "DataTransfer"][0]
            assert got["payload"] == GIRO_E
            # backend -> wallbox: RemoteStartTransaction and GetConfiguration through the gateway and back
            from ocpp.v16 import call
            station = backend.stations[CLIENT]
            res = await station.call(call.RemoteStartTransaction(id_tag="CARD1", connector_id=1))
            assert res.status == "Accepted"
            assert box.incoming[-1] == {"incoming": "RemoteStartTransaction",
                                        "params": {"idTag": "CARD1", "connectorId": 1}}
            res = await station.call(call.GetConfiguration(key=["ChargeProfileMaxStackLevel"]))
            assert res.configuration_key[0]["value"] == "8"
            # ids the backend used never reach the box: the gateway mints its own
            assert box.incoming[-1]["incoming"] == "GetConfiguration"
        finally:
            await teardown(backend, gw, box)
    asyncio.run(main())


def test_signed_meter_value_arrives_unchanged(tmp_path):
    async def main():
        backend, gw, box = await setup(tmp_path)
        try:
            await box.call("BootNotification", {"chargePointVendor": "KEBA", "chargePointModel": "P30"})
            start = await box.call("StartTransaction", start_tx(1, 2935600))
            tx = start["transactionId"]
            assert tx == 1001
            await box.call("MeterValues", meter_values(tx, 0, signed=True))
            got = [r for r in backend.received if r["action"] == "MeterValues"][0]
            value = got["payload"]["meterValue"][0]["sampledValue"][0]["value"]
            assert value == SIGNED
            # the frame text the backend read carries the value exactly as JSON.stringify wrote it on the box
            assert json.dumps(SIGNED, ensure_ascii=False)[1:-1] in got["raw"]
        finally:
            await teardown(backend, gw, box)
    asyncio.run(main())


def test_backend_profile_above_local_limit_reaches_box_at_local_limit(tmp_path):
    async def main():
        backend, gw, box = await setup(tmp_path)
        try:
            await box.call("BootNotification", {"chargePointVendor": "KEBA", "chargePointModel": "P30"})
            from ocpp.v16 import call
            profile = {"chargingProfileId": 5, "stackLevel": 2, "chargingProfilePurpose": "TxDefaultProfile",
                       "chargingProfileKind": "Absolute",
                       "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
                           {"startPeriod": 0, "limit": 32.0}, {"startPeriod": 3600, "limit": 10.0}]}}
            res = await backend.stations[CLIENT].call(call.SetChargingProfile(connector_id=1,
                                                                               cs_charging_profiles=profile))
            assert res.status == "Accepted"
            got = [m for m in box.incoming if m["incoming"] == "SetChargingProfile"][-1]["params"]
            periods = got["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"]
            assert [p["limit"] for p in periods] == [16.0, 10.0]
            assert got["csChargingProfiles"]["chargingProfileId"] == 5
        finally:
            await teardown(backend, gw, box)
    asyncio.run(main())


def test_twenty_transactions_during_outage_with_restart(tmp_path):
    async def main():
        backend, gw, box = await setup(tmp_path)
        try:
            await box.call("BootNotification", {"chargePointVendor": "KEBA", "chargePointModel": "P30"})
            await backend.stop()
            sent = []
            for n in range(1, 21):
                if n == 11:
                    # the manager dies mid-outage (no clean shutdown) and comes back on the same port
                    await gw.kill()
                    await gw.start()
                meter = n * 10000
                start = await box.call("StartTransaction", start_tx(n, meter), retry=True)
                ptx = start["transactionId"]
                assert start["idTagInfo"]["status"] in ("Accepted", "Invalid")
                await box.call("MeterValues", meter_values(ptx, meter + 500), retry=True)
                await box.call("MeterValues", meter_values(ptx, 0, signed=True), retry=True)
                await box.call("StopTransaction", {"transactionId": ptx, "meterStop": meter + 900,
                                                   "timestamp": "2026-01-01T11:%02d:00Z" % n}, retry=True)
                sent.append(ptx)
            assert len(set(sent)) == 20
            await backend.start()
            await wait_for(lambda: backend.actions(CLIENT).count("StopTransaction") >= 20, 60,
                           "20 StopTransactions at the backend")
            # give a duplicate, if one were coming, the chance to arrive before counting
            await box.call("Heartbeat", {})
            tx_calls = [r for r in backend.received if r["action"] in ("StartTransaction", "MeterValues",
                                                                       "StopTransaction")]
            assert [r["action"] for r in tx_calls] == ["StartTransaction", "MeterValues", "MeterValues",
                                                       "StopTransaction"] * 20
            assert len(set(r["id"] for r in tx_calls)) == 80
            for n in range(20):
                start, mv1, mv2, stop = tx_calls[4 * n: 4 * n + 4]
                real = 1001 + n
                assert start["payload"]["meterStart"] == (n + 1) * 10000
                assert mv1["payload"]["transactionId"] == real
                assert mv2["payload"]["transactionId"] == real
                assert mv2["payload"]["meterValue"][0]["sampledValue"][0]["value"] == SIGNED
                assert stop["payload"]["transactionId"] == real
                assert stop["payload"]["meterStop"] == (n + 1) * 10000 + 900
            # the first thing on the new backend connection was the station's boot
            after = backend.actions(CLIENT)
            assert after[after.index("StartTransaction") - 1] == "BootNotification"
            # transaction ids the box holds now map to the backend's: a late RemoteStop reaches the box
            from ocpp.v16 import call
            res = await backend.stations[CLIENT].call(call.RemoteStopTransaction(transaction_id=1020))
            assert res.status == "Accepted"
            assert box.incoming[-1]["params"] == {"transactionId": sent[-1]}
        finally:
            await teardown(backend, gw, box)
    asyncio.run(main())
