"""OCPP gateway benchmark: N wallboxes, each with its own backend link through the gateway, against the same
wallboxes talking to the backend directly, measured in the same run.

Three processes: the backend (a plain websockets OCPP-J answerer), the gateway (`python -m
chargemanager.adapters.ocpp_gateway`, N EVSEs), and this one with the N wallbox clients.
- latency: round trips of a MeterValues CALL (10 sampled values, with a transaction) one at a time, spread over all
  boxes, direct and through the gateway; added latency = gateway - direct (p50, p99, ratio);
- throughput: every box sends its CALLs back to back (one outstanding per box, as OCPP wants); forwarded
  messages per second at the gateway;
- the gateway process's resident memory.

Usage: .venv/bin/python bench/gateway.py [--boxes 500] [--samples 3000] [--per-box 20]
"""

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- backend process ----------------------------------------------------------------------------------------------

async def backend_main(port_file):
    counter = [1000]

    async def handler(ws):
        async for text in ws:
            msg = json.loads(text)
            if msg[0] != 2:
                continue
            action = msg[2]
            if action == "BootNotification":
                ans = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 300}
            elif action == "StartTransaction":
                counter[0] += 1
                ans = {"transactionId": counter[0], "idTagInfo": {"status": "Accepted"}}
            elif action == "Heartbeat":
                ans = {"currentTime": "2026-01-01T00:00:00Z"}
            else:
                ans = {}
            await ws.send(json.dumps([3, msg[1], ans]))

    server = await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"], compression=None, max_queue=None)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.replace(port_file + ".tmp", port_file)
    await asyncio.Future()


# ---- wallboxes ----------------------------------------------------------------------------------------------------

def meter_values(tx, n):
    sampled = [{"value": "%d.%d" % (n, i), "measurand": m, "unit": u, "context": "Sample.Periodic"}
               for i, (m, u) in enumerate([("Energy.Active.Import.Register", "Wh"), ("Power.Active.Import", "W"),
                                            ("Current.Import", "A"), ("Current.Import", "A"), ("Current.Import", "A"),
                                            ("Voltage", "V"), ("Voltage", "V"), ("Voltage", "V"),
                                            ("Temperature", "Celsius"), ("SoC", "Percent")])]
    return {"connectorId": 1, "transactionId": tx,
            "meterValue": [{"timestamp": "2026-01-01T10:00:00Z", "sampledValue": sampled}]}


class Box:
    def __init__(self, url, name):
        self.url = url
        self.name = name
        self.ws = None
        self.n = 0
        self.tx = None

    async def open(self):
        self.ws = await connect(self.url + self.name, subprotocols=["ocpp1.6"], compression=None, proxy=None,
                                open_timeout=60)
        await self.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "B1"})
        res = await self.call("StartTransaction", {"connectorId": 1, "idTag": "BENCH", "meterStart": 0,
                                                   "timestamp": "2026-01-01T10:00:00Z"})
        self.tx = res["transactionId"]

    async def call(self, action, payload):
        self.n += 1
        msg_id = "%s-%d" % (self.name, self.n)
        await self.ws.send(json.dumps([2, msg_id, action, payload]))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg[1] == msg_id:
                if msg[0] != 3:
                    raise RuntimeError("%s answered %r" % (action, msg))
                return msg[2]

    async def close(self):
        await self.ws.close()


async def open_boxes(url, n):
    boxes = [Box(url, "BX%04d" % i) for i in range(n)]
    for i in range(0, n, 50):
        await asyncio.gather(*(b.open() for b in boxes[i:i + 50]))
    return boxes


async def latency(boxes, samples):
    rnd = random.Random(1)
    out = []
    for k in range(samples):
        b = boxes[rnd.randrange(len(boxes))]
        payload = meter_values(b.tx, k)
        t0 = time.perf_counter_ns()
        await b.call("MeterValues", payload)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


async def throughput(boxes, per_box):
    async def run(b):
        for k in range(per_box):
            await b.call("MeterValues", meter_values(b.tx, k))
    t0 = time.perf_counter()
    await asyncio.gather(*(run(b) for b in boxes))
    return len(boxes) * per_box / (time.perf_counter() - t0)


def core_cost_us(n=20000):
    """CPU of the pure gateway policy per forwarded CALL + answer, without sockets."""
    sys.path.insert(0, os.path.join(ROOT, "app"))
    from chargemanager.core.ocpp_gateway import Gateway
    gw = Gateway("gw-")
    gw.box_connected(0)
    gw.backend_connected(0)
    gw.box_text('[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]', 0)
    gw.backend_text('[3,"b",{"status":"Accepted","currentTime":"2026-01-01T00:00:00Z","interval":300}]', 0)
    texts = [json.dumps([2, "m%d" % i, "MeterValues", meter_values(1001, i)]) for i in range(n)]
    answers = ['[3,"m%d",{}]' % i for i in range(n)]
    t0 = time.process_time()
    for i in range(n):
        gw.box_text(texts[i], i)
        gw.backend_text(answers[i], i)
    return (time.process_time() - t0) * 1e6 / n


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


async def wait_file(path, proc):
    while not os.path.exists(path):
        if proc.returncode is not None:
            raise RuntimeError("process ended early")
        await asyncio.sleep(0.05)
    with open(path) as f:
        return int(f.read())


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2 x N client sockets in this process
    tmp = tempfile.mkdtemp(prefix="bench-gw-")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "app"))
    port_file = os.path.join(tmp, "backend.port")
    backend = await asyncio.create_subprocess_exec(sys.executable, os.path.abspath(__file__), "--role", "backend",
                                                   "--port-file", port_file, env=env)
    gateway = None
    try:
        bport = await wait_file(port_file, backend)
        direct = await open_boxes("ws://127.0.0.1:%d/" % bport, args.boxes)
        config = {"evses": [{"dev_id": "E%d" % (i + 1), "type": "ocpp16", "address": "BX%04d" % i, "id": 1,
                             "gateway": {"url": "ws://127.0.0.1:%d/gw/" % bport, "client_id": "GW%04d" % i}}
                            for i in range(args.boxes)]}
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f)
        gateway = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chargemanager.adapters.ocpp_gateway", "--data", tmp, "--config",
            os.path.join(tmp, "config.json"), "--port", "0", "--backoff-min-s", "0.5", "--backoff-max-s", "2",
            stdout=asyncio.subprocess.PIPE, env=env)
        gport = int((await gateway.stdout.readline()).split()[1])
        await asyncio.sleep(2.0)  # let the 500 backend links come up before the boxes boot
        via = await open_boxes("ws://127.0.0.1:%d/" % gport, args.boxes)

        await latency(direct, 200)  # warm-up
        await latency(via, 200)
        lat_direct = await latency(direct, args.samples)
        lat_gw = await latency(via, args.samples)
        tput_direct = await throughput(direct, args.per_box)
        cpu0 = cpu_s(gateway.pid)
        tput_gw = await throughput(via, args.per_box)
        cpu_per_msg_us = (cpu_s(gateway.pid) - cpu0) * 1e6 / (args.boxes * args.per_box)
        mem = rss_mb(gateway.pid)

        rows = [("p50", pct(lat_direct, 50), pct(lat_gw, 50)), ("p99", pct(lat_direct, 99), pct(lat_gw, 99)),
                ("mean", statistics.mean(lat_direct), statistics.mean(lat_gw))]
        print("\nOCPP gateway, %d wallboxes each with its own backend link (MeterValues, 10 sampled values)"
              % args.boxes)
        print("%-6s %12s %14s %12s %8s  %s" % ("", "direct ms", "via gateway ms", "added ms", "ratio", "target"))
        targets = {"p50": "added <= 0.5 ms", "p99": "added <= 2 ms", "mean": ""}
        for name, d, g in rows:
            print("%-6s %12.3f %14.3f %12.3f %8.2f  %s" % (name, d, g, g - d, g / d, targets[name]))
        print("%-28s %10.0f msg/s (direct %0.0f msg/s, ratio %.2f)  target >= 3000"
              % ("throughput via gateway", tput_gw, tput_direct, tput_gw / tput_direct))
        print("%-28s %10.0f us CPU per forwarded CALL + answer (4 websocket frames) = %0.0f msg/s per core"
              % ("gateway process", cpu_per_msg_us, 1e6 / cpu_per_msg_us))
        print("%-28s %10.0f us CPU per forwarded CALL + answer (no sockets)"
              % ("gateway policy (core) alone", core_cost_us()))
        print("%-28s %10.1f MB" % ("gateway process RSS", mem))
        for b in direct + via:
            await b.close()
    finally:
        for p in (gateway, backend):
            if p is not None and p.returncode is None:
                p.terminate()
                await p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", default="bench")
    ap.add_argument("--port-file")
    ap.add_argument("--boxes", type=int, default=500)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--per-box", type=int, default=20)
    a = ap.parse_args()
    if a.role == "backend":
        asyncio.run(backend_main(a.port_file))
    else:
        asyncio.run(main(a))
