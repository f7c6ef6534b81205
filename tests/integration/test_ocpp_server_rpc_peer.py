"""OCPP server against an independent peer: a wallbox built on ocpp-rpc (npm) in strict mode, which checks every
frame we send against the official 1.6 schemas (and its own reading of them)."""

import json
import os
import queue
import shutil
import subprocess
import threading

import pytest

from chargemanager.adapters.ocpp_server import OcppServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEER = os.path.join(ROOT, "tests", "integration", "peers", "ocpp_rpc_box.js")
WAIT_S = 20  # only to stop a broken run from hanging; never part of an assertion

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not os.path.isdir(os.path.join(ROOT, "node_modules", "ocpp-rpc")),
    reason="node and ocpp-rpc are installed by `make test` (node-deps)")

EVSES = [
    {"dev_id": "E1", "type": "ocpp16", "address": "RPC1", "id": 1, "phases": 3},
    {"dev_id": "E2", "type": "ocpp16", "address": "RPC2", "id": 1, "phases": 1},
]
PASSWORD = "0123456789abcdef0123"


class RpcBox:
    def __init__(self, port, cbid, password=None, env=None):
        args = ["node", PEER, "ws://127.0.0.1:%d" % port, cbid] + ([password] if password else [])
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=dict(os.environ, **(env or {})))
        self.events = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def next(self, event, pred=lambda e: True):
        """The next event of this kind (others are kept in `seen`)."""
        while True:
            e = self.events.get(timeout=WAIT_S)
            self.seen.append(e)
            if e["event"] == event and pred(e):
                return e

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def call(self, action, payload, tag=None):
        self.send(cmd="call", action=action, payload=payload, tag=tag)
        return self.next("result", lambda e: e["tag"] == tag) if tag is None else None

    def close(self):
        try:
            if self.proc.poll() is None:
                self.send(cmd="close")
                self.proc.wait(WAIT_S)
        except BrokenPipeError:
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def strict_failures(self):
        while not self.events.empty():
            self.seen.append(self.events.get())
        return [e for e in self.seen if e["event"] == "strictFailure"]


@pytest.fixture
def server():
    srv = OcppServer(EVSES, host="127.0.0.1", port=0, password=PASSWORD)
    srv.start()
    yield srv
    srv.stop()


def _limit(params):
    return params["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]


def test_tc_001_boot_and_zero_profile_strict_peer(server):
    box = RpcBox(server.port, "RPC1", PASSWORD)
    try:
        assert box.next("open")["protocol"] == "ocpp1.6"
        boot = box.call("BootNotification", {"chargePointVendor": "npm", "chargePointModel": "ocpp-rpc"})
        assert boot["result"]["status"] == "Accepted"
        profile = box.next("profile")["params"]
        assert _limit(profile) == 0 and profile["csChargingProfiles"]["stackLevel"] == 4
        box.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        server.set_limits({"E1": 13300})
        profile = box.next("profile")["params"]
        assert _limit(profile) == 13.3  # a decimal limit passes ocpp-rpc's multipleOf check
        tx = box.call("StartTransaction", {"connectorId": 1, "idTag": "CARD1", "meterStart": 0,
                                           "timestamp": "2026-01-01T10:00:00.123+01:00"})["result"]
        box.call("MeterValues", {"connectorId": 1, "transactionId": tx["transactionId"], "meterValue": [{
            "timestamp": "2026-01-01T10:00:10Z", "sampledValue": [
                {"value": "13.1", "measurand": "Current.Import", "phase": "L1", "unit": "A"}]}]})
        assert server.snapshot()["E1"]["current_ma"][0] == 13100
        stop = box.call("StopTransaction", {"transactionId": tx["transactionId"], "meterStop": 100,
                                            "timestamp": "2026-01-01T10:30:00Z"})
        assert stop["result"] == {}
        assert box.strict_failures() == []
    finally:
        box.close()


def test_power_unit_box_strict_peer(server):
    box = RpcBox(server.port, "RPC2", PASSWORD, env={"BOX_UNITS": "Power", "BOX_STACK_LEVEL": "0"})
    try:
        box.next("open")
        box.call("BootNotification", {"chargePointVendor": "npm", "chargePointModel": "ocpp-rpc"})
        box.next("profile")
        server.set_limits({"E2": 6000})
        profile = box.next("profile")["params"]
        sched = profile["csChargingProfiles"]["chargingSchedule"]
        assert sched["chargingRateUnit"] == "W" and _limit(profile) == 1380
        result = server.clear_profiles("RPC2")
        assert result == {"status": "Accepted"}
        assert box.next("clear")["params"] == {}
        assert box.strict_failures() == []
    finally:
        box.close()


def test_tc_085_wrong_password_and_unknown_id_strict_peer(server):
    for cbid, password in (("RPC1", "not-the-right-password"), ("RPC1", None), ("NOBODY", PASSWORD)):
        box = RpcBox(server.port, cbid, password)
        try:
            err = box.next("connectError")
            assert err["message"] == ("Unauthorized" if cbid == "RPC1" else "Not Found"), err
        finally:
            box.close()


def test_malformed_frames_from_non_strict_sender(server):
    box = RpcBox(server.port, "RPC1", PASSWORD)
    try:
        box.next("open")
        box.call("BootNotification", {"chargePointVendor": "npm", "chargePointModel": "ocpp-rpc"})
        for text, want in (
                ('[2,"r1","StatusNotification",{"connectorId":1,"status":"Available"}]', "ProtocolError"),
                ('[2,"r2","Heartbeat",null]', "FormationViolation"),
                ('[2,"r3","Teleport",{}]', "NotImplemented"),
                ('[2,"r4","Authorize",{"idTag":123}]', "TypeConstraintViolation")):
            box.send(cmd="raw", text=text)
            msg_id = json.loads(text)[1]
            reply = json.loads(box.next("inbound", lambda e: json.loads(e["text"])[1] == msg_id)["text"])
            assert reply[0] == 4 and reply[2] == want, (text, reply)
        hb = box.call("Heartbeat", {})
        assert hb["result"]["currentTime"].endswith("Z")
    finally:
        box.close()
