"""The status LED through the Linux LED class (/sys/class/leds/<name>/{trigger,brightness,delay_on,delay_off}).

One LED, six patterns (docs/image.md has the table an installer reads):
  booting     blink 250 ms on / 250 ms off
  running     steady on
  comm_error  slow blink 1 s on / 1 s off       (a meter, wallbox or backend does not answer)
  limited     on, dark 100 ms every 2 s         (a grid operator limitation is active)
  update      flicker 50 ms on / 50 ms off      (an update is being installed: do not power off)
  fault       flash 100 ms every 2 s            (the app cannot work: configuration or internal error)
Blinking uses the kernel's "timer" trigger, so the pattern keeps running even when the app is busy or hangs.
`base` is a folder standing in for /sys/class/leds in development and tests; a missing LED makes every call a
no-op (the emulator and development machines have none). Files are written only when the pattern changes.
"""

import os

# pattern -> (trigger, delay_on_ms, delay_off_ms); trigger "none" means steady on
PATTERNS = {
    "booting": ("timer", 250, 250),
    "running": ("none", None, None),
    "comm_error": ("timer", 1000, 1000),
    "limited": ("timer", 1900, 100),
    "update": ("timer", 50, 50),
    "fault": ("timer", 100, 1900),
}

DEFAULT_BASE = "/sys/class/leds"


def choose_pattern(started, fault=False, updating=False, comm_error=False, limited=False):
    """The pattern for a runtime state; the most urgent condition wins."""
    if updating:
        return "update"
    if fault:
        return "fault"
    if not started:
        return "booting"
    if comm_error:
        return "comm_error"
    if limited:
        return "limited"
    return "running"


class StatusLed:
    def __init__(self, name, base=DEFAULT_BASE):
        self.path = os.path.join(base, name) if name else ""
        self.pattern = None

    @property
    def available(self):
        return bool(self.path) and os.path.isfile(os.path.join(self.path, "trigger"))

    def _write(self, attribute, value):
        with open(os.path.join(self.path, attribute), "w") as f:
            f.write(str(value))

    def _max_brightness(self):
        try:
            with open(os.path.join(self.path, "max_brightness")) as f:
                return int(f.read().strip() or 1)
        except (OSError, ValueError):
            return 1

    def set(self, pattern):
        """Show `pattern` (a key of PATTERNS); True when the LED was written. Unknown patterns raise ValueError."""
        if pattern not in PATTERNS:
            raise ValueError("unknown LED pattern %r (known: %s)" % (pattern, ", ".join(sorted(PATTERNS))))
        if pattern == self.pattern or not self.available:
            return False
        trigger, on_ms, off_ms = PATTERNS[pattern]
        try:
            if trigger == "timer":
                # the kernel creates delay_on/delay_off when the timer trigger is selected
                self._write("trigger", "timer")
                self._write("delay_on", on_ms)
                self._write("delay_off", off_ms)
            else:
                self._write("trigger", "none")
                self._write("brightness", self._max_brightness())
        except OSError:
            return False
        self.pattern = pattern
        return True

    def off(self):
        if not self.available:
            return False
        try:
            self._write("trigger", "none")
            self._write("brightness", 0)
        except OSError:
            return False
        self.pattern = None
        return True
