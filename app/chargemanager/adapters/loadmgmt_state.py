"""The parts of the load management's state that must outlive a restart, in `<data>/loadmgmt-state.json`.

- The recorded maximum overdraft: a record for the installer, kept until the admin resets it.
- A running overdraft cut: the fuse is still warm when the manager comes back (a watchdog restart, a power blip).
- The start of each EVSE's minimum pause: a restart must not make the contactors cycle.

Monotonic times do not survive a reboot, so the file holds wall-clock times, converted back on load. A box
without a battery-backed clock may boot with a wall clock that is hours off until NTP answers; so what remains of a
cut or a pause is capped at `site.overdraft_hold_s` and `site.min_pause_s`, and a clock that went backwards counts
as "nothing has elapsed yet": a wrong clock can only keep the conservative choice for one hold or pause time, never
longer. The file is written only when one of these values changed (flash wear), atomically (adapters/store.py).
"""

import logging
import os

from chargemanager.adapters.store import atomic_write_json, read_json
from chargemanager.core.tick import EvseState, State

log = logging.getLogger("loadmgmt")

STATE_FILE = "loadmgmt-state.json"
CUT_ROUND_MS = 60000


def _kept(state):
    """The persistent part of a State, in monotonic ms (compared between ticks to skip needless writes)."""
    paused = {}
    for dev_id, ev in state.evses.items():
        if not ev.charging and ev.paused_at_ms is not None:
            paused[dev_id] = ev.paused_at_ms
    cut = list(state.cut_ma) if state.cut_until_ms is not None and any(state.cut_ma) else None
    # While an overdraft lasts its hold is pushed on every tick: the kept end is rounded up to the next minute, so
    # the file is written at most once a minute then, and a restart keeps the cut a little longer, never shorter.
    cut_until = -(-state.cut_until_ms // CUT_ROUND_MS) * CUT_ROUND_MS if cut else None
    return (state.max_overdraft_ma, state.max_overdraft_at_ms, cut, cut_until, tuple(sorted(paused.items())))


class LoadStateFile:
    def __init__(self, folder):
        self.path = os.path.join(folder, STATE_FILE)
        self._saved = None

    def load(self, plan, now_ms, wall_ms):
        """A State to start from (None if nothing usable was kept)."""
        doc = read_json(self.path)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            return None
        try:
            state = self._restore(doc, plan, now_ms, wall_ms)
        except (TypeError, ValueError, AttributeError) as e:
            log.warning("%s not used: %s", STATE_FILE, e)
            return None
        self._saved = _kept(state)
        return state

    def _restore(self, doc, plan, now_ms, wall_ms):
        def elapsed_ms(at_wall_ms):
            return max(0, wall_ms - int(at_wall_ms))

        state = State()
        state.max_overdraft_ma = int(doc.get("max_overdraft_ma") or 0)
        if state.max_overdraft_ma and doc.get("max_overdraft_at_wall_ms") is not None:
            state.max_overdraft_at_ms = now_ms - elapsed_ms(doc["max_overdraft_at_wall_ms"])
        cut = doc.get("cut_ma")
        if cut and doc.get("cut_until_wall_ms") is not None:
            remaining = min(int(doc["cut_until_wall_ms"]) - wall_ms, plan.overdraft_hold_ms)
            if remaining > 0:
                state.cut_ma = [int(c) for c in cut][:3] + [0] * (3 - len(cut[:3]))
                state.cut_until_ms = now_ms + remaining
        for dev_id, paused_wall_ms in (doc.get("paused_at_wall_ms") or {}).items():
            since = min(elapsed_ms(paused_wall_ms), plan.min_pause_ms)
            if since < plan.min_pause_ms:
                state.evses[str(dev_id)] = EvseState(0, False, now_ms - since)
        return state

    def save(self, state, now_ms, wall_ms):
        """Write the persistent part of `state` if it changed since the last load or save."""
        kept = _kept(state)
        if kept == self._saved:
            return
        max_ma, max_at, cut, cut_until, paused = kept

        def to_wall(t):
            return None if t is None else wall_ms - (now_ms - t)

        doc = {"version": 1, "max_overdraft_ma": max_ma, "max_overdraft_at_wall_ms": to_wall(max_at),
               "cut_ma": cut, "cut_until_wall_ms": to_wall(cut_until),
               "paused_at_wall_ms": dict((dev_id, to_wall(t)) for dev_id, t in paused)}
        try:
            atomic_write_json(self.path, doc)
        except OSError as e:
            log.error("cannot keep the load-management state: %s", e)
            return
        self._saved = kept
