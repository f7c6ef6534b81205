"""OCPP gateway benchmark: N wallboxes, each with its own backend link through the gateway, against the same
wallboxes talking to the backend directly, measured in the same run.

Three processes: the backend (a plain websockets OCPP-J answerer), the gateway, and this one with the N wallbox
clients. The gateway runs twice, one after the other: standalone (`python -m chargemanager.adapters.ocpp_gateway`:
the forwarding alone) and as deployed: the whole manager, `python -m chargemanager run` with a config.json of N OCPP
EVSEs that each have `gateway.url` (OCPP server with schema validation and station model, gateway service, readings
to the control loop, load management sending its charging profiles, HTTP API), i.e. the path the product runs.
The boxes open only after every backend link is up (the backend counts them), so nothing is answered locally or
queued; the table says how many messages the gateway still had queued at the end (0 expected).
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
import re
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
CALL_HEAD = re.compile(r'\[\s*2\s*,\s*"([^"\\]*)"\s*,\s*"([A-Za-z]+)"')


# ---- backend process ----------------------------------------------------------------------------------------------

async def backend_main(port_file):
    counter = [1000]
    links = [0]

    def write_count():
        with open(port_file + ".links.tmp", "w") as f:
            f.write(str(links[0]))
        os.replace(port_file + ".links.tmp", port_file + ".links")

    async def handler(ws):
        gw = ws.request.path.startswith("/gw/")
        if gw:
            links[0] += 1
            write_count()
        try:
            await answer(ws)
        finally:
            if gw:
                links[0] -= 1
                write_count()

    def answer_text(ws, text):
        # Only the frame's head is read (the backend answers by action): the load generator stays light, for the
        # direct baseline and the gateway alike.
        m = CALL_HEAD.match(text)
        if m is None:
            return
        msg_id, action = m.group(1), m.group(2)
        if action == "BootNotification":
            ans = '{"status":"Accepted","currentTime":"2026-01-01T00:00:00Z","interval":300}'
        elif action == "StartTransaction":
            counter[0] += 1
            ans = '{"transactionId":%d,"idTagInfo":{"status":"Accepted"}}' % counter[0]
        elif action == "Heartbeat":
            ans = '{"currentTime":"2026-01-01T00:00:00Z"}'
        else:
            ans = "{}"
        ws.protocol.send_text(('[3,"%s",%s]' % (msg_id, ans)).encode())
        ws.send_data()

    async def answer(ws):
        ws.on_text = lambda text: answer_text(ws, text)  # whole frames straight from the socket (ws_direct)
        async for text in ws:
            answer_text(ws, text)

    from websockets.asyncio.server import ServerConnection
    from chargemanager.adapters import ws_direct
    server = await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"], compression=None, max_queue=None,
                         create_connection=ws_direct.direct(ServerConnection))
    write_count()
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


_MV_TEMPLATE = json.dumps(meter_values(-7, 0)).replace("%", "%%").replace("-7", "%d").replace('"0.', '"%d.')


def meter_values_text(tx, n):
    """`meter_values(tx, n)` as JSON text, from a template: the load generator shares two cores with the gateway, so
    the clients spend as little CPU per message as they can (the same for the direct baseline)."""
    return _MV_TEMPLATE % ((tx,) + (n,) * 10)


MANAGER_CALL_ANSWERS = {"GetConfiguration": {"configurationKey": []}, "SetChargingProfile": {"status": "Accepted"},
                        "ClearChargingProfile": {"status": "Accepted"}}


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
        """CALL with a payload object, or with its JSON text (a str)."""
        self.n += 1
        msg_id = "%s-%d" % (self.name, self.n)
        if isinstance(payload, str):
            await self.ws.send('[2,"%s","%s",%s]' % (msg_id, action, payload))
        else:
            await self.ws.send(json.dumps([2, msg_id, action, payload]))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg[0] == 2:
                # the manager's own CALLs (capability read, its charging profile)
                answer = MANAGER_CALL_ANSWERS.get(msg[2])
                await self.ws.send(json.dumps([3, msg[1], answer]) if answer is not None else
                                   json.dumps([4, msg[1], "NotImplemented", "", {}]))
                continue
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
        payload = meter_values_text(b.tx, k)
        t0 = time.perf_counter_ns()
        await b.call("MeterValues", payload)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


async def throughput(boxes, per_box):
    async def run(b):
        for k in range(per_box):
            await b.call("MeterValues", meter_values_text(b.tx, k))
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


def cpu_s(pid, part=None):
    """CPU seconds of a process: user + system, or only "user" / "system"."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    return {None: user + system, "user": user, "system": system}[part] / os.sysconf("SC_CLK_TCK")


def queue_bytes(data_dir):
    """Total size of the gateway's queue files (`<data>/gateway/*.log`): it grows only when records are stored."""
    folder = os.path.join(data_dir, "gateway")
    if not os.path.isdir(folder):
        return 0
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))


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


async def wait_links(path, want, timeout_s=120):
    """Until the backend counts `want` gateway links (the product dials them at start, in no particular order)."""
    deadline = time.monotonic() + timeout_s
    n = -1
    while time.monotonic() < deadline:
        with open(path) as f:
            n = int(f.read() or 0)
        if n == want:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("only %d of %d backend links came up" % (n, want))


ADMIN_PASSWORD = "bench-gateway-admin-1"


def http_get_json(port, query):
    import base64
    import urllib.request
    token = base64.b64encode(("admin:" + ADMIN_PASSWORD).encode()).decode()
    req = urllib.request.Request("http://127.0.0.1:%d/cnf?%s" % (port, query),
                                 headers={"Authorization": "Basic " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


async def read_ports(stream):
    """(ocpp port, http port) from the manager's log lines."""
    ocpp = http = None
    while ocpp is None or http is None:
        line = (await stream.readline()).decode(errors="replace")
        if not line:
            raise RuntimeError("the manager ended before it listened")
        if "OCPP server listening on port" in line:
            ocpp = int(line.rsplit(" ", 1)[1])
        elif "running: data" in line and "HTTP port" in line:
            http = int(line.rsplit(" ", 1)[1])
    return ocpp, http


async def start_gateway(kind, tmp, bport, boxes, env):
    """The gateway process; returns (process, wallbox port, HTTP port or None)."""
    config = {"site": {"max_power_w": boxes * 11000, "max_current_ma": boxes * 16000},
              "evses": [{"dev_id": "E%d" % (i + 1), "type": "ocpp16", "address": "BX%04d" % i, "id": 1,
                         "gateway": {"url": "ws://127.0.0.1:%d/gw/" % bport, "client_id": "GW%04d" % i}}
                        for i in range(boxes)]}
    data = os.path.join(tmp, kind)
    os.makedirs(data)
    cfg_path = os.path.join(data, "config.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    if kind == "standalone":
        cmd = [sys.executable, "-m", "chargemanager.adapters.ocpp_gateway", "--data", data, "--config", cfg_path,
               "--port", "0", "--backoff-min-s", "0.5", "--backoff-max-s", "2"]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, env=env)
        return proc, int((await proc.stdout.readline()).split()[1]), None
    setpw = await asyncio.create_subprocess_exec(sys.executable, "-m", "chargemanager", "set-password", "--data", data,
                                                 "--password-stdin", stdin=asyncio.subprocess.PIPE,
                                                 stdout=asyncio.subprocess.DEVNULL, env=env)
    await setpw.communicate((ADMIN_PASSWORD + "\n").encode())
    if setpw.returncode != 0:
        raise RuntimeError("set-password failed")
    cmd = [sys.executable, "-m", "chargemanager", "run", "--data", data, "--host", "127.0.0.1", "--http-port", "0",
           "--ocpp-port", "0", "--log-level", "INFO"]
    proc = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE, env=env)
    ocpp_port, http_port = await read_ports(proc.stderr)

    async def drain_log():  # keep reading, or a full pipe would block the manager's logging
        while await proc.stderr.readline():
            pass
    proc.log_task = asyncio.get_running_loop().create_task(drain_log())
    return proc, ocpp_port, http_port


async def stop(proc):
    if proc is not None and proc.returncode is None:
        proc.terminate()
        await proc.wait()


BACKEND_PID = [None]


async def main(args):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2 x N client sockets in this process
    tmp = tempfile.mkdtemp(prefix="bench-gw-")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "app"))
    port_file = os.path.join(tmp, "backend.port")
    backend = await asyncio.create_subprocess_exec(sys.executable, os.path.abspath(__file__), "--role", "backend",
                                                   "--port-file", port_file, env=env)
    try:
        BACKEND_PID[0] = backend.pid
        bport = await wait_file(port_file, backend)
        direct = await open_boxes("ws://127.0.0.1:%d/" % bport, args.boxes)
        await latency(direct, 200)
        lat_direct = await latency(direct, args.samples)
        tput_direct = await throughput(direct, args.per_box)
        print("\nOCPP gateway, %d wallboxes each with its own backend link (MeterValues, 10 sampled values); "
              "direct: %0.0f msg/s" % (args.boxes, tput_direct))
        print("%-44s %6s %10s %10s %10s %7s %9s %9s %7s" % ("path", "", "direct ms", "via ms", "added ms", "ratio",
                                                            "msg/s", "CPU us/msg", "RSS MB"))
        notes = []
        for kind in args.kinds.split(","):
            proc, port, http_port = await start_gateway(kind, tmp, bport, args.boxes, env)
            try:
                await wait_links(port_file + ".links", args.boxes)
                via = await open_boxes("ws://127.0.0.1:%d/" % port, args.boxes)
                await latency(via, 200)
                lat_gw = await latency(via, args.samples)
                cpu0, sys0 = cpu_s(proc.pid), cpu_s(proc.pid, "system")
                own0, back0 = time.process_time(), cpu_s(BACKEND_PID[0])
                queue0 = queue_bytes(os.path.join(tmp, kind))
                tput_gw = await throughput(via, args.per_box)
                queue_growth = queue_bytes(os.path.join(tmp, kind)) - queue0
                cpu_us = (cpu_s(proc.pid) - cpu0) * 1e6 / (args.boxes * args.per_box)
                sys_us = (cpu_s(proc.pid, "system") - sys0) * 1e6 / (args.boxes * args.per_box)
                own_us = (time.process_time() - own0) * 1e6 / (args.boxes * args.per_box)
                back_us = (cpu_s(BACKEND_PID[0]) - back0) * 1e6 / (args.boxes * args.per_box)
                mem = rss_mb(proc.pid)
                label = {"standalone": "standalone gateway (forwarding only)",
                         "manager": "manager process (as deployed)"}[kind]
                notes.append("%s: CPU per forwarded message %.0f us, of it %.0f us in the kernel (socket I/O); "
                             "queue files grew by %d bytes during the throughput run; the wallbox clients %.0f us, "
                             "the backend %.0f us" % (label, cpu_us, sys_us, queue_growth, own_us, back_us))
                if http_port is not None:
                    status = await asyncio.to_thread(http_get_json, http_port, "cmd=get_status")
                    gw = status.get("gateway", {})
                    notes.append("%s: %d gateway links, %d connected, %d messages queued at the end, control tick "
                                 "%.1f ms CPU" % (label, len(gw), sum(1 for v in gw.values() if v.get("connected")),
                                                   sum(v.get("queued_messages", 0) for v in gw.values()),
                                                   status.get("tick_cpu_ms", 0.0)))
                for i, p in enumerate((50, 99)):
                    d, g = pct(lat_direct, p), pct(lat_gw, p)
                    if i == 0:
                        print("%-44s %6s %10.3f %10.3f %10.3f %7.2f %9.0f %9.0f %7.1f"
                              % (label, "p%d" % p, d, g, g - d, g / d, tput_gw, cpu_us, mem))
                    else:
                        print("%-44s %6s %10.3f %10.3f %10.3f %7.2f" % ("", "p%d" % p, d, g, g - d, g / d))
                for b in via:
                    await b.close()
            finally:
                await stop(proc)
                if getattr(proc, "log_task", None) is not None:
                    await proc.log_task
        print("targets: added p50 <= 0.5 ms, added p99 <= 2 ms, >= 3000 forwarded msg/s")
        for note in notes:
            print(note)
        print("load average %.2f %.2f %.2f (2 cores shared: higher load inflates the figures)" % os.getloadavg())
        print("gateway policy (core) alone: %0.0f us CPU per forwarded CALL + answer (no sockets)" % core_cost_us())
        for b in direct:
            await b.close()
    finally:
        await stop(backend)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", default="bench")
    ap.add_argument("--port-file")
    ap.add_argument("--boxes", type=int, default=500)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--per-box", type=int, default=20)
    ap.add_argument("--kinds", default="standalone,manager")
    a = ap.parse_args()
    if a.role == "backend":
        asyncio.run(backend_main(a.port_file))
    else:
        asyncio.run(main(a))
