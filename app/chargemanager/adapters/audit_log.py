"""Append-only audit log on the data partition: evidence of grid-operator commands (§14a dimming on/off).

One JSON object per line, written with a single write + fsync, so a power cut leaves at most a torn last line,
which `read()` skips. Times are wall-clock UTC seconds (`time_s`) for people and monotonic ms (`at_ms`) for
ordering within one run.
"""

import json
import os
import threading

from chargemanager.shim.clock import wall_time_s


class AuditLog:
    def __init__(self, path, max_bytes=1 << 20):
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def append(self, event):
        entry = dict(event)
        entry.setdefault("time_s", round(wall_time_s(), 3))
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            self._rotate_if_full()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _rotate_if_full(self):
        try:
            if os.path.getsize(self.path) < self.max_bytes:
                return
        except OSError:
            return
        os.replace(self.path, self.path + ".1")  # keep one previous file; evidence older than that is exported

    def read(self):
        """All complete entries, oldest first (the previous file first)."""
        out = []
        for path in (self.path + ".1", self.path):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for raw in data.split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    out.append(json.loads(raw.decode("utf-8")))
                except ValueError:
                    continue  # a line torn by a power cut
        return out
