"""The audit log of grid-operator commands and failsafe changes (§14a: "every command is logged as evidence").

One JSON object per line in `<data>/audit.log`, appended with a single write and fsync'd, so a power cut loses at
most the record being written; a torn last line is skipped when reading. When the file passes `max_bytes` it is
renamed to `audit.log.1` (one generation kept), so the data partition cannot fill up.

Record fields: `time` (UTC, ISO 8601), `kind` (`command`, `failsafe_enter`, `failsafe_exit`), `site_power_w` (the
grid meter's power at that moment, null when unknown) and kind-specific fields.
"""

import json
import logging
import os
import threading
import time

log = logging.getLogger("audit")

AUDIT_FILE = "audit.log"
DEFAULT_MAX_BYTES = 1024 * 1024


class AuditLog:
    def __init__(self, folder, site_power_fn=lambda: None, wall_time_fn=time.time, max_bytes=DEFAULT_MAX_BYTES):
        self.path = os.path.join(folder, AUDIT_FILE)
        self._site_power_fn = site_power_fn
        self._wall_time_fn = wall_time_fn
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def record(self, kind, **fields):
        try:
            power = self._site_power_fn()
        except Exception:
            log.exception("site power for the audit log unavailable")
            power = None
        t = self._wall_time_fn()
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000),
                 "kind": kind, "site_power_w": power}
        entry.update(fields)
        line = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            try:
                if os.path.exists(self.path) and os.path.getsize(self.path) + len(line) > self._max_bytes:
                    os.replace(self.path, self.path + ".1")
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                # Evidence matters, but a full partition must not stop the grid operator's command from applying.
                log.error("cannot write the audit log: %s (record: %s)", exc, line.decode("utf-8").strip())
        log.info("audit: %s", line.decode("utf-8").strip())
        return entry

    def read(self, limit=100):
        """The newest `limit` records, oldest first."""
        entries = []
        for path in (self.path + ".1", self.path):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            for raw in data.split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    entries.append(json.loads(raw.decode("utf-8")))
                except (ValueError, UnicodeDecodeError):
                    continue  # a record torn by a power cut
        return entries[-limit:] if limit else entries
