"""Switching inputs IN1, IN2, ...: ripple control receiver and FNN control box contacts, key switches.

Sources: a file (development and tests), a Modbus I/O module (read by the bus owner like any device, here taken
from the ReadingBoard with its age), or a GPIO line of the board through libgpiod (the `gpiod` package,
imported only when a GPIO input is configured). A thread reads every input each `interval_ms` and publishes
`{"value": 0|1, "ok": 0|1}` under the input's name on the ReadingBoard, where formulas find it (`IN1 ? 25000 :
55000`). Fail-safe: an input whose source fails (file missing, module silent or stale, GPIO error) reads 1,
"command active", as §14a and FNN expect of a control box that cannot be read. A change wakes the control loop.
"""

import json
import logging
import threading

from chargemanager.shim.clock import monotonic_ms

log = logging.getLogger("inputs")

SOURCES = ("file", "modbus", "gpio")


class InputError(Exception):
    pass


class FileSource:
    """The file holds `0`/`1`, or (with `key`) a JSON object or `NAME=0|1` lines."""

    def __init__(self, path, key=None):
        self.path = path
        self.key = key

    def read(self):
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise InputError("cannot read %s: %s" % (self.path, e.strerror or e))
        if self.key is None:
            return _bit(text.strip(), self.path)
        stripped = text.strip()
        if stripped.startswith("{"):
            try:
                doc = json.loads(stripped)
            except ValueError as e:
                raise InputError("%s is not valid JSON: %s" % (self.path, e))
            if self.key not in doc:
                raise InputError("%s has no %r" % (self.path, self.key))
            return _bit(doc[self.key], self.path)
        for line in stripped.splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() == self.key:
                return _bit(value.strip(), self.path)
        raise InputError("%s has no line %s=..." % (self.path, self.key))


class ModbusSource:
    """One discrete input of an I/O module polled by the Modbus service (`_IO1.di_3`)."""

    def __init__(self, readings, dev_id, channel, clock=monotonic_ms):
        self.readings = readings
        self.dev_id = dev_id
        self.quantity = "di_%d" % channel
        self.clock = clock

    def read(self):
        reading = self.readings.get(self.dev_id)
        if reading is None:
            raise InputError("no reading from the I/O module yet")
        values, taken_ms, max_age_ms = reading
        age = self.clock() - taken_ms
        if age > max_age_ms:
            raise InputError("I/O module reading is %d ms old (limit %d ms)" % (age, max_age_ms))
        if values.get(self.quantity) is None:
            raise InputError("I/O module has no %s" % self.quantity)
        return 1 if values[self.quantity] else 0


class GpioSource:
    """A GPIO line through libgpiod (python3-gpiod / the `gpiod` package, v2 API, v1 as fallback)."""

    def __init__(self, chip, line, active_low=False):
        self.chip = chip
        self.line = line
        self.active_low = active_low
        self._request = None

    def read(self):
        try:
            import gpiod  # only on the appliance; development machines have no GPIO
        except ImportError:
            raise InputError("the gpiod package is not installed")
        try:
            if hasattr(gpiod, "request_lines"):
                if self._request is None:
                    from gpiod.line import Direction
                    settings = gpiod.LineSettings(direction=Direction.INPUT, active_low=self.active_low)
                    self._request = gpiod.request_lines(self.chip, consumer="chargemanager",
                                                        config={self.line: settings})
                return 1 if self._request.get_value(self.line) == gpiod.line.Value.ACTIVE else 0
            if self._request is None:
                chip = gpiod.Chip(self.chip)
                line = chip.get_line(self.line)
                flags = gpiod.LINE_REQ_FLAG_ACTIVE_LOW if self.active_low else 0
                line.request(consumer="chargemanager", type=gpiod.LINE_REQ_DIR_IN, flags=flags)
                self._request = line
            return 1 if self._request.get_value() else 0
        except Exception as e:  # any libgpiod failure is a failed input: fail-safe below
            self._request = None
            raise InputError("GPIO %s line %s: %s" % (self.chip, self.line, e))


def _bit(value, where):
    if value in (0, 1, "0", "1", True, False):
        return 1 if value in (1, "1", True) else 0
    raise InputError("%s: expected 0 or 1, got %r" % (where, value))


class Input:
    def __init__(self, name, source, invert=False, failsafe_value=1):
        self.name = name
        self.source = source
        self.invert = invert
        self.failsafe_value = failsafe_value
        self.value = failsafe_value
        self.ok = False
        self.error = "not read yet"

    def read(self):
        """Read the source; on failure take the fail-safe value. Returns True if the value changed."""
        old = self.value
        try:
            raw = self.source.read()
            self.value = 1 - raw if self.invert else raw
            self.ok = True
            self.error = None
        except InputError as e:
            if self.ok or self.error != str(e):
                log.warning("input %s failed, counts as active: %s", self.name, e)
            self.value = self.failsafe_value
            self.ok = False
            self.error = str(e)
        return self.value != old


class InputService:
    """Reads all configured inputs in one thread and publishes them; start(), stop()."""

    def __init__(self, inputs, readings, wake=None, interval_ms=200, clock=monotonic_ms):
        self.inputs = list(inputs)
        self.readings = readings
        self.wake = wake
        self.interval_ms = interval_ms
        self.clock = clock
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config, readings, wake=None, io_dev_ids=None, clock=monotonic_ms):
        """Build from `inputs[]`; `io_dev_ids` maps (address, unit id) to the Modbus service's device ids."""
        inputs = []
        for entry in config.get("inputs") or []:
            kind = entry.get("source")
            if kind == "file":
                source = FileSource(entry["path"], entry.get("key") or None)
            elif kind == "modbus":
                dev_id = (io_dev_ids or {}).get((entry.get("address", ""), entry.get("id", 1)))
                if dev_id is None:
                    raise ValueError("input %s: no Modbus I/O module at %r id %r"
                                     % (entry["name"], entry.get("address"), entry.get("id")))
                source = ModbusSource(readings, dev_id, entry.get("channel", 1), clock)
            elif kind == "gpio":
                source = GpioSource(entry.get("chip", "/dev/gpiochip0"), entry.get("line", 0),
                                    entry.get("active_low", False))
            else:
                raise ValueError("input %s: source must be one of %s" % (entry.get("name"), ", ".join(SOURCES)))
            inputs.append(Input(entry["name"].upper(), source, entry.get("invert", False)))
        interval = min([e.get("poll_interval_ms", 200) for e in config.get("inputs") or []] or [200])
        return cls(inputs, readings, wake, interval, clock)

    def poll_once(self):
        """Read every input and publish; wakes the control loop when a value changed."""
        changed = False
        now = self.clock()
        with self._lock:
            for inp in self.inputs:
                changed = inp.read() or changed
                self.readings.publish(inp.name, {"value": inp.value, "ok": 1 if inp.ok else 0}, now,
                                      max(1000, 5 * self.interval_ms))
        if changed and self.wake is not None:
            self.wake.set()
        return changed

    def status(self):
        with self._lock:
            return [{"name": i.name, "value": i.value, "ok": i.ok, "error": i.error} for i in self.inputs]

    def start(self):
        if not self.inputs:
            return
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="inputs", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval_ms / 1000.0):
            try:
                self.poll_once()
            except Exception:
                log.exception("reading the inputs failed")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
