"""Modbus device simulator for tests and benchmarks: pymodbus servers answering like our table models.

- `PtyPair`: a socat pseudo-terminal pair (`socat -d -d pty,raw,echo=0 pty,raw,echo=0`); started and killed
  by the test that uses it.
- `SimDevice`: the registers of one model, filled from canonical values with an encoder written independently
  of `core.regmap` (so decode tests are not circular). Per device: extra answer delay (slow responder), CRC
  corruption of every answer, silence (answers dropped on the way out, independent of how the pymodbus
  version treats unknown unit ids), and a record of every write.
- `SimServer`: a pymodbus RTU server on one pty end, or a TCP server on 127.0.0.1 with an ephemeral port, in
  its own thread with its own asyncio loop. `wire_baud` adds the RS-485 wire time of request and answer
  (11 bits per character plus t3.5 gaps) and `turnaround_ms` the device's reaction time, since a pty has no
  baud rate.

Run as a script to serve devices by hand (or from another process): `python tools/modbus_sim.py tcp 5020
heidelberg_ec:1`; it serves until its stdin closes.
"""

import asyncio
import importlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.datastore.context import ModbusBaseDeviceContext
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(_ROOT, "app"))

from chargemanager.devices.index import MODELS  # noqa: E402

_CANON_FACTOR = {"V": 1000, "A": 1000, "kWh": 1000, "kW": 1000, "Hz": 1000, "ratio": 1000, "degC": 1000, "s": 1000}


def words_for(row, value):
    """Raw words (or bits) a device would hold for a canonical value; None -> the 'unavailable' pattern."""
    q, fc, addr, typ, order, scale, unit = row
    if typ == "bit":
        return [1 if value else 0]
    device_value = (value or 0) / (_CANON_FACTOR.get(unit, 1) * scale)
    if typ == "f32":
        raw = struct.unpack(">I", struct.pack(">f", float("nan") if value is None else device_value))[0]
        nwords = 2
    else:
        nwords = {"u16": 1, "i16": 1, "u8lo": 1, "u32": 2, "i32": 2, "u64": 4}[typ]
        bits = 16 * nwords
        if value is None:
            raw = (1 << bits) - 1 if typ.startswith("u") else (1 << (bits - 1)) - 1
        else:
            raw = int(round(device_value)) & ((1 << bits) - 1)
    out = [(raw >> (16 * (nwords - 1 - i))) & 0xFFFF for i in range(nwords)]
    return out[::-1] if order == "lsw" else out


def frame_bytes(function_code, count, request):
    """RTU frame size in bytes: address + fc + payload + CRC."""
    if request:
        return 8 if function_code in (1, 2, 3, 4, 5, 6) else 9 + 2 * count
    if function_code in (1, 2):
        return 5 + (count + 7) // 8
    if function_code in (3, 4):
        return 5 + 2 * count
    return 8


def t35_s(baud):
    """The 3.5-character silence that ends an RTU frame (1.75 ms fixed above 19200 baud)."""
    return 0.00175 if baud > 19200 else 3.5 * 11.0 / baud


def wire_time_s(nbytes, baud):
    """Time on the wire for one frame plus its t3.5 silence (11 bits per character: start, 8, parity, stop)."""
    return nbytes * 11.0 / baud + t35_s(baud)


class SimDevice(ModbusBaseDeviceContext):
    """One simulated device; the public attributes may be changed from the test thread at any time."""

    def __init__(self, model_id, unit_id, values=None, delay_ms=0, corrupt_crc=False, silent=False, strict=False):
        self.model_id = model_id
        self.model = importlib.import_module(MODELS[model_id])
        self.unit_id = unit_id
        self.delay_ms = delay_ms
        self.corrupt_crc = corrupt_crc
        self.silent = silent
        self.strict = strict
        self.regs = {"c": {}, "d": {}, "h": {}, "i": {}}
        self.writes = []
        self.requests = 0
        self._lock = threading.Lock()
        self.wire_baud = None
        self.turnaround_ms = 0
        self.last_request_s = time.monotonic()
        self.fell_back = False
        if values:
            self.set_values(values)

    def set_values(self, values):
        """Set quantities (canonical units) through the model's table."""
        rows = {r[0]: r for r in self.model.REGMAP}
        with self._lock:
            for q, v in values.items():
                row = rows[q]
                store = self.regs[self.decode(row[1])]
                for i, w in enumerate(words_for(row, v)):
                    store[row[2] + i] = w

    def register(self, function_code, address):
        with self._lock:
            return self.regs[self.decode(function_code)].get(address, 0)

    def getValues(self, func_code, address, count=1):
        store = self.regs[self.decode(func_code)]
        with self._lock:
            if self.strict and any(a not in store for a in range(address, address + count)):
                return ExcCodes.ILLEGAL_ADDRESS
            vals = [store.get(a, 0) for a in range(address, address + count)]
        return [bool(v) for v in vals] if func_code in (1, 2) else vals

    def setValues(self, func_code, address, values):
        store = self.regs[self.decode(func_code)]
        with self._lock:
            for i, v in enumerate(values):
                store[address + i] = int(v)
            self.writes.append((func_code, address, [int(v) for v in values]))
        return None

    def watchdog_check(self, now_s):
        """Heidelberg EC behaviour: no request for longer than register 257 (ms) -> current limit = failsafe."""
        if "watchdog" not in self.model.META.get("capabilities", ()):
            return
        with self._lock:
            timeout_ms = self.regs["h"].get(257, 0)
            if timeout_ms and (now_s - self.last_request_s) * 1000 > timeout_ms and not self.fell_back:
                self.regs["h"][261] = self.regs["h"].get(262, 0)
                self.fell_back = True

    async def _delay(self, func_code, count, nvalues):
        self.requests += 1
        self.last_request_s = time.monotonic()
        self.fell_back = False
        delay = self.delay_ms / 1000.0 + self.turnaround_ms / 1000.0
        if self.wire_baud:
            # the request on the wire and its t3.5 end gap, then the answer; the gap after the answer is the
            # master's to keep (BusOwner waits max(t3.5, silent interval))
            n = count if func_code in (1, 2, 3, 4) else nvalues
            delay += wire_time_s(frame_bytes(func_code, n, True), self.wire_baud)
            delay += frame_bytes(func_code, n, False) * 11.0 / self.wire_baud
        if delay > 0:
            await asyncio.sleep(delay)

    async def async_getValues(self, func_code, address, count=1):
        await self._delay(func_code, count, 0)
        return self.getValues(func_code, address, count)

    async def async_setValues(self, func_code, address, values):
        await self._delay(func_code, len(values), len(values))
        return self.setValues(func_code, address, values)


class SimServer:
    """A pymodbus server thread for some SimDevices. kind "rtu" (port = pty path) or "tcp" (127.0.0.1)."""

    def __init__(self, kind, devices, port=None, baud=19200, parity="N", wire_baud=None, turnaround_ms=0):
        self.kind = kind
        self.devices = {d.unit_id: d for d in devices}
        for d in devices:
            d.wire_baud = wire_baud
            d.turnaround_ms = turnaround_ms
        self.port = port
        self.baud = baud
        self.parity = parity
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None

    def _trace(self, sending, data):
        if not sending or not data:
            return data
        dev = self.devices.get(data[0]) if self.kind == "rtu" else self.devices.get(data[6] if len(data) > 6 else -1)
        if dev is None:
            return data
        if dev.silent:
            return b""
        if dev.corrupt_crc and self.kind == "rtu":
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data

    def start(self):
        self._thread = threading.Thread(target=self._run, name="modbus-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("simulator did not start")
        if self._error:
            raise self._error
        return self

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as e:  # reported to the starting thread
            self._error = e
            self._ready.set()
        finally:
            pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()

    async def _serve(self):
        context = ModbusServerContext(devices=dict(self.devices), single=False)
        if self.kind == "rtu":
            self._server = ModbusSerialServer(context, framer=FramerType.RTU, port=self.port, baudrate=self.baud,
                                              parity=self.parity, ignore_missing_devices=True,
                                              trace_packet=self._trace)
        else:
            self._server = ModbusTcpServer(context, address=("127.0.0.1", self.port or 0),
                                           ignore_missing_devices=True, trace_packet=self._trace)
        self._stopped = asyncio.Event()
        task = asyncio.ensure_future(self._server.serve_forever())
        for _ in range(200):
            if self._server.transport is not None:
                break
            await asyncio.sleep(0.01)
        if self.kind == "tcp":
            self.port = self._server.transport.sockets[0].getsockname()[1]
        self._ready.set()
        while not self._stopped.is_set():
            for dev in self.devices.values():
                dev.watchdog_check(time.monotonic())
            try:
                await asyncio.wait_for(self._stopped.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
        await self._server.shutdown()
        task.cancel()

    def stop(self):
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)


class PtyPair:
    """Two linked pseudo-terminals made by socat; `a` and `b` are their paths."""

    def __init__(self):
        if shutil.which("socat") is None:
            raise RuntimeError("socat is not installed (tools/system-packages.txt)")
        self._dir = tempfile.mkdtemp(prefix="ptypair-")
        self.a = os.path.join(self._dir, "a")
        self.b = os.path.join(self._dir, "b")
        self._proc = None

    def __enter__(self):
        self._proc = subprocess.Popen(
            ["socat", "-d", "-d", "pty,raw,echo=0,link=" + self.a, "pty,raw,echo=0,link=" + self.b],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(500):
            if os.path.exists(self.a) and os.path.exists(self.b):
                return self
            if self._proc.poll() is not None:
                raise RuntimeError("socat exited: %s" % self._proc.stderr.read().decode(errors="replace"))
            time.sleep(0.01)
        self.__exit__(None, None, None)
        raise RuntimeError("socat did not create the pty pair")

    def __exit__(self, *exc):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def main(argv):
    """modbus_sim.py rtu DEVICE|tcp PORT [--wire-baud N] [--turnaround-ms N] MODEL:UNIT[:silent] ..."""
    import argparse
    ap = argparse.ArgumentParser(description="Serve simulated Modbus devices until interrupted.")
    ap.add_argument("kind", choices=("rtu", "tcp"))
    ap.add_argument("port", help="pty/serial device for rtu, TCP port for tcp (0 = any)")
    ap.add_argument("devices", nargs="+", help="MODEL:UNIT, or MODEL:UNIT:silent for a device that never answers")
    ap.add_argument("--wire-baud", type=int, default=None, help="simulate the wire time of this baud rate")
    ap.add_argument("--turnaround-ms", type=int, default=0, help="device reaction time")
    args = ap.parse_args(argv)
    devices = []
    for spec in args.devices:
        parts = spec.split(":")
        devices.append(SimDevice(parts[0], int(parts[1]) if len(parts) > 1 else 1,
                                 silent=len(parts) > 2 and parts[2] == "silent"))
    port = args.port if args.kind == "rtu" else int(args.port)
    srv = SimServer(args.kind, devices, port=port, wire_baud=args.wire_baud, turnaround_ms=args.turnaround_ms).start()
    print("serving on %s" % srv.port, flush=True)
    try:
        sys.stdin.read()  # until stdin closes or Ctrl-C
    except KeyboardInterrupt:
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
