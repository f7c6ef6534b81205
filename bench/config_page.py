"""What the config page costs the appliance: page weight (bytes of HTML + CSS + JS, raw and gzip), and the cost of
one dashboard refresh (get_status + get_cm_vars through /ui/cnf, every 2 s while a browser shows the dashboard) for
a small and a large site, over loopback against the manager built in-process. Baseline in the same run: get_cm_vars
alone through /ui/cnf (the cheapest command on the same path). For comparison, the same command over the /cnf API
with HTTP Basic, which runs the password KDF (scrypt) on every request."""

import base64
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app"))

from chargemanager.runtime import Runtime  # noqa: E402
from chargemanager.shim.clock import monotonic_ms  # noqa: E402

ROUNDS = 100
PASSWORD = "bench-password"


class Client:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):  # the server closed an idle keep-alive link
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
        data = r.read()
        for key, value in r.getheaders():
            if key.lower() == "set-cookie" and value.startswith("cm_"):
                name_value = value.split(";", 1)[0]
                jar = dict(c.split("=", 1) for c in self.cookie.split("; ") if c)
                name, val = name_value.split("=", 1)
                jar[name] = val
                self.cookie = "; ".join("%s=%s" % kv for kv in jar.items() if kv[1])
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def login(client):
    _, _, page = client.request("GET", "/login")
    token = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    client.request("POST", "/login", urllib.parse.urlencode({"csrf": token, "password": PASSWORD}),
                   {"Content-Type": "application/x-www-form-urlencoded"})
    _, _, page = client.request("GET", "/")
    return page, re.search(rb'<meta name="csrf" content="([^"]+)"', page).group(1).decode()


def site(runtime, n_evses):
    doc = json.loads(json.dumps(runtime.config))
    doc["evses"] = [{"dev_id": "E%d" % i, "type": "ocpp16", "address": "BOX%d" % i} for i in range(1, n_evses + 1)]
    doc["meters"] = [{"dev_id": "M1", "type": "eastron_sdm630", "role": "grid"}]
    doc["site"]["max_power_w"] = "55000 * AVAIL / 100"
    runtime.apply_config(doc)
    runtime.variables.set_batch([("AVAIL", 100), ("TARIF", 0)])
    now = monotonic_ms()
    runtime.readings.publish("M1", {"power_w": 9000, "current_l1_ma": 13000, "current_l2_ma": 13000,
                                    "current_l3_ma": 13000}, now)
    for i in range(1, n_evses + 1):
        runtime.readings.publish("E%d" % i, {"online": True, "wants": True, "power_w": 4000, "energy_wh": 1000 * i,
                                             "current_l1_ma": 6000, "current_l2_ma": 6000, "current_l3_ma": 6000}, now)
    runtime.tick()


def timed(fn):
    samples = []
    size = 0
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        size = fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1], size


def main():
    with tempfile.TemporaryDirectory() as folder:
        runtime = Runtime(folder, http_port=0, ocpp_port=0, host="127.0.0.1")
        runtime.auth.set_password(PASSWORD)
        runtime.start()
        try:
            client = Client(runtime.http_port)
            page, token = login(client)
            weight = [("page (HTML)", len(page), len(page))]
            for name in ("app.css", "app.js"):
                _, _, raw = client.request("GET", "/static/" + name)
                _, _, packed = client.request("GET", "/static/" + name, headers={"Accept-Encoding": "gzip"})
                weight.append((name, len(raw), len(packed)))
            print("config page weight (what the dashboard loads)")
            print("%-14s %10s %10s" % ("file", "bytes", "gzip"))
            for row in weight:
                print("%-14s %10d %10d" % row)
            print("%-14s %10d %10d" % ("total", sum(r[1] for r in weight), sum(r[2] for r in weight)))
            print()
            basic = {"Authorization": "Basic " + base64.b64encode(("admin:" + PASSWORD).encode()).decode()}
            print("one dashboard refresh over loopback (%d rounds)" % ROUNDS)
            print("%-44s %9s %9s %9s %7s" % ("request", "p50 ms", "p99 ms", "bytes", "ratio"))
            for n_evses in (2, 50):
                site(runtime, n_evses)
                api = Client(runtime.http_port)

                def basic_vars():
                    return len(api.request("GET", "/cnf?cmd=get_cm_vars", headers=basic)[2])

                def session_vars():
                    return len(client.request("GET", "/ui/cnf?cmd=get_cm_vars", headers={"X-CSRF-Token": token})[2])

                def refresh():
                    a = client.request("GET", "/ui/cnf?cmd=get_status", headers={"X-CSRF-Token": token})[2]
                    b = client.request("GET", "/ui/cnf?cmd=get_cm_vars", headers={"X-CSRF-Token": token})[2]
                    return len(a) + len(b)

                base = timed(session_vars)
                for label, result in (("/ui/cnf get_cm_vars (%d EVSEs), baseline" % n_evses, base),
                                      ("/ui/cnf get_status + get_cm_vars (%d EVSEs)" % n_evses, timed(refresh)),
                                      ("/cnf get_cm_vars, HTTP Basic (%d EVSEs)" % n_evses, timed(basic_vars))):
                    print("%-44s %9.2f %9.2f %9d %7.1f" % (label, result[0], result[1], result[2], result[0] / base[0]))
        finally:
            runtime.shutdown()


if __name__ == "__main__":
    main()
