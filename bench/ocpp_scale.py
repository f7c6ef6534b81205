"""OCPP server at scale: N simulated wallboxes connected at once, each sending MeterValues every 10 s.

The server runs in its own process (as on the appliance), the wallboxes in this one (one asyncio loop, raw
websockets clients that speak just enough OCPP 1.6). For each N the bench changes every box's limit R times and
prints the time from the limit command being handed to the server (`set_limits` returning) to each box receiving
its new SetChargingProfile: p50/p99/max over all boxes and rounds, and the worst "last box" of a round; plus the
server process's resident memory. Targets (issue 3): N=500 all boxes within 100 ms; server < 250 MB at N=1000.

Usage: .venv/bin/python bench/ocpp_scale.py [N ...] (default 100 500 1000)
"""

import asyncio
import json
import multiprocessing
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "app"))

ROUNDS = 5
METER_INTERVAL_S = 10
CONNECT_CONCURRENCY = 100


def _rss_mb(pid="self"):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def server_main(conn, n):
    """Child process: the OCPP server; obeys ("limits", {...}) and ("rss",) from the pipe."""
    from chargemanager.adapters.ocpp_server import OcppServer
    evses = [{"dev_id": "E%d" % i, "type": "ocpp16", "address": "BOX%04d" % i, "id": 1, "phases": 3}
             for i in range(1, n + 1)]
    srv = OcppServer(evses, host="127.0.0.1", port=0, ping_interval_s=30)
    conn.send(srv.start())
    while True:
        cmd = conn.recv()
        if cmd[0] == "limits":
            srv.set_limits(cmd[1])
            conn.send(time.monotonic())
        elif cmd[0] == "apply_cpu":
            conn.send(srv.last_apply_cpu_ms)
        elif cmd[0] == "rss":
            conn.send(_rss_mb())
        elif cmd[0] == "stop":
            srv.stop()
            conn.send("stopped")
            return


class Box(asyncio.Protocol):
    """A minimal OCPP 1.6 wallbox: websockets' sans-I/O client protocol on a plain asyncio transport, so that a
    thousand of them in one process cost little and the measured time is the server's, not the simulator's."""

    def __init__(self, cbid, url):
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri
        self.cbid = cbid
        self.proto = ClientProtocol(parse_uri(url + cbid), subprotocols=["ocpp1.6"])
        self.limits = []  # (monotonic s, limit)
        self.transport = None
        self.open = asyncio.get_running_loop().create_future()
        self.n = 0

    def _id(self):
        self.n += 1
        return "%s-%d" % (self.cbid, self.n)

    async def connect(self, port):
        await asyncio.get_running_loop().create_connection(lambda: self, "127.0.0.1", port)
        await self.open
        self.send([2, self._id(), "BootNotification", {"chargePointVendor": "bench", "chargePointModel": "sim"}])

    def connection_made(self, transport):
        self.transport = transport
        self.proto.send_request(self.proto.connect())
        self._flush()

    def _flush(self):
        for data in self.proto.data_to_send():
            if data:
                self.transport.write(data)

    def send(self, msg):
        self.proto.send_text(json.dumps(msg).encode())
        self._flush()

    def data_received(self, data):
        now = time.monotonic()
        self.proto.receive_data(data)
        for ev in self.proto.events_received():
            if not hasattr(ev, "opcode"):  # the handshake response
                if not self.open.done():
                    self.open.set_result(True)
                continue
            if ev.opcode.name != "TEXT":
                continue
            msg = json.loads(ev.data)
            if msg[0] != 2:
                continue
            action, payload = msg[2], msg[3]
            if action == "GetConfiguration":
                result = {"configurationKey": [
                    {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "4"},
                    {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
                    {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "8"}]}
            elif action == "SetChargingProfile":
                limit = payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                self.limits.append((now, limit))
                result = {"status": "Accepted"}
            else:
                self.send([4, msg[1], "NotSupported", "", {}])
                continue
            self.send([3, msg[1], result])
        self._flush()

    async def meter_loop(self, offset_s):
        await asyncio.sleep(offset_s)
        while True:
            self.send([2, self._id(), "MeterValues", {"connectorId": 1, "meterValue": [{
                "timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
                    {"value": "10.0", "measurand": "Current.Import", "phase": p, "unit": "A"}
                    for p in ("L1", "L2", "L3")] + [{"value": "6900", "measurand": "Power.Active.Import"}]}]}])
            await asyncio.sleep(METER_INTERVAL_S)


async def wait_for_limit(boxes, limit, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while any(not b.limits or b.limits[-1][1] != limit for b in boxes):
        if time.monotonic() > deadline:
            missing = sum(1 for b in boxes if not b.limits or b.limits[-1][1] != limit)
            raise RuntimeError("%d boxes did not get limit %s" % (missing, limit))
        await asyncio.sleep(0.005)


def _loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def pct(values, p):
    values = sorted(values)
    k = min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))
    return values[k]


async def run_n(n):
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=server_main, args=(child, n), daemon=True)
    proc.start()
    port = parent.recv()
    url = "ws://127.0.0.1:%d/" % port
    boxes = [Box("BOX%04d" % i, url) for i in range(1, n + 1)]
    sem = asyncio.Semaphore(CONNECT_CONCURRENCY)
    t0 = time.monotonic()

    async def connect(b):
        async with sem:
            await b.connect(port)

    await asyncio.gather(*(connect(b) for b in boxes))
    tasks = [asyncio.ensure_future(b.meter_loop(i * METER_INTERVAL_S / n)) for i, b in enumerate(boxes)]
    await wait_for_limit(boxes, 0.0)
    connect_s = time.monotonic() - t0
    latencies, lasts, apply_cpu = [], [], []
    loop = asyncio.get_running_loop()
    for r in range(ROUNDS):
        amps = 6 + r
        limits = {"E%d" % i: amps * 1000 for i in range(1, n + 1)}
        parent.send(("limits", limits))
        t_cmd = await loop.run_in_executor(None, parent.recv)
        await wait_for_limit(boxes, float(amps))
        per_box = [b.limits[-1][0] - t_cmd for b in boxes]
        parent.send(("apply_cpu",))
        apply_cpu.append(parent.recv())
        latencies += per_box
        lasts.append(max(per_box))
        await asyncio.sleep(1)
    parent.send(("rss",))
    rss = parent.recv()
    parent.send(("stop",))
    parent.recv()
    for t in tasks:
        t.cancel()
    for b in boxes:
        b.transport.abort()
    proc.join(10)
    ms = [x * 1000 for x in latencies]
    return {"n": n, "connect_s": connect_s, "p50": pct(ms, 50), "p99": pct(ms, 99), "max": max(ms),
            "last_worst": max(lasts) * 1000, "apply_cpu_ms": max(apply_cpu), "rss_mb": rss, "client_rss_mb": _rss_mb()}


def main(argv):
    sizes = [int(a) for a in argv] or [100, 500, 1000]
    print("OCPP server scale: limit change -> SetChargingProfile at every box (%d rounds, MeterValues every %d s)"
          % (ROUNDS, METER_INTERVAL_S))
    print("load average before: %s (other work on this machine inflates the times)" % _loadavg())
    print("| N boxes | all connected+zero profile s | p50 ms | p99 ms | max ms | server CPU per change ms "
          "| server RSS MB |")
    print("|--------:|-----------------------------:|-------:|-------:|-------:|-------------------------:"
          "|--------------:|")
    for n in sizes:
        r = asyncio.run(run_n(n))
        print("| %7d | %28.2f | %6.1f | %6.1f | %6.1f | %24.1f | %13.1f |" % (
            r["n"], r["connect_s"], r["p50"], r["p99"], r["max"], r["apply_cpu_ms"], r["rss_mb"]))
        sys.stdout.flush()
    print("load average after: %s" % _loadavg())
    print("targets: N=500 max <= 100 ms; server RSS < 250 MB at N=1000")


if __name__ == "__main__":
    main(sys.argv[1:])
