"""Time of one load-management tick (core.tick) for N EVSEs; prints a table.

Scenario per N: a grid meter, a site limit formula (`55000 * AVAIL / 100` scaled with N), EVSEs with 1..3 phases on
rotating L1 phases, three priorities, a TARIF rule on every fourth box, different maxima, all wanting to charge.
Columns: N, p50 and max of the tick's CPU time (this thread) over the runs in ms, the ratio of p50 to N=100's p50,
and p50 divided by the time of an empty 1M-iteration loop measured in the same run (so machines and load compare).
Usage: python bench/loadmgmt_tick.py [runs]
"""

import sys
import time

from chargemanager.core.config import validate_config
from chargemanager.core.tick import prepare, tick


def scenario(n):
    evses = []
    for i in range(n):
        spec = {"dev_id": "E%d" % (i + 1), "address": "BOX%d" % i, "phases": (1, 3, 3, 2)[i % 4],
                "l1_phase": i % 3 + 1, "prio": i % 3, "max_current_ma": (16000, 32000, 20000)[i % 3]}
        if i % 4 == 0:
            spec["rules"] = [{"condition": "TARIF == 0", "action": "limit", "power_w": 4140}]
        evses.append(spec)
    config, errors = validate_config({
        "site": {"max_power_w": "%d * AVAIL / 100" % (7000 * n), "max_current_ma": 11000 * n},
        "evses": evses, "meters": [{"dev_id": "M1", "type": "eastron_sdm630"}]})
    assert errors == [], errors
    snapshot = {"meters": {"M1": {"current_ma": [3000 * n, 3500 * n, 3200 * n], "age_ms": 200}},
                "evses": dict(("E%d" % (i + 1), {"wants": True, "current_ma": [6000, 6000, 6000], "age_ms": 500})
                              for i in range(n)),
                "time": {"minute_of_day": 600, "weekday": 1}}
    return prepare(config), snapshot


def measure(n, runs):
    plan, snapshot = scenario(n)
    state = None
    times = []
    for run in range(runs):
        values = {"AVAIL": (100, 50, 70)[run % 3], "TARIF": run % 2}
        started = time.thread_time()
        _, state = tick(plan, values, snapshot, state, run * 1000)
        times.append((time.thread_time() - started) * 1000.0)
    times.sort()
    return times[len(times) // 2], times[-1]


def calibration_ms():
    best = None
    for _ in range(3):
        started = time.thread_time()
        for _ in range(1000000):
            pass
        spent = (time.thread_time() - started) * 1000.0
        best = spent if best is None or spent < best else best
    return best


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    loop_ms = calibration_ms()
    results = [(n,) + measure(n, runs) for n in (10, 100, 500, 1000)]
    base = [r for r in results if r[0] == 100][0][1]
    print("load-management tick, %d runs each (CPython %s); empty 1M loop: %.1f ms"
          % (runs, sys.version.split()[0], loop_ms))
    print("%6s %10s %10s %10s %12s" % ("N", "p50 ms", "max ms", "x N=100", "x 1M loop"))
    for n, p50, worst in results:
        print("%6d %10.2f %10.2f %10.1f %12.3f" % (n, p50, worst, p50 / base, p50 / loop_ms))


if __name__ == "__main__":
    main()
