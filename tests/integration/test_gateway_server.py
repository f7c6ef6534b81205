"""The gateway inside the manager's OCPP server: an ocpp-rpc (strict) wallbox -> OcppServer + GatewayService ->
a Python `ocpp` backend. The server still reads the box's capabilities and sets its own profiles; the backend sees
the box's traffic and nothing of the manager's own."""
import asyncio
import json

from ocpp.v16 import call

from chargemanager.adapters.ocpp_gateway_service import GatewayService
from chargemanager.adapters.ocpp_server import OcppServer
from gateway_peers import Backend, NodeWallbox, wait_for
from test_gateway import GIRO_E, PASSWORD, SIGNED, meter_values, start_tx

BOX = "WB-07"
CLIENT = "backend-wb7"


def config(backend_port):
    return {"evses": [{"dev_id": "E1", "type": "ocpp16", "address": BOX, "id": 1, "phases": 3,
                       "gateway": {"url": "ws://127.0.0.1:%d/cs/" % backend_port, "password": PASSWORD,
                                   "client_id": CLIENT}}]}


class Manager:
    """The OCPP server thread with the gateway service on its loop, on a fixed port across restarts."""

    def __init__(self, cfg, data_dir, port=0):
        self.cfg = cfg
        self.data_dir = data_dir
        self.port = port

    def start(self):
        self.server = OcppServer(self.cfg["evses"], host="127.0.0.1", port=self.port)
        self.port = self.server.start()
        self.gateway = GatewayService(self.server, self.cfg, self.data_dir,
                                      upstream_opts={"backoff_min_s": 0.1, "backoff_max_s": 0.4})
        self.gateway.start()

    def stop(self):
        self.gateway.stop()
        self.server.stop()


async def boot(box, backend):
    res = await box.call("BootNotification", {"chargePointVendor": "Mennekes", "chargePointModel": "Amtron"})
    return res


def test_forwarding_through_the_ocpp_server(tmp_path):
    async def main():
        backend = Backend(password=PASSWORD)
        await backend.start()
        mgr = Manager(config(backend.port), str(tmp_path))
        await asyncio.to_thread(mgr.start)
        box = NodeWallbox("ws://127.0.0.1:%d/" % mgr.port, BOX)
        await box.start()
        try:
            await wait_for(lambda: mgr.gateway.status()["E1"]["connected"], what="backend link")
            res = await boot(box, backend)
            assert res["currentTime"] == "2026-01-01T00:00:00Z"  # the backend's answer, not a local one
            assert backend.actions(CLIENT) == ["BootNotification"]
            # the manager reads the box's capabilities itself; neither the CALL nor its answer reach the backend
            await wait_for(lambda: any(m["incoming"] == "GetConfiguration" for m in box.incoming), what="caps read")
            assert (await box.call("Authorize", {"idTag": "CARD7"}))["idTagInfo"]["status"] == "Accepted"
            assert (await box.call("DataTransfer", GIRO_E))["data"] == "ok"
            start = await box.call("StartTransaction", start_tx(1, 5000))
            assert start["transactionId"] == 1001
            await box.call("MeterValues", meter_values(1001, 0, signed=True))
            got = [r for r in backend.received if r["action"] == "MeterValues"][0]
            assert got["payload"]["meterValue"][0]["sampledValue"][0]["value"] == SIGNED
            assert json.dumps(SIGNED, ensure_ascii=False)[1:-1] in got["raw"]
            assert [r for r in backend.received if r["action"] == "DataTransfer"][0]["payload"] == GIRO_E
            # the load management's view still follows the transaction, under the id the box knows
            await wait_for(lambda: (mgr.server.snapshot()["E1"]["transaction"] or {}).get("transaction_id") == 1001,
                           what="station transaction")
            station = backend.stations[CLIENT]
            res = await station.call(call.RemoteStopTransaction(transaction_id=1001))
            assert res.status == "Accepted"
            assert box.incoming[-1] == {"incoming": "RemoteStopTransaction", "params": {"transactionId": 1001}}
            # backend profile above the local limit: before the load management granted anything the box gets 0,
            # then the local limit, and a lower one at once
            profile = {"chargingProfileId": 77, "stackLevel": 5, "chargingProfilePurpose": "TxDefaultProfile",
                       "chargingProfileKind": "Absolute", "chargingSchedule": {"chargingRateUnit": "A",
                       "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}]}}
            res = await station.call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=profile))
            assert res.status == "Accepted"

            def backend_profiles():
                return [m["params"]["csChargingProfiles"] for m in box.incoming
                        if m["incoming"] == "SetChargingProfile"
                        and m["params"]["csChargingProfiles"]["chargingProfileId"] == 77]
            assert backend_profiles()[-1]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 0.0
            mgr.server.set_limits({"E1": 10000})
            await wait_for(lambda: backend_profiles()[-1]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                           == 10.0, what="backend profile capped at the granted limit")
            mgr.server.set_limits({"E1": 6000})
            await wait_for(lambda: backend_profiles()[-1]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                           == 6.0, what="backend profile capped at the new local limit")
            # the backend got exactly the answers to its own two CALLs, nothing of the manager's (capability read,
            # default profile, the re-sent capped profile)
            assert len(backend.answers) == 2
            stat = mgr.gateway.status()["E1"]
            assert stat["connected"] and stat["queued_messages"] == 0 and stat["wallbox_connected"]
        finally:
            await box.stop()
            await asyncio.to_thread(mgr.stop)
            await backend.stop()
    asyncio.run(main())


def test_outage_and_manager_restart_through_the_ocpp_server(tmp_path):
    async def main():
        backend = Backend(password=PASSWORD)
        await backend.start()
        mgr = Manager(config(backend.port), str(tmp_path))
        await asyncio.to_thread(mgr.start)
        box = NodeWallbox("ws://127.0.0.1:%d/" % mgr.port, BOX)
        await box.start()
        try:
            await boot(box, backend)
            await backend.stop()
            await wait_for(lambda: not mgr.gateway.status()["E1"]["connected"], what="link down")
            sent = []
            for n in range(1, 7):
                if n == 4:
                    await asyncio.to_thread(mgr.stop)
                    await asyncio.to_thread(mgr.start)
                start = await box.call("StartTransaction", start_tx(n, n * 1000), retry=True)
                ptx = start["transactionId"]
                await box.call("MeterValues", meter_values(ptx, n * 1000 + 5), retry=True)
                await box.call("StopTransaction", {"transactionId": ptx, "meterStop": n * 1000 + 9,
                                                   "timestamp": "2026-01-01T11:00:00Z"}, retry=True)
                sent.append(ptx)
            assert mgr.gateway.status()["E1"]["queued_messages"] == 18
            await backend.start()
            await wait_for(lambda: backend.actions(CLIENT).count("StopTransaction") >= 6, 60, "replay")
            tx = [r for r in backend.received if r["action"] in ("StartTransaction", "MeterValues",
                                                                 "StopTransaction")]
            assert [r["action"] for r in tx] == ["StartTransaction", "MeterValues", "StopTransaction"] * 6
            for n in range(6):
                assert tx[3 * n]["payload"]["meterStart"] == (n + 1) * 1000
                assert tx[3 * n + 1]["payload"]["transactionId"] == 1001 + n
                assert tx[3 * n + 2]["payload"]["transactionId"] == 1001 + n
            await wait_for(lambda: mgr.gateway.status()["E1"]["queued_messages"] == 0, what="queue empty")
        finally:
            await box.stop()
            await asyncio.to_thread(mgr.stop)
            if backend.server.is_serving():
                await backend.stop()
    asyncio.run(main())


def test_gateway_state_in_get_status_and_config_change(tmp_path):
    """The manager's runtime (OCPP service with the gateway): get_status over HTTP shows the link's state; a new
    configuration re-points the link without a restart."""
    from chargemanager.adapters.store import DataStore
    from chargemanager.runtime import Runtime
    from httpclient import call as http

    async def main():
        backend = Backend(password=PASSWORD)
        await backend.start()
        other = Backend(password=PASSWORD)
        await other.start()
        store = DataStore(str(tmp_path))
        cfg, _ = store.load_config()
        cfg["evses"] = config(backend.port)["evses"]
        store.save_config(cfg)
        rt = Runtime(str(tmp_path), http_port=0, ocpp_port=0, host="127.0.0.1")
        rt.auth.set_password("1234abcd")
        await asyncio.to_thread(rt.start)
        url = "http://127.0.0.1:%d/cnf?cmd=get_status" % rt.http_port
        try:
            await wait_for(lambda: http(url)[2]["gateway"]["E1"]["connected"], what="gateway connected in status")
            st = (await asyncio.to_thread(http, url))[2]["gateway"]["E1"]
            assert st["queued_messages"] == 0 and st["last_error"] == "" and st["wallbox_connected"] is False
            # a wallbox on the manager's OCPP port boots through to the backend
            box = NodeWallbox("ws://127.0.0.1:%d/" % rt.ocpp_port, BOX)
            await box.start()
            try:
                res = await boot(box, backend)
                assert res["currentTime"] == "2026-01-01T00:00:00Z" and backend.actions(CLIENT) == ["BootNotification"]
                await wait_for(lambda: http(url)[2]["gateway"]["E1"]["wallbox_connected"], what="box in status")
            finally:
                await box.stop()
            await other.stop()
            new = json.loads(json.dumps(rt.config))
            new["evses"][0]["gateway"]["url"] = "ws://127.0.0.1:%d/other/" % other.port
            status, _, body = await asyncio.to_thread(http, "http://127.0.0.1:%d/cnf?cmd=set_config" % rt.http_port,
                                                      "POST", {"config": new})
            assert status == 200, body
            # the other backend is down: the re-pointed link reports it
            await wait_for(lambda: "Connect" in http(url)[2]["gateway"]["E1"]["last_error"] or
                           "refused" in http(url)[2]["gateway"]["E1"]["last_error"], what="new url in use")
            assert http(url)[2]["gateway"]["E1"]["connected"] is False
        finally:
            await asyncio.to_thread(rt.shutdown)
            await backend.stop()
    asyncio.run(main())


def test_offline_transaction_the_backend_rejects_shows_in_status_and_audit_log(tmp_path):
    """The box charged on the gateway's local answer during an outage; on replay the backend blocks the idTag: the
    manager's get_status and its audit log say so (the charge itself is over; nothing is stopped)."""
    from chargemanager.adapters.store import DataStore
    from chargemanager.runtime import Runtime
    from httpclient import call as http

    async def main():
        backend = Backend(password=PASSWORD)
        await backend.start()
        store = DataStore(str(tmp_path))
        cfg, _ = store.load_config()
        cfg["evses"] = config(backend.port)["evses"]
        store.save_config(cfg)
        rt = Runtime(str(tmp_path), http_port=0, ocpp_port=0, host="127.0.0.1")
        rt.auth.set_password("1234abcd")
        await asyncio.to_thread(rt.start)
        base = "http://127.0.0.1:%d/cnf?cmd=" % rt.http_port

        def gw():
            return http(base + "get_status")[2]["gateway"]["E1"]
        box = NodeWallbox("ws://127.0.0.1:%d/" % rt.ocpp_port, BOX)
        try:
            await wait_for(lambda: gw()["connected"], what="gateway connected")
            await box.start()
            await boot(box, backend)
            await backend.stop()
            await wait_for(lambda: not gw()["connected"], what="link down")
            start = await box.call("StartTransaction", start_tx(3, 3000), retry=True)
            ptx = start["transactionId"]
            await box.call("StopTransaction", {"transactionId": ptx, "meterStop": 3500,
                                               "timestamp": "2026-01-01T11:00:00Z"}, retry=True)
            assert gw()["rejected_offline_tx"] == 0
            backend.blocked.add("CARD03")
            await backend.start()
            await wait_for(lambda: gw()["rejected_offline_tx"] == 1, 60, "rejection in get_status")
            entry = {"transaction_id": 1001, "provisional_id": ptx, "id_tag": "CARD03", "connector_id": 1,
                     "start": "2026-01-01T10:03:00Z", "status": "Blocked"}
            assert gw()["rejected_offline_recent"] == [entry]

            def audited():
                return [e for e in http(base + "get_audit_log")[2]["entries"]
                        if e["kind"] == "gateway_offline_tx_rejected"]
            await wait_for(lambda: audited(), what="audit record")
            record = audited()[0]
            assert dict((k, record[k]) for k in entry) == entry and record["dev_id"] == "E1"
            await wait_for(lambda: gw()["queued_messages"] == 0, what="queue delivered")
            assert backend.actions(CLIENT).count("StopTransaction") == 1
        finally:
            await box.stop()
            await asyncio.to_thread(rt.shutdown)
            if backend.server.is_serving():
                await backend.stop()
    asyncio.run(main())
