"""Modbus bus owners: one thread per RS-485 line and per Modbus TCP endpoint.

Each `BusOwner` is the only code that talks on its line: it serialises every transaction, keeps the silent
interval the device models need, polls each device with the fewest block reads its table allows, and publishes
decoded readings with their timestamp into the runtime's `ReadingBoard` (adapters/readings.py). Setpoints arrive through
a `CommandMailbox` (latest command per device wins). A device that stops answering moves to a slow lane with
capped exponential back-off, so its timeouts cannot starve the others. Boxes with a watchdog (Heidelberg
257/262) get their timeout and failsafe current written at connect, so they fall back by themselves if this
process stops.

Units: times in ms (monotonic), currents mA, power W, as in `core.quantities`.
"""

import importlib
import logging
import threading
import time

from pymodbus import FramerType
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException

from chargemanager.core import regmap
from chargemanager.core.quantities import TYPE_WORDS, UNIT_FACTORS
from chargemanager.devices.index import MODELS
from chargemanager.shim.clock import monotonic_ms

log = logging.getLogger("modbus")

SLOW_LANE_AFTER_FAILURES = 2
BACKOFF_START_MS = 1000
BACKOFF_MAX_MS = 30000
RECONNECT_DELAY_MS = 1000
RAW_TIMEOUT_MS = 1000
PARITIES = ("N", "E", "O")


def load_model(model_id):
    """The table module of a model id; ValueError for an unknown model."""
    if model_id not in MODELS:
        raise ValueError("unknown device model %r (known: %s)" % (model_id, ", ".join(sorted(MODELS))))
    return importlib.import_module(MODELS[model_id])


def parse_address(address, model):
    """Transport settings from a config address.

    Serial: "/dev/ttyUSB0" or "/dev/ttyUSB0,19200,8,E,1" (cFos `COMx,19200,8,e,1` style; missing fields come
    from the model's serial defaults). TCP: "host:port", "tcp://host:port" or "host" (model's default port).
    Returns a dict with `kind` "rtu" or "tcp"; ValueError with a message for anything else.
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError("Modbus address must be a serial device or host:port, got %r" % (address,))
    address = address.strip()
    meta = model.META
    if address.startswith("/") or address.upper().startswith("COM"):
        if "rtu" not in meta["transports"]:
            raise ValueError("model %s has no Modbus RTU interface" % meta["model"])
        parts = [p.strip() for p in address.split(",")]
        ser = dict(meta["serial"])
        try:
            if len(parts) > 1:
                ser["baud"] = int(parts[1])
            if len(parts) > 2 and int(parts[2]) != 8:
                raise ValueError("only 8 data bits are supported")
            if len(parts) > 3:
                ser["parity"] = parts[3].upper()
            if len(parts) > 4:
                ser["stopbits"] = int(parts[4])
        except ValueError as e:
            raise ValueError("bad serial settings in %r: %s" % (address, e))
        if len(parts) > 5 or ser["parity"] not in PARITIES or ser["stopbits"] not in (1, 2) or ser["baud"] <= 0:
            raise ValueError("serial address must be DEVICE[,BAUD[,8[,N|E|O[,1|2]]]], got %r" % address)
        return {"kind": "rtu", "device": parts[0], "baud": ser["baud"], "parity": ser["parity"],
                "stopbits": ser["stopbits"]}
    if "tcp" not in meta["transports"]:
        raise ValueError("model %s has no Modbus TCP interface" % meta["model"])
    if address.startswith("tcp://"):
        address = address[len("tcp://"):]
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = address, str(meta.get("tcp_port", 502))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("TCP address must be host:port, got %r" % address)
    return {"kind": "tcp", "host": host, "port": int(port)}


def transport_key(transport):
    """Devices with the same key share one owner (one line / one TCP endpoint)."""
    if transport["kind"] == "rtu":
        return ("rtu", transport["device"])
    return ("tcp", transport["host"], transport["port"])


class BusError(Exception):
    """A failed transaction; kind is timeout, crc, exception or io."""

    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind


class CommandMailbox:
    """Setpoint commands for one owner: the latest per device wins; raw requests queue in order."""

    def __init__(self):
        self._lock = threading.Lock()
        self._setpoints = {}
        self._requests = []
        self.event = threading.Event()

    def put_setpoint(self, dev_id, current_ma, enable):
        with self._lock:
            self._setpoints[dev_id] = (int(current_ma), bool(enable))
        self.event.set()

    def put_request(self, request):
        with self._lock:
            self._requests.append(request)
        self.event.set()

    def take(self):
        with self._lock:
            setpoints, self._setpoints = self._setpoints, {}
            requests, self._requests = self._requests, []
            self.event.clear()
        return setpoints, requests


class _Request:
    """A raw transaction asked for by another thread (installer command); the caller waits on `done`."""

    def __init__(self, unit_id, function_code, address, count):
        self.unit_id = unit_id
        self.function_code = function_code
        self.address = address
        self.count = count
        self.done = threading.Event()
        self.result = None
        self.error = None


class Device:
    """One device on a bus: its table, plan, schedule and diagnostics. Owned by one BusOwner thread."""

    def __init__(self, dev_id, model_id, unit_id, poll_interval_ms=1000, options=None):
        self.dev_id = dev_id
        self.model_id = model_id
        self.model = load_model(model_id)
        if not isinstance(unit_id, int) or not 0 <= unit_id <= 255:
            raise ValueError("%s: Modbus unit id must be 0..255, got %r" % (dev_id, unit_id))
        self.unit_id = unit_id
        self.options = dict(options or {})
        self.meta = self.model.META
        self.plan = regmap.plan_reads(self.meta, self.model.REGMAP)
        self.writes = getattr(self.model, "WRITES", {})
        self.status = getattr(self.model, "STATUS", None)
        interval = poll_interval_ms
        watchdog = self.setup_value("watchdog_timeout")
        if watchdog:
            interval = min(interval, max(100, watchdog // 4))  # pet the box's watchdog well within its timeout
        self.poll_interval_ms = interval
        self.timeout_ms = int(self.options.get("timeout_ms", self.meta["timeout_ms"]))
        self.retries = int(self.options.get("retries", 1))
        self.monitor = bool(self.options.get("monitor", False))
        self.max_age_ms = int(self.options.get("max_age_ms", max(5000, 3 * interval)))
        self.silent_interval_ms = self.meta["silent_interval_ms"]
        self.next_due_ms = 0
        self.cursor = 0           # next block of the poll in progress (0 = no poll in progress)
        self.partial = {}
        self.poll_start_ms = 0
        self.last_end_ms = -(1 << 40)  # end of the last transaction with this device (its silent interval)
        self.slow = False
        self.failures = 0
        self.backoff_ms = BACKOFF_START_MS
        self.setup_done = False
        self.contiguous_only = False  # set when the device refused a read spanning unknown registers
        self.desired = None
        self.written = None
        self.last_values = None
        self.last_state = None
        self.last_ok_ms = None
        self.last_error = None
        self.last_error_ms = None
        self.counters = {"polls": 0, "ok": 0, "timeout": 0, "crc": 0, "exception": 0, "io": 0, "writes": 0,
                         "rewrites": 0}
        self.expected_limit_ma = None  # what the current-limit register should read back after our last write

    def setup_value(self, name):
        w = self.writes.get(name)
        if w is None or w["when"] != "setup":
            return None
        key = {"watchdog_timeout": "watchdog_timeout_ms", "failsafe_current": "failsafe_current_ma"}.get(name, name)
        return int(self.options.get(key, w.get("default", 0)))

    def diagnostics(self, now_ms):
        return {
            "dev_id": self.dev_id, "model": self.model_id, "unit_id": self.unit_id,
            "lane": "slow" if self.slow else "fast",
            "last_good": dict(self.last_values) if self.last_values is not None else None,
            "state": self.last_state,
            "age_ms": None if self.last_ok_ms is None else now_ms - self.last_ok_ms,
            "counters": dict(self.counters),
            "last_error": self.last_error,
            "last_error_age_ms": None if self.last_error_ms is None else now_ms - self.last_error_ms,
            "setpoint": None if self.written is None else {"current_ma": self.written[0], "enable": self.written[1]},
            "reads_per_poll": len(self.plan), "contiguous_only": self.contiguous_only,
        }


class BusOwner(threading.Thread):
    """Owns one RS-485 line or TCP endpoint; start(), then stop() (joins)."""

    def __init__(self, transport, devices, readings, clock=monotonic_ms, name=None):
        threading.Thread.__init__(self, name=name or "modbus-%s" % ":".join(str(p) for p in transport_key(transport)),
                                  daemon=True)
        self.transport = transport
        self.devices = list(devices)
        self.by_id = {d.dev_id: d for d in self.devices}
        units = [d.unit_id for d in self.devices]
        if len(set(units)) != len(units):
            raise ValueError("two devices share a unit id on %s" % (transport_key(transport),))
        self.readings = readings
        self.commands = CommandMailbox()
        self.clock = clock
        self._stop_event = threading.Event()
        self._diag_lock = threading.Lock()
        self._diag = {}
        self._client = None
        self._last_end_ms = -(1 << 40)
        self._rx_seen = False
        self.transactions = 0
        # RTU frames are delimited by 3.5 character times of silence (11 bits per character; 1.75 ms above
        # 19200 baud, Modbus over serial line V1.02 §2.5.1.1)
        self._t35_ms = 0.0
        if transport["kind"] == "rtu":
            self._t35_ms = 1.75 if transport["baud"] > 19200 else 3.5 * 11 * 1000.0 / transport["baud"]
        self._publish_diag()

    # ---- called from other threads ----
    def set_charge(self, dev_id, current_ma, enable):
        """Ask for a charging current (mA) and enable flag; the latest request per device wins."""
        dev = self.by_id.get(dev_id)
        if dev is None or dev.meta["kind"] != "charger":
            raise ValueError("%s is not a Modbus charger on this bus" % dev_id)
        self.commands.put_setpoint(dev_id, current_ma, enable)

    def raw_read(self, unit_id, function_code, address, count=1, timeout_s=5.0):
        """One raw read between polls (installer command); returns registers/bits or raises BusError/ValueError.

        Reads only: a raw write could hit a flash register (cFos Power Brain) or fight the load management.
        """
        if function_code not in (1, 2, 3, 4):
            raise ValueError("function code must be 1, 2, 3 or 4 (reads only)")
        if not 0 <= unit_id <= 255 or not 0 <= address <= 0xFFFF or not 1 <= count <= 125:
            raise ValueError("unit id 0..255, address 0..65535 and count 1..125 required")
        req = _Request(unit_id, function_code, address, count)
        self.commands.put_request(req)
        if not req.done.wait(timeout_s):
            raise BusError("timeout", "bus busy: no answer within %.1f s" % timeout_s)
        if req.error is not None:
            raise req.error
        return req.result

    def diagnostics(self):
        with self._diag_lock:
            return [dict(self._diag[d.dev_id]) for d in self.devices if d.dev_id in self._diag]

    def stop(self, timeout_s=5.0):
        self._stop_event.set()
        self.commands.event.set()
        if self.is_alive():
            self.join(timeout_s)

    # ---- the owner thread ----
    def run(self):
        try:
            while not self._stop_event.is_set():
                try:
                    self._run_once()
                except Exception:  # a bug or an odd answer must not end the bus for good
                    log.exception("bus %s: unexpected error; reconnecting", transport_key(self.transport))
                    if self._client is not None:
                        self._client.close()
                    self._stop_event.wait(RECONNECT_DELAY_MS / 1000.0)
        finally:
            if self._client is not None:
                self._client.close()

    def _run_once(self):
        """One step of the owner loop: connect, serve requests and setpoints, then one block read."""
        if not self._connect():
            self._fail_all("io", "cannot open %s" % (transport_key(self.transport),))
            # reconnect with the devices' capped back-off, at least RECONNECT_DELAY_MS apart
            wait_ms = min(d.next_due_ms for d in self.devices) - self.clock()
            self._stop_event.wait(max(RECONNECT_DELAY_MS, wait_ms) / 1000.0)
            return
        setpoints, requests = self.commands.take()
        for req in requests:
            self._serve_request(req)
        for dev_id, sp in setpoints.items():
            self.by_id[dev_id].desired = sp
        self._write_setpoints()
        dev, wait_ms = self._next_block()
        if dev is None:
            self._publish_diag()
            self.commands.event.wait(min(1.0, wait_ms / 1000.0))
            return
        self._poll_step(dev)
        self._publish_diag()

    def _connect(self):
        if self._client is None:
            self._client = self._make_client()
        if self._client.connected:
            return True
        ok = self._client.connect()
        if ok:
            for d in self.devices:
                d.setup_done = False
                d.written = None
        return ok

    def _make_client(self):
        t = self.transport
        timeout_s = max(d.timeout_ms for d in self.devices) / 1000.0
        if t["kind"] == "rtu":
            client = ModbusSerialClient(t["device"], framer=FramerType.RTU, baudrate=t["baud"], bytesize=8,
                                        parity=t["parity"], stopbits=t["stopbits"], timeout=timeout_s, retries=0,
                                        trace_packet=self._trace)
            if hasattr(client, "_recv_interval"):
                # pymodbus 3.12 polls the line every 4 character times and needs two equal polls to see the end
                # of an answer; one character time cuts that wait (~5 ms per transaction at 19200 baud)
                client._recv_interval = max(0.0005, 11.0 / t["baud"])
            return client
        return ModbusTcpClient(t["host"], port=t["port"], timeout=timeout_s, retries=0, trace_packet=self._trace)

    def _trace(self, sending, data):
        if not sending and data:
            self._rx_seen = True
        return data

    def _ready_ms(self, dev):
        """When `dev` may be addressed: its own silent interval after its last transaction, t3.5 after any frame."""
        return max(dev.last_end_ms + dev.silent_interval_ms, self._last_end_ms + self._t35_ms)

    def _next_block(self):
        """(device whose next block read should go now, None) or (None, ms to wait).

        Scheduling is per block, not per poll: while one device keeps its silent interval (SDM72, Heidelberg:
        100 ms), blocks of other devices use the line. A poll in progress goes before a new one (readings of
        one device stay close in time); otherwise the earliest due first, so the slow lane, throttled by its
        back-off, is never starved by a saturated bus.
        """
        now = self.clock()
        best = None
        best_key = None
        earliest = now + 1000
        for d in self.devices:
            due = d.cursor > 0 or d.next_due_ms <= now
            if not due:
                earliest = min(earliest, d.next_due_ms)
                continue
            ready = self._ready_ms(d)
            if ready > now:
                earliest = min(earliest, ready)
                continue
            key = (0, d.poll_start_ms) if d.cursor > 0 else (1, d.next_due_ms)
            if best_key is None or key < best_key:
                best, best_key = d, key
        if best is not None:
            return best, 0
        return None, max(0, earliest - now)

    def _transact(self, dev, function_code, address, count=1, values=None, retries=0, unit=None):
        """One request/response with the silent interval kept; returns registers/bits or raises BusError.

        `dev` is None for a raw request to a unit id that no configured device has (then `unit` is used).
        """
        ready_ms = self._ready_ms(dev) if dev is not None else self._last_end_ms + self._t35_ms
        wait_ms = ready_ms - self.clock()
        if wait_ms > 0:
            time.sleep(wait_ms / 1000.0)
        if dev is not None:
            unit = dev.unit_id
        timeout_s = (dev.timeout_ms if dev else RAW_TIMEOUT_MS) / 1000.0
        self._client.comm_params.timeout_connect = timeout_s
        sock = getattr(self._client, "socket", None)
        if sock is not None and hasattr(sock, "timeout"):
            try:
                sock.timeout = timeout_s
            except Exception:  # a socket object without a settable timeout keeps its own
                pass
        last = None
        for _ in range(retries + 1):
            self._rx_seen = False
            self.transactions += 1
            try:
                rr = self._call(function_code, address, count, values, unit)
            except ConnectionException as e:
                last = BusError("io", "line error: %s" % e)
                self._client.close()
                break
            except ModbusException as e:
                # pymodbus drops a frame with a bad CRC and waits for the timeout; bytes seen = garbled answer
                kind = "crc" if self._rx_seen else "timeout"
                last = BusError(kind, "garbled answer (CRC)" if kind == "crc" else "no answer within %d ms"
                                % int(timeout_s * 1000))
                continue
            except OSError as e:
                last = BusError("io", "line error: %s" % e)
                self._client.close()
                break
            finally:
                self._last_end_ms = self.clock()
                if dev is not None:
                    dev.last_end_ms = self._last_end_ms
            ctx = getattr(self._client, "ctx", None)
            if ctx is not None and hasattr(ctx, "max_until_disconnect"):
                # pymodbus' sync client never resets this count; a silent device must not make it close the line
                ctx.count_until_disconnect = ctx.max_until_disconnect
            if rr.isError():
                raise BusError("exception", "Modbus exception %s from unit %d (fc %d, address %d)"
                               % (getattr(rr, "exception_code", "?"), unit, function_code, address))
            if function_code in (1, 2):
                return [1 if b else 0 for b in rr.bits[:count]]
            if function_code in (3, 4):
                return list(rr.registers)
            return None
        raise last

    def _call(self, fc, address, count, values, unit):
        c = self._client
        if fc == 1:
            return c.read_coils(address, count=count, device_id=unit)
        if fc == 2:
            return c.read_discrete_inputs(address, count=count, device_id=unit)
        if fc == 3:
            return c.read_holding_registers(address, count=count, device_id=unit)
        if fc == 4:
            return c.read_input_registers(address, count=count, device_id=unit)
        if fc == 5:
            return c.write_coil(address, bool(values[0]), device_id=unit)
        if fc == 6:
            return c.write_register(address, values[0], device_id=unit)
        if fc == 16:
            return c.write_registers(address, list(values), device_id=unit)
        if fc == 15:
            return c.write_coils(address, [bool(v) for v in values], device_id=unit)
        raise BusError("exception", "unsupported function code %d" % fc)

    def _poll_step(self, dev):
        """Read the next block of `dev`'s poll; publish when the poll is complete."""
        if dev.cursor == 0:
            dev.counters["polls"] += 1
            dev.poll_start_ms = self.clock()
            dev.partial = {}
        blocks = dev.plan[:1] if dev.slow else dev.plan  # the slow lane only probes with one read
        block = blocks[dev.cursor]
        try:
            words = self._transact(dev, block[0], block[1], block[2], retries=0 if dev.slow else dev.retries)
            dev.partial.update(regmap.decode_block(dev.meta, block, words))
        except (BusError, ValueError) as e:
            dev.cursor = 0
            err = e if isinstance(e, BusError) else BusError("exception", str(e))
            if err.kind == "exception" and dev.meta["max_gap_regs"] > 0 and _has_holes(block):
                # some devices refuse reads that span registers they do not have: read without holes from now on
                dev.plan = regmap.plan_reads(dict(dev.meta, max_gap_regs=0), dev.model.REGMAP)
                dev.contiguous_only = True
            self._failed(dev, err, dev.poll_start_ms)
            return
        dev.cursor += 1
        if dev.cursor < len(blocks):
            return
        dev.cursor = 0
        if dev.slow:
            # it answers again: back to the fast lane, full poll right away, setpoints and setup re-sent
            dev.slow = False
            dev.failures = 0
            dev.backoff_ms = BACKOFF_START_MS
            dev.setup_done = False
            dev.written = None
            dev.next_due_ms = self.clock()
            return
        end = self.clock()
        values = dev.partial
        dev.failures = 0
        dev.counters["ok"] += 1
        dev.last_values = values
        dev.last_state = regmap.iec_state(dev.status, values.get("state_code"))
        dev.last_ok_ms = end
        dev.next_due_ms = dev.poll_start_ms + dev.poll_interval_ms
        published = dict(values)
        if dev.status is not None:
            # what the load manager reads of an EVSE (adapters/load_manager.py)
            published["state"] = dev.last_state
            published["online"] = 1
            published["wants"] = 1 if dev.last_state in ("B", "C", "D") else 0
            if values.get("import_wh") is not None:
                published["energy_wh"] = values["import_wh"]
        self.readings.publish(dev.dev_id, published, end, dev.max_age_ms)
        got = values.get("current_limit_ma")
        if dev.written is not None and dev.expected_limit_ma is not None and got is not None \
                and got != dev.expected_limit_ma:
            # the box lost our setpoint (reboot, its watchdog, a local change): send it again
            dev.written = None
            dev.counters["rewrites"] += 1
        if not dev.setup_done and dev.meta["kind"] == "charger" and not dev.monitor:
            self._setup(dev)

    def _failed(self, dev, err, now):
        dev.cursor = 0
        dev.counters[err.kind] += 1
        dev.last_error = "%s: %s" % (err.kind, err)
        dev.last_error_ms = self.clock()
        dev.failures += 1
        if dev.slow:
            dev.backoff_ms = min(dev.backoff_ms * 2, BACKOFF_MAX_MS)
            dev.next_due_ms = now + dev.backoff_ms
        elif dev.failures >= SLOW_LANE_AFTER_FAILURES and err.kind != "exception":
            dev.slow = True
            dev.next_due_ms = now + dev.backoff_ms
        else:
            dev.next_due_ms = now + dev.poll_interval_ms

    def _fail_all(self, kind, message):
        now = self.clock()
        for d in self.devices:
            d.counters["polls"] += 1
            self._failed(d, BusError(kind, message), now)
        self._publish_diag()

    def _setup(self, dev):
        """Write the setup registers whose read-back differs (watchdog, failsafe current, standby)."""
        try:
            for name, w in dev.writes.items():
                if w["when"] != "setup":
                    continue
                fc, addr, words = regmap.encode_write(w, dev.setup_value(name))
                read_fc = 1 if fc in (5, 15) else 3
                current = self._transact(dev, read_fc, addr, TYPE_WORDS[w["type"]], retries=dev.retries)
                if [int(v) for v in current] != [int(v) for v in words]:
                    self._transact(dev, fc, addr, values=words, retries=dev.retries)
                    dev.counters["writes"] += 1
            dev.setup_done = True
        except (BusError, ValueError) as e:
            err = e if isinstance(e, BusError) else BusError("exception", str(e))
            self._failed(dev, err, self.clock())

    def _write_setpoints(self):
        for dev in self.devices:
            if (dev.desired is None or dev.desired == dev.written or dev.slow or dev.last_ok_ms is None
                    or dev.monitor):
                continue
            try:
                self._write_charge(dev, dev.desired[0], dev.desired[1])
                dev.written = dev.desired
            except BusError as e:
                self._failed(dev, e, self.clock())

    def _write_charge(self, dev, current_ma, enable):
        meta = dev.meta
        current_ma = min(current_ma, meta["current_max_ma"])
        if current_ma < meta["current_min_ma"]:
            enable = False
        cur_w = dev.writes["current_limit"]
        if meta["stop_by"] == "zero_current":
            fc, addr, words = regmap.encode_write(cur_w, current_ma if enable else 0)
            self._transact(dev, fc, addr, values=words, retries=dev.retries)
            dev.counters["writes"] += 1
            dev.expected_limit_ma = _read_back_ma(cur_w, words)
            return
        en_w = dev.writes["enable"]
        steps = [(cur_w, max(current_ma, meta["current_min_ma"])), (en_w, 1 if enable else 0)]
        if not enable:
            steps.reverse()  # stop first, then lower the limit
        for w, value in steps:
            fc, addr, words = regmap.encode_write(w, value)
            self._transact(dev, fc, addr, values=words, retries=dev.retries)
            dev.counters["writes"] += 1
            if w is cur_w:
                dev.expected_limit_ma = _read_back_ma(cur_w, words)

    def _serve_request(self, req):
        dev = None
        for d in self.devices:
            if d.unit_id == req.unit_id:
                dev = d
        try:
            req.result = self._transact(dev, req.function_code, req.address, req.count, unit=req.unit_id)
        except BusError as e:
            req.error = e
        req.done.set()

    def _publish_diag(self):
        now = self.clock()
        snap = {d.dev_id: d.diagnostics(now) for d in self.devices}
        with self._diag_lock:
            self._diag = snap



def _read_back_ma(write, words):
    """The current (mA) the limit register reads back after writing `words`."""
    return int(round(words[0] * write["scale"] * UNIT_FACTORS[(write["unit"], "mA")]))


def _has_holes(block):
    """True if a planned block read spans registers that no row of the table names."""
    covered = 0
    for row in block[3]:
        covered += TYPE_WORDS[row[3]]
    return covered < block[2]


def is_modbus_model(model_id, kind=None):
    if model_id not in MODELS:
        return False
    return kind is None or load_model(model_id).META["kind"] == kind


class ModbusService:
    """All bus owners of a configuration: devices grouped by line/endpoint, one BusOwner each.

    Built from `meters[]`, the `evses[]` whose type is a Modbus charger model, and the Modbus I/O modules that
    `inputs[]` name. Runtime service: start(), stop().
    """

    def __init__(self, readings, clock=monotonic_ms):
        # pymodbus logs every timeout as ERROR; ours are counted per device and shown in the diagnostics
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self.readings = readings
        self.clock = clock
        self.owners = []
        self.io_dev_ids = {}  # (address, unit id) of an I/O module named by inputs[] -> its device id
        self._by_dev = {}
        self._bus_by_address = {}

    @classmethod
    def from_config(cls, config, readings, clock=monotonic_ms):
        svc = cls(readings, clock)
        entries = []
        for m in config.get("meters") or []:
            if not is_modbus_model(m.get("type")) or not (m.get("address") or "").strip():
                continue  # no bus: its values are pushed (set_ajax_meter) or come from the SMGW
            entries.append((m["dev_id"], m["type"], m.get("address", ""), m.get("id", 1), m))
        site_monitor = (config.get("site") or {}).get("mode") == "monitor"
        for e in config.get("evses") or []:
            if is_modbus_model(e.get("type"), "charger"):
                options = dict(e)
                # monitor mode: observe only - not even the watchdog/standby setup is written
                options["monitor"] = site_monitor or e.get("mode") == "monitor"
                entries.append((e["dev_id"], e["type"], e.get("address", ""), e.get("id", 1), options))
        for io in io_modules(config):
            entries.append((io["dev_id"], io["type"], io["address"], io["id"], io))
            svc.io_dev_ids[(io["address"], io["id"])] = io["dev_id"]
        svc.add(entries)
        return svc

    def add(self, entries):
        """entries: (dev_id, model_id, address, unit_id, options); ValueError names the first bad entry."""
        groups = {}
        for dev_id, model_id, address, unit_id, options in entries:
            model = load_model(model_id)
            try:
                transport = parse_address(address, model)
            except ValueError as e:
                raise ValueError("%s: %s" % (dev_id, e))
            key = transport_key(transport)
            if key in groups and transport != groups[key][0]:
                raise ValueError("%s: %s is already used with other serial settings (%s)"
                                 % (dev_id, key[1], _serial_text(groups[key][0])))
            opts = {k: options[k] for k in ("poll_interval_ms", "max_age_ms", "timeout_ms", "retries",
                                             "watchdog_timeout_ms", "failsafe_current_ma", "monitor")
                    if options.get(k) is not None}
            dev = Device(dev_id, model_id, unit_id, opts.pop("poll_interval_ms", 1000), opts)
            groups.setdefault(key, (transport, []))[1].append(dev)
        for key, (transport, devices) in groups.items():
            owner = BusOwner(transport, devices, self.readings, self.clock)
            self.owners.append(owner)
            for d in devices:
                self._by_dev[d.dev_id] = owner
            self._bus_by_address[key] = owner

    def start(self):
        for o in self.owners:
            o.start()

    def stop(self):
        for o in self.owners:
            o.stop()

    def has(self, dev_id):
        return dev_id in self._by_dev

    def set_charge(self, dev_id, current_ma, enable):
        """Hand a setpoint (mA per phase, enable) to the owner of a Modbus charger."""
        owner = self._by_dev.get(dev_id)
        if owner is None:
            raise ValueError("%s is not a Modbus device" % dev_id)
        owner.set_charge(dev_id, current_ma, enable)

    def diagnostics(self):
        """Per device: last good reading, its age, lane, error counters and the last error (status API)."""
        out = []
        for o in self.owners:
            bus = ":".join(str(p) for p in transport_key(o.transport))
            for d in o.diagnostics():
                d["bus"] = bus
                out.append(d)
        return out

    def raw_read(self, unit_id, function_code, address, count, dev_id=None, bus_address=None):
        """Installer read on a configured bus, chosen by a device id or by its address; see BusOwner.raw_read."""
        if dev_id is not None:
            owner = self._by_dev.get(dev_id)
            if owner is None:
                raise LookupError("no Modbus device %s" % dev_id)
            if unit_id is None:
                unit_id = owner.by_id[dev_id].unit_id
        else:
            owner = self._bus_by_address.get(_key_of_address(bus_address or ""))
            if owner is None:
                raise LookupError("no configured Modbus bus at %r" % (bus_address,))
        if unit_id is None:
            raise ValueError("id (unit id) is required")
        return owner.raw_read(unit_id, function_code, address, count)


def _key_of_address(address):
    address = address.strip()
    if address.startswith("/") or address.upper().startswith("COM"):
        return ("rtu", address.split(",")[0].strip())
    if address.startswith("tcp://"):
        address = address[len("tcp://"):]
    host, sep, port = address.rpartition(":")
    if not sep:
        return ("tcp", address, 502)
    return ("tcp", host, int(port) if port.isdigit() else -1)


def _serial_text(t):
    if t["kind"] != "rtu":
        return "%s:%d" % (t["host"], t["port"])
    return "%d,8,%s,%d" % (t["baud"], t["parity"], t["stopbits"])


def io_modules(config):
    """The Modbus I/O modules that `inputs[]` read, one device per (address, unit id)."""
    seen = {}
    for inp in config.get("inputs") or []:
        if inp.get("source") != "modbus":
            continue
        key = (inp.get("address", ""), inp.get("id", 1))
        if key not in seen:
            seen[key] = {"dev_id": "_IO%d" % (len(seen) + 1), "type": inp.get("type") or "generic_di8",
                         "address": key[0], "id": key[1], "poll_interval_ms": inp.get("poll_interval_ms", 500),
                         "max_age_ms": inp.get("max_age_ms", 3000)}
    return list(seen.values())
