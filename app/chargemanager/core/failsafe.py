"""Failsafe variables: a value the grid operator must keep refreshing (§14a EnWG; REFERENCE A6, EEBUS LPC).

A variable declared failsafe (config `smgw.failsafe[]`: `name`, `timeout_s`, `value`, `refresh_by`) takes its
failsafe value when nobody allowed to refresh it (`refresh_by`: `smgw` = only the grid operator through the Smart
Meter Gateway, `any` = also the admin) has written it for `timeout_s`. It leaves failsafe at the next such write,
which then applies as written.

Invariants:
- Times are milliseconds of a monotonic clock handed in as `now_ms`; this module never reads a clock or a file.
- A variable is in failsafe or not; `tick` reports each entry exactly once, `written` each exit exactly once.
- The timer of a newly configured variable starts when it is configured (or at start-up): a box that has just
  booted gives the grid operator `timeout_s` to write before it falls back, unless the state restored from the data
  partition says the variable was already in failsafe (then it stays there, as EEBUS LPC-TS-017 asks).
- Variable names compare case-insensitively, like the variable table.
Pure module (MicroPython-compatible).
"""

SOURCES = ("smgw", "any")


def _key(name):
    return name.upper()


class FailsafeVar:
    def __init__(self, name, timeout_ms, value, refresh_by, last_write_ms):
        self.name = name
        self.timeout_ms = timeout_ms
        self.value = value
        self.refresh_by = refresh_by
        self.last_write_ms = last_write_ms
        self.active = False
        self.entered_ms = None

    def to_dict(self, now_ms):
        return {"name": self.name, "active": self.active, "timeout_s": self.timeout_ms // 1000, "value": self.value,
                "refresh_by": self.refresh_by, "since_write_s": (now_ms - self.last_write_ms) // 1000,
                "remaining_s": 0 if self.active else max(0, (self.last_write_ms + self.timeout_ms - now_ms) // 1000)}


class FailsafeMonitor:
    def __init__(self):
        self._vars = {}

    def configure(self, entries, now_ms):
        """Set the declared variables from config entries ({name, timeout_s, value, refresh_by}); keeps the timer and
        state of a variable that stays declared."""
        new = {}
        for e in entries:
            key = _key(e["name"])
            old = self._vars.get(key)
            var = FailsafeVar(e["name"], int(e["timeout_s"] * 1000), e["value"], e.get("refresh_by", "smgw"),
                              old.last_write_ms if old is not None else now_ms)
            if old is not None:
                var.active = old.active
                var.entered_ms = old.entered_ms
            new[key] = var
        self._vars = new

    def restore(self, state, now_ms):
        """Apply state saved by `persistent_state` before a restart: {NAME: {"active": bool, "since_write_ms": n}}.
        `since_write_ms` None means unknown (the clock was not trustworthy): the timer starts now."""
        for key, saved in state.items():
            var = self._vars.get(_key(key))
            if var is None:
                continue
            if saved.get("active"):
                var.active = True
                var.entered_ms = now_ms
            since = saved.get("since_write_ms")
            if isinstance(since, int) and since >= 0:
                var.last_write_ms = now_ms - since

    def persistent_state(self, now_ms):
        return dict((key, {"active": var.active, "since_write_ms": now_ms - var.last_write_ms})
                    for key, var in self._vars.items())

    def written(self, names, source, now_ms):
        """A write of `names` by `source` ('smgw', 'admin', 'failsafe', ...). Returns the names that leave failsafe."""
        exits = []
        if source == "failsafe":
            return exits
        for name in names:
            var = self._vars.get(_key(name))
            if var is None:
                continue
            if var.refresh_by == "smgw" and source != "smgw":
                continue
            var.last_write_ms = now_ms
            if var.active:
                var.active = False
                var.entered_ms = None
                exits.append(var.name)
        return exits

    def tick(self, now_ms):
        """[(name, failsafe value)] of the variables that enter failsafe now."""
        entries = []
        for key in sorted(self._vars):
            var = self._vars[key]
            if not var.active and now_ms - var.last_write_ms >= var.timeout_ms:
                var.active = True
                var.entered_ms = now_ms
                entries.append((var.name, var.value))
        return entries

    def is_active(self, name):
        var = self._vars.get(_key(name))
        return var is not None and var.active

    def status(self, now_ms):
        return [self._vars[key].to_dict(now_ms) for key in sorted(self._vars)]
