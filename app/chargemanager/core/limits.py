"""Unit conversions and phase mapping for load management (SPEC §1, §10).

Invariants and units:
- Currents are integer mA per phase, power integer W, voltage V; time in ms. Every function here is pure and
  never reads the clock.
- Grid phases are numbered 0, 1, 2 inside the core (L1, L2, L3 of the house connection); the configuration uses
  1..3 (`l1_phase`). An EVSE wired with `l1_phase = k` draws its L1 from grid phase k, its L2 from the next phase
  and so on (the usual phase rotation of an installation).
- Conversions that turn a limit into a current round down, conversions that turn a load into a current round up,
  so rounding never makes room that is not there.
"""

MAX_PHASES = 3


def phase_set(l1_phase, phases, site_phases=MAX_PHASES):
    """Grid phases (0-based, in box order L1, L2, L3) an EVSE with `phases` phases wired at `l1_phase` (1..3) uses.

    On a site with fewer than three phases the box's phases fold onto the phases that exist."""
    l1 = (int(l1_phase or 1) - 1) % MAX_PHASES
    count = max(1, min(MAX_PHASES, int(phases or MAX_PHASES)))
    result = []
    for k in range(count):
        p = (l1 + k) % MAX_PHASES
        if p >= site_phases:
            p = p % site_phases
        if p not in result:
            result.append(p)
    return tuple(result)


def limit_power_to_current_ma(power_w, voltage_v, phases):
    """Current per phase (mA, rounded down) that keeps `phases` phases at `power_w` W in total."""
    if power_w <= 0:
        return 0
    return int(power_w * 1000) // (int(voltage_v) * int(phases))


def load_power_to_current_ma(power_w, voltage_v, phases):
    """Current per phase (mA, rounded up) of a load of `power_w` W spread over `phases` phases."""
    if power_w <= 0:
        return 0
    divisor = int(voltage_v) * int(phases)
    return -((-int(power_w * 1000)) // divisor)


def current_to_power_w(current_ma, voltage_v, phases):
    """Power in W (rounded down) of `current_ma` per phase on `phases` phases."""
    return int(current_ma) * int(voltage_v) * int(phases) // 1000


def floor_step(value_ma, step_ma):
    """Round a current down to a multiple of `step_ma` (never below 0)."""
    if value_ma <= 0:
        return 0
    if step_ma <= 1:
        return int(value_ma)
    return (int(value_ma) // step_ma) * step_ma


def box_to_grid_ma(box_ma, phases_used):
    """Map a box's per-phase currents (box L1, L2, L3; mA) onto grid phases: a list of three mA values.

    Missing entries count as 0; negative readings (meter noise) count as 0."""
    grid = [0, 0, 0]
    if not box_ma:
        return grid
    n = len(box_ma)
    k = 0
    for p in phases_used:
        if k >= n:
            break
        value = box_ma[k]
        if value is not None and value > 0:
            grid[p] += int(value)
        k += 1
    return grid


# §14a EnWG (BNetzA BK6-22-300): simultaneity factor in percent for n controllable devices behind one energy manager.
_GZF_PCT = {1: 100, 2: 80, 3: 75, 4: 70, 5: 65, 6: 60, 7: 55, 8: 50}


def section_14a_min_power_w(devices):
    """The least power (W) a grid operator's dimming must leave `devices` controllable consumers behind one
    energy manager: 4200 W + (n - 1) x GZF x 4200 W (GZF 0.8 for 2 … 0.45 for 9 and more); 0 for none."""
    if devices <= 0:
        return 0
    pct = _GZF_PCT.get(devices, 45)
    return 4200 + (devices - 1) * pct * 42
