"""In-memory history for the config page: site and EV power over the last hours, and the last log lines.

Nothing here touches the data partition (the SD card would wear out, and a chart may start empty after a restart).
Memory is bounded: `PowerHistory` keeps at most `slots` points of one `interval_s` each (default 6 h at 10 s:
2160 points), `LogRing` the last `max_lines` formatted log lines. Power is integer W; a slot without any reading
holds None (drawn as a gap, never as 0 W).
"""

import collections
import logging
import threading


class PowerHistory:
    """Averages per-tick samples into fixed slots; thread-safe (the loop writes, HTTP threads read)."""

    def __init__(self, interval_s=10, slots=2160):
        self.interval_s = interval_s
        self._points = collections.deque(maxlen=slots)  # [slot_start_s, site_w or None, ev_w or None]
        self._lock = threading.Lock()
        self._slot = None
        self._sums = [0, 0]
        self._counts = [0, 0]

    def add(self, wall_s, site_w, ev_w):
        """One sample (W or None per series) taken at wall-clock time `wall_s`."""
        slot = int(wall_s // self.interval_s) * self.interval_s
        with self._lock:
            if self._slot is not None and slot != self._slot:
                self._close()
            self._slot = slot
            for i, value in enumerate((site_w, ev_w)):
                if value is not None:
                    self._sums[i] += value
                    self._counts[i] += 1

    def _close(self):
        averages = [round(self._sums[i] / self._counts[i]) if self._counts[i] else None for i in (0, 1)]
        self._points.append([self._slot] + averages)
        self._sums = [0, 0]
        self._counts = [0, 0]

    def points(self, since_s=None):
        """[[slot_start_s, site_w, ev_w], ...] oldest first, the running slot included."""
        with self._lock:
            result = [list(p) for p in self._points]
            if self._slot is not None:
                result.append([self._slot] + [round(self._sums[i] / self._counts[i]) if self._counts[i] else None
                                              for i in (0, 1)])
        if since_s is not None:
            result = [p for p in result if p[0] >= since_s]
        return result


class LogRing(logging.Handler):
    """A logging handler that keeps the last lines for the diagnostics bundle."""

    def __init__(self, max_lines=2000):
        logging.Handler.__init__(self)
        self._lines = collections.deque(maxlen=max_lines)

    def emit(self, record):
        try:
            self._lines.append(self.format(record))
        except Exception:  # a log line must never break the code that logs
            self.handleError(record)

    def lines(self):
        return list(self._lines)
