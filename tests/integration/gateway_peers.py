"""Test peers for the OCPP gateway: a billing backend built on the Python `ocpp` package, a wallbox built on npm
`ocpp-rpc` in strict mode (peers/ocpp_rpc_wallbox.js), and the gateway as a real process."""
import asyncio
import base64
import json
import os
import signal
import sys

import websockets
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WALLBOX_JS = os.path.join(ROOT, "tests", "integration", "peers", "ocpp_rpc_wallbox.js")


async def wait_for(cond, timeout_s=30.0, what="condition"):
    """Poll until cond() is true; the timeout only turns a hang into a failure, nothing is asserted on time."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        if loop.time() > end:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.02)


class BackendStation(ChargePoint):
    """The backend's view of one station: records every CALL it receives, raw and parsed, in order."""

    def __init__(self, station_id, ws, backend):
        super().__init__(station_id, ws)
        self.backend = backend

    async def route_message(self, raw_msg):
        msg = json.loads(raw_msg)
        if msg[0] == 2:
            self.backend.received.append({"station": self.id, "id": msg[1], "action": msg[2], "payload": msg[3],
                                          "raw": raw_msg})
        else:
            self.backend.answers.append(msg)
        return await super().route_message(raw_msg)

    @on(Action.boot_notification)
    def on_boot(self, **kw):
        return call_result.BootNotification(current_time="2026-01-01T00:00:00Z", interval=300,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self, **kw):
        return call_result.Heartbeat(current_time="2026-01-01T00:00:00Z")

    @on(Action.authorize)
    def on_authorize(self, id_tag, **kw):
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start(self, id_tag=None, **kw):
        self.backend.next_tx += 1
        status = AuthorizationStatus.blocked if id_tag in self.backend.blocked else AuthorizationStatus.accepted
        return call_result.StartTransaction(transaction_id=self.backend.next_tx, id_tag_info={"status": status})

    @on(Action.stop_transaction)
    def on_stop(self, **kw):
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, **kw):
        return call_result.MeterValues()

    @on(Action.status_notification)
    def on_status(self, **kw):
        return call_result.StatusNotification()

    @on(Action.data_transfer)
    def on_data_transfer(self, **kw):
        return call_result.DataTransfer(status="Accepted", data="ok")


class Backend:
    """A billing backend on loopback; `stop()` and `start()` again on the same port simulate an outage."""

    def __init__(self, password=None):
        self.password = password
        self.port = 0
        self.server = None
        self.stations = {}
        self.received = []
        self.answers = []        # CALLRESULT/CALLERROR frames the backend got (answers to its own CALLs)
        self.next_tx = 1000
        self.blocked = set()     # idTags this backend answers Blocked in StartTransaction
        self.paths = []
        self.tasks = set()

    def _check(self, connection, request):
        self.paths.append(request.path)
        if self.password is not None:
            station = request.path.rstrip("/").rsplit("/", 1)[-1]
            want = "Basic " + base64.b64encode(("%s:%s" % (station, self.password)).encode()).decode()
            if request.headers.get("Authorization") != want:
                return Response(401, "Unauthorized", Headers([("Content-Length", "0")]), b"")
        return None

    async def _handler(self, ws):
        station_id = ws.request.path.rstrip("/").rsplit("/", 1)[-1]
        cp = BackendStation(station_id, ws, self)
        self.stations[station_id] = cp
        try:
            await cp.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.stations.get(station_id) is cp:
                del self.stations[station_id]

    async def start(self):
        self.server = await serve(self._handler, "127.0.0.1", self.port, subprotocols=["ocpp1.6"],
                                  process_request=self._check, compression=None)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()
        self.stations.clear()

    def actions(self, station=None):
        return [r["action"] for r in self.received if station is None or r["station"] == station]


class NodeWallbox:
    """The ocpp-rpc (strict mode) wallbox driver."""

    def __init__(self, url, identity, password=None):
        self.args = ["node", WALLBOX_JS, url, identity] + ([password] if password else [])
        self.proc = None
        self.results = {}
        self.incoming = []
        self.events = []
        self.n = 0
        self.reader = None

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(*self.args, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        self.reader = asyncio.get_running_loop().create_task(self._read())
        await wait_for(lambda: "open" in self.events, what="wallbox connected")

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            msg = json.loads(line)
            if "event" in msg:
                self.events.append(msg["event"])
            elif "incoming" in msg:
                self.incoming.append(msg)
            else:
                self.results[msg["n"]] = msg

    async def call(self, action, params, retry=False, timeout_s=60.0):
        self.n += 1
        n = self.n
        self.proc.stdin.write((json.dumps({"n": n, "call": action, "params": params, "retry": retry}) + "\n").encode())
        await self.proc.stdin.drain()
        await wait_for(lambda: n in self.results, timeout_s, "answer to " + action)
        res = self.results.pop(n)
        if "error" in res:
            raise RuntimeError(res["error"])
        return res["result"]

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.reader.cancel()


class GatewayProcess:
    """The standalone gateway (`python -m chargemanager.adapters.ocpp_gateway`) as a child process."""

    def __init__(self, data_dir, config, port=0):
        self.data_dir = data_dir
        self.config_path = os.path.join(data_dir, "config.json")
        os.makedirs(data_dir, exist_ok=True)
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.port = port
        self.proc = None

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chargemanager.adapters.ocpp_gateway", "--data", self.data_dir, "--config",
            self.config_path, "--port", str(self.port), "--backoff-min-s", "0.1", "--backoff-max-s", "0.4",
            stdout=asyncio.subprocess.PIPE)
        line = (await self.proc.stdout.readline()).decode()
        assert line.startswith("listening "), line
        self.port = int(line.split()[1])

    async def kill(self):
        """SIGKILL: no chance to flush or close anything, as in a power cut."""
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self):
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
