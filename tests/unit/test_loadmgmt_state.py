"""The load-management state that outlives a restart (adapters/loadmgmt_state.py): wall-clock round trip, a wrong
clock after boot cannot stretch a cut or a pause, no write without a change, a damaged file is ignored."""

import os

from chargemanager.adapters.loadmgmt_state import STATE_FILE, LoadStateFile
from chargemanager.core.tick import EvseState, State, prepare

PLAN = prepare({"site": {"overdraft_hold_s": 300, "min_pause_s": 300}})
WALL = 1767225600000  # 2026-01-01T00:00:00Z


def _state(now_ms):
    st = State()
    st.max_overdraft_ma = 4200
    st.max_overdraft_at_ms = now_ms - 10000
    st.cut_ma = [4200, 0, 1000]
    st.cut_until_ms = now_ms + 120000
    st.evses = {"E1": EvseState(0, False, now_ms - 60000), "E2": EvseState(16000, True, None)}
    return st


def test_round_trip_across_a_reboot(tmp_path):
    f = LoadStateFile(str(tmp_path))
    f.save(_state(50000), 50000, WALL)
    # the reboot: the monotonic clock starts again near 0; 30 s of wall time have passed
    st = LoadStateFile(str(tmp_path)).load(PLAN, 1000, WALL + 30000)
    assert st.max_overdraft_ma == 4200 and st.max_overdraft_at_ms == 1000 - 40000
    assert st.cut_ma == [4200, 0, 1000]
    remaining = st.cut_until_ms - 1000
    assert 90000 <= remaining <= 90000 + 60000  # rounded up to the next minute, never shorter
    assert st.evses["E1"].paused_at_ms == 1000 - 90000 and not st.evses["E1"].charging
    assert "E2" not in st.evses  # a charging EVSE has no pause to keep


def test_a_wrong_clock_keeps_at_most_one_hold_and_one_pause(tmp_path):
    f = LoadStateFile(str(tmp_path))
    f.save(_state(50000), 50000, WALL)
    # the box booted without a battery clock: the wall clock is a day behind
    st = LoadStateFile(str(tmp_path)).load(PLAN, 1000, WALL - 86400000)
    assert st.cut_until_ms - 1000 == 300000  # capped at overdraft_hold_s
    assert st.evses["E1"].paused_at_ms == 1000  # "nothing has elapsed": one full pause, no more
    # ...or far ahead: the cut and the pause are over, the record stays
    st = LoadStateFile(str(tmp_path)).load(PLAN, 1000, WALL + 86400000)
    assert st.cut_until_ms is None and st.cut_ma == [0, 0, 0] and st.evses == {}
    assert st.max_overdraft_ma == 4200


def test_written_only_when_a_kept_value_changes(tmp_path):
    f = LoadStateFile(str(tmp_path))
    st = _state(50000)
    f.save(st, 50000, WALL)
    path = os.path.join(str(tmp_path), STATE_FILE)
    first = os.stat(path).st_ino
    st.last_ms = 51000
    st.evses["E2"] = EvseState(15000, True, None)  # grants change every tick: not kept
    f.save(st, 51000, WALL + 1000)
    st.cut_until_ms += 1000  # a continuing overdraft pushes the hold within the same minute
    f.save(st, 52000, WALL + 2000)
    assert os.stat(path).st_ino == first  # an atomic write would have made a new file
    st.max_overdraft_ma = 5000
    f.save(st, 53000, WALL + 3000)
    assert os.stat(path).st_ino != first
    assert LoadStateFile(str(tmp_path)).load(PLAN, 53000, WALL + 3000).max_overdraft_ma == 5000


def test_missing_or_damaged_file_gives_no_state(tmp_path):
    assert LoadStateFile(str(tmp_path)).load(PLAN, 0, WALL) is None
    path = os.path.join(str(tmp_path), STATE_FILE)
    for text in ("{not json", '{"version": 2}', '{"version": 1, "cut_ma": "x", "cut_until_wall_ms": %d}' % (WALL + 9),
                 '{"version": 1, "paused_at_wall_ms": {"E1": "soon"}}', '[1]'):
        with open(path, "w") as fh:
            fh.write(text)
        assert LoadStateFile(str(tmp_path)).load(PLAN, 0, WALL) is None, text
