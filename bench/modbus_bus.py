"""Bench: polls per second on a simulated Modbus RTU bus against the wire-time limit.

A socat pty pair carries real RTU frames between our BusOwner and a pymodbus server. A pty has no baud rate, so
the simulator delays each answer by the time the request and answer would take on a 19200 baud line (11 bits per
character, t3.5 frame gap) plus a 20 ms device turnaround. The limit is computed from the frame sizes of the
planned block reads (`limit_per_s`): the line carries request + t3.5 + turnaround + answer + t3.5 per block, and
one device cannot be asked again before its silent interval has passed. Ratio = polls/s achieved / limit.
Target: >= 80 %.

Run: .venv/bin/python bench/modbus_bus.py [seconds per scenario, default 8]
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "app"))

from modbus_sim import PtyPair, frame_bytes, t35_s  # noqa: E402

from chargemanager.adapters.modbus_bus import ModbusService, load_model  # noqa: E402
from chargemanager.adapters.readings import ReadingBoard  # noqa: E402
from chargemanager.core import regmap  # noqa: E402

BAUD = 19200
TURNAROUND_MS = 20


def transactions_s(model_id):
    """Per planned block read of a model: (bus occupancy s, device gap s).

    Bus occupancy = request + t3.5 + turnaround + answer + t3.5; device gap = the quiet time the device needs
    before its next request, max(t3.5, its silent interval), which other devices' frames may fill.
    """
    model = load_model(model_id)
    out = []
    for fc, _, count, _ in regmap.plan_reads(model.META, model.REGMAP):
        busy = frame_bytes(fc, count, True) * 11.0 / BAUD + t35_s(BAUD) + TURNAROUND_MS / 1000.0
        busy += frame_bytes(fc, count, False) * 11.0 / BAUD
        out.append((busy + t35_s(BAUD), busy + max(t35_s(BAUD), model.META["silent_interval_ms"] / 1000.0)))
    return out


def limit_per_s(models):
    """Upper bound of polls/s for a round robin: the line is busy for the sum of all transactions, and no
    device can be polled faster than its own transactions plus its silent intervals allow."""
    bus_cycle = sum(busy for m in models for busy, _ in transactions_s(m))
    device_cycle = max(sum(own for _, own in transactions_s(m)) for m in models)
    return len(models) / max(bus_cycle, device_cycle)


class Dev:
    def __init__(self, model_id, unit_id):
        self.model_id = model_id
        self.unit_id = unit_id


def run(name, models, silent_units=(), seconds=4.0):
    devices = [Dev(m, i + 1) for i, m in enumerate(models)]
    with PtyPair() as pty:
        # the simulated devices run in their own process, as real ones would: no GIL shared with the bus owner
        specs = ["%s:%d%s" % (d.model_id, d.unit_id, ":silent" if d.unit_id in silent_units else "") for d in devices]
        server = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "modbus_sim.py"), "rtu", pty.a,
                                   "--wire-baud", str(BAUD), "--turnaround-ms", str(TURNAROUND_MS)] + specs,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        server.stdout.readline()
        board = ReadingBoard()
        meters = [{"dev_id": "M%d" % d.unit_id, "type": d.model_id, "address": "%s,%d,8,N,1" % (pty.b, BAUD),
                   "id": d.unit_id, "poll_interval_ms": 0, "timeout_ms": 300}
                  for d in devices if load_model(d.model_id).META["kind"] != "charger"]
        evses = [{"dev_id": "E%d" % d.unit_id, "type": d.model_id, "address": "%s,%d,8,N,1" % (pty.b, BAUD),
                  "id": d.unit_id, "poll_interval_ms": 0}
                 for d in devices if load_model(d.model_id).META["kind"] == "charger"]
        svc = ModbusService.from_config({"meters": meters, "evses": evses}, board)
        svc.start()
        # warm-up (not measured): connect, the wallboxes' one-time setup writes, the silent device's move to
        # the slow lane; the measurement is the steady state
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            diags = svc.diagnostics()
            if all(d["counters"]["ok"] >= 2 or d["lane"] == "slow" for d in diags):
                break
            time.sleep(0.05)
        before = {d["dev_id"]: d["counters"]["ok"] for d in svc.diagnostics()}
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        after = {d["dev_id"]: d["counters"]["ok"] for d in svc.diagnostics()}
        svc.stop()
        server.stdin.close()
        server.wait(10)
    polls = sum(after[k] - before[k] for k in after)
    answering = [m for i, m in enumerate(models) if (i + 1) not in silent_units]
    limit = limit_per_s(answering)
    achieved = polls / elapsed
    return name, len(models), achieved, limit, achieved / limit


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
    scenarios = [
        ("8 x SDM630 (1 block of 76 regs)", ["eastron_sdm630"] * 8, ()),
        ("8 x SDM72 (4 blocks, 100 ms silent)", ["eastron_sdm72"] * 8, ()),
        ("4 x SDM630 + 4 x Heidelberg EC", ["eastron_sdm630"] * 4 + ["heidelberg_ec"] * 4, ()),
        ("7 x SDM630 + 1 silent (slow lane)", ["eastron_sdm630"] * 8, (8,)),
    ]
    print("Modbus RTU bus, %d baud, %d ms turnaround, %.0f s per scenario" % (BAUD, TURNAROUND_MS, seconds))
    print("%-40s %7s %10s %12s %7s" % ("scenario", "devices", "polls/s", "limit/s", "ratio"))
    worst = 1.0
    for name, models, silent in scenarios:
        row = run(name, models, silent, seconds)
        worst = min(worst, row[4])
        print("%-40s %7d %10.2f %12.2f %6.1f%%" % (row[0], row[1], row[2], row[3], 100 * row[4]))
    print("worst ratio %.1f%% (target >= 80%%)" % (100 * worst))


if __name__ == "__main__":
    main()
