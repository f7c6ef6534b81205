"""Keeps CPython's cyclic garbage collector out of the control tick and the OCPP send path.

Measured with 1000 wallboxes (bench/ocpp_scale.py): the process holds ~1 million container objects, and CPython's
automatic full collection walks all of them (~60-140 ms with the GIL held, in whichever thread allocated last), so
a control tick or a batch of charging profiles stalled for that long every few ticks. Young collections hit the
tick too: a tick allocates ~8000 container objects at N=1000 before it frees the previous tick's, so the young
generation's threshold was crossed inside the tick nearly every other tick (+20 ms each, the tick's objects being
scattered in memory), and each such collection promoted the tick's transient objects towards the old generation.

Policy, installed by the runtime once it runs:
- Everything alive is moved into the permanent generation (`gc.freeze()` after a full collection), so full
  collections only walk what was created since. When a full collection gets expensive again (longer than half the
  last refresh: boxes connected since, their connections are new long-lived objects), or at the latest every
  `refresh_s`, the control loop refreshes between ticks: unfreeze, collect, freeze; at most once per `min_gap_s`. Cyclic garbage among frozen objects (a box
  that disconnected) is kept until the next refresh, which bounds what it can cost in memory.
- The control loop runs the collections itself, between ticks: after each tick, when at least `young_collect`
  container objects were allocated net since the last collection, it collects the oldest generation that is due
  (by CPython's own thresholds). The automatic threshold is raised to `young_threshold`, so it stays only a
  backstop (a loop that does not tick, a burst of messages). The work is the same; it happens where it stalls
  nothing that waits (the tick's objects are not scanned in the middle of it, a limit change is already sent).
"""

import gc
import logging
import time

log = logging.getLogger("gc")

YOUNG_THRESHOLD = 50000     # automatic young collection (backstop): net container allocations since the last one
YOUNG_COLLECT = 2000        # the control loop collects after a tick from this many on
EXPENSIVE_MS = 5.0          # a full collection longer than this and than half the last refresh: refresh
MIN_GAP_S = 10.0            # at most one refresh per 10 s
REFRESH_S = 900.0           # and one at the latest after this long (frees cyclic garbage among frozen objects)


class GcPolicy:
    def __init__(self, young_threshold=YOUNG_THRESHOLD, young_collect=YOUNG_COLLECT, expensive_ms=EXPENSIVE_MS,
                 min_gap_s=MIN_GAP_S, refresh_s=REFRESH_S, clock=time.monotonic):
        self.young_threshold = young_threshold
        self.young_collect = young_collect
        self.expensive_ms = expensive_ms
        self.min_gap_s = min_gap_s
        self.refresh_s = refresh_s
        self._clock = clock
        self._started = {}
        self.last_full_ms = 0.0        # duration of the last full collection
        self.expensive = False         # a full collection took longer than expensive_ms
        self.last_refresh_s = None     # clock() of the last refresh (None: never)
        self.last_refresh_ms = 0.0     # how long it took
        self.refreshes = 0
        self.frozen = 0                # objects frozen by the last refresh
        self.collections = [0, 0, 0]   # collections per generation since install (automatic and ours)
        self.collect_ms = [0.0, 0.0, 0.0]  # time they took
        self.between_ticks = 0         # of those, run by the control loop between ticks
        self.installed = False
        self._saved_threshold = None

    def install(self):
        """Raise the automatic threshold, watch collections, and do the first refresh (call once running)."""
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
        generation = info.get("generation")
        if generation not in (0, 1, 2):
            return
        if phase == "start":
            self._started[generation] = time.perf_counter()
            return
        started = self._started.pop(generation, None)
        if started is None:
            return
        spent_ms = (time.perf_counter() - started) * 1000.0
        self.collections[generation] += 1
        self.collect_ms[generation] += spent_ms
        if generation == 2:
            self.last_full_ms = spent_ms
            # Worth a refresh when the objects created since the last one cost as much as half of everything.
            if spent_ms > max(self.expensive_ms, self.last_refresh_ms / 2):
                self.expensive = True

    def refresh_due(self):
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
        # Counting walks the whole frozen list (~1 million objects at N=1000): once here, never in get_status.
        self.frozen = gc.get_freeze_count()
        self.last_refresh_s = self._clock()
        self.expensive = False
        self.refreshes += 1
        log.debug("gc refresh: %.1f ms, %d objects frozen", self.last_refresh_ms, self.frozen)

    def after_tick(self):
        """Called by the control loop between ticks: a refresh when due, else the collection that is due."""
        if not self.installed:
            return
        if self.refresh_due():
            self.refresh()
            return
        young, mid, old = gc.get_count()
        if young < self.young_collect:
            return
        _, mid_threshold, old_threshold = gc.get_threshold()
        # CPython's order: the oldest generation whose count passed its threshold, with the younger ones.
        generation = 0
        if mid > mid_threshold:
            generation = 1
            if old > old_threshold:
                generation = 2
        gc.collect(generation)
        self.between_ticks += 1

    def status(self):
        return {"frozen": self.frozen, "refreshes": self.refreshes,
                "last_refresh_ms": round(self.last_refresh_ms, 1), "last_full_ms": round(self.last_full_ms, 1),
                "collections": list(self.collections), "collect_ms": [round(v, 1) for v in self.collect_ms],
                "between_ticks": self.between_ticks}
