"""Keeps CPython's cyclic garbage collector out of the control tick and the OCPP send path.

With a thousand wallboxes connected the process holds about a million container objects (websocket connections,
station state, parsed configuration). CPython's automatic full collection walks all of them: ~60-100 ms with the
GIL held, in whichever thread happened to allocate, so a control tick or a batch of charging profiles stalls for
that long every few ticks (the tick allocates ~10 000 short-lived objects at N=1000, which keeps promoting objects
into the oldest generation).

Policy: once the manager runs, everything alive is moved into the permanent generation (`gc.freeze()` after a
full collection), so automatic full collections only walk what was created since. When an automatic full
collection gets expensive again (boxes connected since: their connections are new long-lived objects), or at the
latest every `refresh_s`, the control loop refreshes: unfreeze, collect, freeze. That pause happens between ticks,
at most once per 10 s (in the first minutes after start, while boxes connect) and otherwise every `refresh_s`; cyclic
garbage among frozen objects (a box that disconnected) is kept until then, which bounds what it can cost in memory.
The young generation's threshold is raised so one tick at N=1000 triggers about one young collection, not a dozen.
"""

import gc
import logging
import time

log = logging.getLogger("gc")

YOUNG_THRESHOLD = 10000     # allocations minus deallocations of containers before a generation-0 collection
EXPENSIVE_MS = 5.0          # an automatic full collection this long means the frozen set is out of date
MIN_GAP_S = 10.0            # at most one refresh per 10 s
REFRESH_S = 900.0           # and one at the latest after this long (frees cyclic garbage among frozen objects)


class GcPolicy:
    def __init__(self, young_threshold=YOUNG_THRESHOLD, expensive_ms=EXPENSIVE_MS, min_gap_s=MIN_GAP_S,
                 refresh_s=REFRESH_S, clock=time.monotonic):
        self.young_threshold = young_threshold
        self.expensive_ms = expensive_ms
        self.min_gap_s = min_gap_s
        self.refresh_s = refresh_s
        self._clock = clock
        self._full_started = None
        self.last_full_ms = 0.0        # duration of the last automatic full collection
        self.expensive = False         # an automatic full collection took longer than expensive_ms
        self.last_refresh_s = None     # clock() of the last refresh (None: never)
        self.last_refresh_ms = 0.0     # how long it took
        self.refreshes = 0
        self.installed = False
        self._saved_threshold = None

    def install(self):
        """Raise the young threshold, watch full collections, and do the first refresh (call once running)."""
        if self.installed:
            return
        self._saved_threshold = gc.get_threshold()
        _, mid, old = self._saved_threshold
        gc.set_threshold(self.young_threshold, mid, old)
        gc.callbacks.append(self._on_gc)
        self.installed = True
        self.refresh()

    def uninstall(self):
        if not self.installed:
            return
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        gc.unfreeze()
        gc.set_threshold(*self._saved_threshold)
        self.installed = False

    def _on_gc(self, phase, info):
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._full_started = time.perf_counter()
        elif self._full_started is not None:
            self.last_full_ms = (time.perf_counter() - self._full_started) * 1000.0
            self._full_started = None
            if self.last_full_ms > self.expensive_ms:
                self.expensive = True

    def due(self):
        if not self.installed:
            return False
        age_s = self._clock() - self.last_refresh_s
        return age_s >= self.refresh_s or (self.expensive and age_s >= self.min_gap_s)

    def refresh(self):
        """Full collection of everything, then freeze the survivors (pauses all threads for its duration)."""
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.last_refresh_ms = (time.perf_counter() - started) * 1000.0
        self.last_refresh_s = self._clock()
        self.expensive = False
        self.refreshes += 1
        log.debug("gc refresh: %.1f ms, %d objects frozen", self.last_refresh_ms, gc.get_freeze_count())

    def after_tick(self):
        """Called by the control loop between ticks."""
        if self.due():
            self.refresh()

    def status(self):
        return {"frozen": gc.get_freeze_count(), "refreshes": self.refreshes,
                "last_refresh_ms": round(self.last_refresh_ms, 1), "last_full_ms": round(self.last_full_ms, 1)}
