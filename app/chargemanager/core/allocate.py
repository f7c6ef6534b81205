"""Share the available current per phase among EVSEs (SPEC §1, issue 3 item 4).

Invariants and units (currents are integer mA per phase; this module never reads the clock):
- For every grid phase p: sum of the grants of the EVSEs that use p <= max(0, available_ma[p]).
- Every grant is 0 or at least the EVSE's `min_ma`, and never above its `target_ma`.
- Grants are multiples of `step_ma` when `min_ma` and `target_ma` are (the caller rounds targets down).
- An EVSE that does not use every site phase never raises the imbalance between a phase it uses and one it does
  not use above `max_skew_ma` (the EV currents, including `base_ma`, counted per phase).
- Order of service: higher `prio` first (strict: a lower priority gets only what the higher ones leave); within one
  priority every EVSE first gets its minimum (EVSEs that are already charging first, then in configuration order,
  so a running car is not stopped for a newcomer of the same priority), then the rest is split in equal increments
  up to each target (max-min fair above the minimum).
- Each result carries the reason that bound it: the demand's own reason when it got its target, else
  `phase_skew` or the reason of the exhausted phase; `ev_minimum` when its minimum did not fit (paused).
"""

REASON_EV_MINIMUM = "ev_minimum"
REASON_PHASE_SKEW = "phase_skew"


class Demand:
    """What one EVSE asks for this tick.

    `phases`: grid phases (0-based) it draws from; `min_ma`/`target_ma`: per phase; `target_reason`: what set the
    target (`evse_max`, `rule`, `override`, `ramp`…); `keep`: it is charging now; `order`: configuration index."""

    def __init__(self, dev_id, phases, min_ma, target_ma, target_reason, prio=0, keep=False, order=0):
        self.dev_id = dev_id
        self.phases = tuple(phases)
        self.min_ma = int(min_ma)
        self.target_ma = int(target_ma)
        self.target_reason = target_reason
        self.prio = prio
        self.keep = keep
        self.order = order


class Grant:
    """The result for one EVSE: `current_ma` per phase (0 = paused) and the `reason` that bound it."""

    def __init__(self, dev_id, current_ma, reason):
        self.dev_id = dev_id
        self.current_ma = current_ma
        self.reason = reason

    def to_dict(self):
        return {"dev_id": self.dev_id, "current_ma": self.current_ma, "reason": self.reason}


def _skew_headroom(phases, site_phases, ev_ma, max_skew_ma):
    """How much an EVSE on `phases` may still rise before the phase imbalance exceeds `max_skew_ma`."""
    high = None
    low = None
    for p in site_phases:
        if p in phases:
            if high is None or ev_ma[p] > high:
                high = ev_ma[p]
        elif low is None or ev_ma[p] < low:
            low = ev_ma[p]
    if low is None or high is None:
        return None  # uses every phase of the site: cannot unbalance it
    return max_skew_ma - (high - low)


def _sort_key(demand):
    return (0 if demand.keep else 1, demand.order)


def allocate(demands, available_ma, phase_reasons, max_skew_ma, step_ma=1, base_ma=None, site_phases=(0, 1, 2)):
    """Grants for `demands` (list of Demand) within `available_ma` (three mA values); returns {dev_id: Grant}.

    `phase_reasons`: reason per phase used when that phase runs out; `base_ma`: EV current per phase that is not
    ours to control (monitored or offline boxes), counted for the phase skew only; `step_ma` >= 1."""
    step = max(1, int(step_ma))
    remaining = [max(0, int(a)) for a in available_ma]
    ev_ma = [0, 0, 0] if base_ma is None else [int(b) for b in base_ma]
    grants = {}

    prios = []
    for d in demands:
        if d.prio not in prios:
            prios.append(d.prio)
    prios.sort(reverse=True)

    # Demands on every site phase (or none of them) cannot unbalance the site: their skew checks are skipped.
    skew_free = set()
    for d in demands:
        inside = 0
        for p in site_phases:
            if p in d.phases:
                inside += 1
        if inside == 0 or inside == len(site_phases):
            skew_free.add(d.dev_id)

    for prio in prios:
        group = [d for d in demands if d.prio == prio]
        group.sort(key=_sort_key)
        admitted = []
        current = {}
        for d in group:
            dev_id = d.dev_id
            min_ma = d.min_ma
            if d.target_ma < min_ma or d.target_ma <= 0:
                grants[dev_id] = Grant(dev_id, 0, d.target_reason)
                continue
            fits = True
            for p in d.phases:
                if remaining[p] < min_ma:
                    fits = False
                    break
            if not fits:
                grants[dev_id] = Grant(dev_id, 0, REASON_EV_MINIMUM)
                continue
            if dev_id not in skew_free:
                headroom = _skew_headroom(d.phases, site_phases, ev_ma, max_skew_ma)
                if headroom is not None and headroom < min_ma:
                    grants[dev_id] = Grant(dev_id, 0, REASON_PHASE_SKEW)
                    continue
            for p in d.phases:
                remaining[p] -= min_ma
                ev_ma[p] += min_ma
            current[dev_id] = min_ma
            admitted.append(d)

        _fill(admitted, current, remaining, ev_ma, max_skew_ma, step, site_phases, skew_free)

        for d in admitted:
            c = current[d.dev_id]
            if c >= d.target_ma:
                reason = d.target_reason
            else:
                headroom = None
                if d.dev_id not in skew_free:
                    headroom = _skew_headroom(d.phases, site_phases, ev_ma, max_skew_ma)
                tightest = d.phases[0]
                for p in d.phases:
                    if remaining[p] < remaining[tightest]:
                        tightest = p
                if headroom is not None and headroom < step and headroom <= remaining[tightest]:
                    reason = REASON_PHASE_SKEW
                else:
                    reason = phase_reasons[tightest]
            grants[d.dev_id] = Grant(d.dev_id, c, reason)
    return grants


def _fill(members, current, remaining, ev_ma, max_skew_ma, step, site_phases, skew_free=()):
    """Raise admitted members above their minimum in equal increments (multiples of `step`) while room lasts."""
    active = [d for d in members if current[d.dev_id] < d.target_ma]
    while active:
        users = [0, 0, 0]
        for d in active:
            for p in d.phases:
                users[p] += 1
        share = [0, 0, 0]
        for p in range(3):
            if users[p]:
                share[p] = (remaining[p] // users[p]) // step * step
        progress = False
        still = []
        for d in active:
            dev_id = d.dev_id
            inc = d.target_ma - current[dev_id]
            for p in d.phases:
                if share[p] < inc:
                    inc = share[p]
            if dev_id not in skew_free:
                inc = _limit_by_skew(d, inc, ev_ma, max_skew_ma, step, site_phases)
            if inc > 0:
                current[dev_id] += inc
                for p in d.phases:
                    remaining[p] -= inc
                    ev_ma[p] += inc
                progress = True
        for d in active:
            if current[d.dev_id] >= d.target_ma:
                continue
            exhausted = False
            for p in d.phases:
                if remaining[p] < step:
                    exhausted = True
                    break
            if not exhausted:
                still.append(d)
        active = still
        if not progress:
            break
    # What the equal split left over (less than one step per member on a phase) goes one step at a time, in order.
    for d in active:
        if current[d.dev_id] + step > d.target_ma:
            continue
        fits = True
        for p in d.phases:
            if remaining[p] < step:
                fits = False
                break
        if fits and (d.dev_id in skew_free or _limit_by_skew(d, step, ev_ma, max_skew_ma, step, site_phases) == step):
            _raise(d, step, current, remaining, ev_ma)


def _limit_by_skew(demand, inc, ev_ma, max_skew_ma, step, site_phases):
    headroom = _skew_headroom(demand.phases, site_phases, ev_ma, max_skew_ma)
    if headroom is not None and headroom < inc:
        inc = headroom // step * step if headroom > 0 else 0
    return inc


def _raise(demand, inc, current, remaining, ev_ma):
    current[demand.dev_id] += inc
    for p in demand.phases:
        remaining[p] -= inc
        ev_ma[p] += inc
