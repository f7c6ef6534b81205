"""OCPP server at scale: N simulated wallboxes connected at once, each sending MeterValues every 10 s.

Two tables. (1) "server": the OCPP server alone in its own process; the limit command is handed to it directly.
(2) "manager": the whole charging manager (`python -m chargemanager run`) with N OCPP EVSEs sharing a site limit
`16000 * N * AVAIL / 100`; the grid operator's `set_cm_vars AVAIL=…` changes every box's limit (8 A <-> 16 A).
Both print the time from the command returning to each box receiving its new SetChargingProfile: p50/p99/max over
all boxes and rounds; plus, for the manager, the control tick's CPU time (the largest of every tick during the run,
`tick_cpu_max_ms`), the OCPP thread's CPU time to send one change to every box, the process's memory, and the garbage
collector's work (adapters/gcpolicy.py). A box's time is taken when its frame arrives; the simulated boxes answer
after the frames that arrived in the same read were timestamped (one process plays all boxes; a real box does not
wait for the others).
The wallboxes run in this process (one asyncio loop, websockets' sans-I/O client on plain transports, so the
simulator costs little). Targets (issue 3): N=500 all boxes within 100 ms; tick <= 20 ms at N=1000; whole process
< 250 MB at N=1000. Other work on the machine inflates the times: the load average is printed.

Usage: .venv/bin/python bench/ocpp_scale.py [--server-only|--manager-only] [N ...] (default 100 500 1000)
"""

import asyncio
import base64
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

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
                # Answered after the frames that arrived together with this one were timestamped: a real box does
                # not wait for a thousand others to answer first. The manager still gets (and handles) every answer.
                asyncio.get_running_loop().call_soon(self.send, [3, msg[1], {"status": "Accepted"}])
                continue
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
            "last_best": min(lasts) * 1000, "last_median": pct(lasts, 50) * 1000, "apply_cpu_ms": max(apply_cpu), "rss_mb": rss, "client_rss_mb": _rss_mb()}


PASSWORD = "bench-password-1234"


def _http(port, query, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%d/cnf?%s" % (port, query), data=data,
                                 method="POST" if body is not None else "GET")
    token = base64.b64encode(("admin:" + PASSWORD).encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


class Manager:
    def __init__(self, n):
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="ocpp-bench-")
        # The configuration is written before the start: for N=1000 it is larger than the API's body limit.
        from chargemanager.adapters.store import DataStore
        from chargemanager.core.config import default_config, validate_config
        config = default_config()
        config["site"].update({"max_current_ma": "16000 * %d * AVAIL / 100" % n, "max_power_w": 10 ** 9})
        config["evses"] = [{"dev_id": "E%d" % i, "type": "ocpp16", "address": "BOX%04d" % i, "id": 1,
                            "phases": 3} for i in range(1, n + 1)]
        clean, errors = validate_config(config)
        assert not errors, errors
        DataStore(self.dir).save_config(clean)
        py = sys.executable
        subprocess.run([py, "-m", "chargemanager", "set-password", "--data", self.dir, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True, cwd=ROOT)
        self.proc = subprocess.Popen([py, "-m", "chargemanager", "run", "--data", self.dir, "--host", "127.0.0.1",
                                      "--http-port", "0", "--ocpp-port", "0"], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:
            m = re.search(r"http listening on port (\d+)", line)
            if m:
                self.http_port = int(m.group(1))
                break
        # keep draining the log so the manager never blocks on a full pipe
        import threading
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        _http(self.http_port, "cmd=set_cm_vars&name=AVAIL&val=100")
        while True:
            status = _http(self.http_port, "cmd=get_status")
            if status.get("ocpp", {}).get("running"):
                self.ocpp_port = status["ocpp"]["port"]
                break
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def run_manager(n):
    loop = asyncio.get_running_loop()
    mgr = await loop.run_in_executor(None, Manager, n)
    try:
        url = "ws://127.0.0.1:%d/" % mgr.ocpp_port
        boxes = [Box("BOX%04d" % i, url) for i in range(1, n + 1)]
        sem = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(b):
            async with sem:
                await b.connect(mgr.ocpp_port)

        await asyncio.gather(*(connect(b) for b in boxes))
        await wait_for_limit(boxes, 0.0)
        for b in boxes:
            b.send([2, b._id(), "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                       "status": "Charging"}])
        await wait_for_limit(boxes, 16.0, timeout_s=60)
        tasks = [asyncio.ensure_future(b.meter_loop(i * METER_INTERVAL_S / n)) for i, b in enumerate(boxes)]
        await asyncio.sleep(2)
        latencies, lasts, ticks, http_ms, apply_cpu = [], [], [], [], []
        for r in range(ROUNDS):
            avail, amps = (50, 8.0) if r % 2 == 0 else (100, 16.0)
            t_call = time.monotonic()
            await loop.run_in_executor(None, _http, mgr.http_port, "cmd=set_cm_vars&name=AVAIL&val=%d" % avail)
            t_ret = time.monotonic()
            http_ms.append((t_ret - t_call) * 1000)
            await wait_for_limit(boxes, amps)
            per_box = [(b.limits[-1][0] - t_ret) * 1000 for b in boxes]
            latencies += per_box
            lasts.append(max(per_box))
            await asyncio.sleep(1.5)
            status = await loop.run_in_executor(None, _http, mgr.http_port, "cmd=get_status")
            ticks.append(status["tick_cpu_max_ms"])
            apply_cpu.append(status["ocpp"].get("last_apply_cpu_ms", float("nan")))
        for _ in range(3):  # idle ticks with MeterValues flowing
            await asyncio.sleep(1)
            ticks.append((await loop.run_in_executor(None, _http, mgr.http_port, "cmd=get_status"))["tick_cpu_max_ms"])
        status = await loop.run_in_executor(None, _http, mgr.http_port, "cmd=get_status")
        gc_status = status.get("gc") or {}
        rss = _rss_mb(mgr.proc.pid)
        for t in tasks:
            t.cancel()
        for b in boxes:
            b.transport.abort()
    finally:
        await loop.run_in_executor(None, mgr.stop)
    return {"n": n, "p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies),
            "last_best": min(lasts), "last_median": pct(lasts, 50), "http_ms": max(http_ms), "tick_ms": max(ticks), "rss_mb": rss,
            "gc": gc_status, "apply_cpu_ms": max(apply_cpu)}


def main(argv):
    modes = ("server", "manager")
    if "--server-only" in argv:
        modes = ("server",)
    elif "--manager-only" in argv:
        modes = ("manager",)
    sizes = [int(a) for a in argv if not a.startswith("--")] or [100, 500, 1000]
    if "server" in modes:
        server_table(sizes)
    if "manager" in modes:
        manager_table(sizes)
    print("targets: N=500 max <= 100 ms; tick <= 20 ms at N=1000; process < 250 MB at N=1000")


def manager_table(sizes):
    print()
    print("Whole manager: set_cm_vars AVAIL returns -> SetChargingProfile at every box (%d rounds, 16 A <-> 8 A)"
          % ROUNDS)
    print("(times count from the HTTP answer; below 0: the box had its profile before the answer arrived, because the"
          " tick runs as soon as the variable is stored)")
    print("load average before: %s" % _loadavg())
    gcs = []
    print("| N boxes | p50 ms | p99 ms | max ms | last box: best / median round ms | set_cm_vars call ms "
          "| tick CPU ms (max) | profiles out CPU ms (max) | manager RSS MB |")
    print("|--------:|-------:|-------:|-------:|---------------------------------:|--------------------:"
          "|------------------:|--------------------------:|---------------:|")
    for n in sizes:
        r = asyncio.run(run_manager(n))
        print("| %7d | %6.1f | %6.1f | %6.1f | %14.1f / %16.1f | %19.1f | %17.2f | %25.1f | %14.1f |" % (
            r["n"], r["p50"], r["p99"], r["max"], r["last_best"], r["last_median"], r["http_ms"], r["tick_ms"],
            r["apply_cpu_ms"], r["rss_mb"]))
        gcs.append((r["n"], r["gc"]))
        sys.stdout.flush()
    print("load average after: %s" % _loadavg())
    print("tick CPU: the largest of all ticks during the run (get_status tick_cpu_max_ms). Garbage collection runs"
          " between ticks (adapters/gcpolicy.py); per N, collections young/middle/full and their total ms:")
    for n, g in gcs:
        print("  N=%d: %s collections, %s ms; %s frozen objects, last refresh %s ms" % (
            n, g.get("collections"), g.get("collect_ms"), g.get("frozen"), g.get("last_refresh_ms")))


def server_table(sizes):
    print("OCPP server scale: limit change -> SetChargingProfile at every box (%d rounds, MeterValues every %d s)"
          % (ROUNDS, METER_INTERVAL_S))
    print("load average before: %s (other work on this machine inflates the times)" % _loadavg())
    print("| N boxes | all connected+zero profile s | p50 ms | p99 ms | max ms | last box: best / median round ms "
          "| server CPU per change ms | server RSS MB |")
    print("|--------:|-----------------------------:|-------:|-------:|-------:|---------------------------------:"
          "|-------------------------:|--------------:|")
    for n in sizes:
        r = asyncio.run(run_n(n))
        print("| %7d | %28.2f | %6.1f | %6.1f | %6.1f | %14.1f / %16.1f | %24.1f | %13.1f |" % (
            r["n"], r["connect_s"], r["p50"], r["p99"], r["max"], r["last_best"], r["last_median"],
            r["apply_cpu_ms"], r["rss_mb"]))
        sys.stdout.flush()
    print("load average after: %s" % _loadavg())


if __name__ == "__main__":
    main(sys.argv[1:])
