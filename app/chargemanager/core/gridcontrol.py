"""Grid-side inputs of the load management: the grid meter, its staleness fallback, §14a dimming, and the
limit of a wallbox that two controllers (Modbus and OCPP) command.

Invariants: currents are integer mA per phase, power integer W, times integer ms from the caller's monotonic
clock (this module never reads a clock). A reading older than its limit is unknown (None), never zero. Pure:
MicroPython-compatible, no I/O.
"""

# §14a EnWG (BNetzA BK6-22-300, Annex 1): a dimmed controllable device keeps at least 4.2 kW; an energy manager
# steering n devices keeps 4.2 kW + (n - 1) * factor * 4.2 kW (simultaneity factor by n; 0.45 from n = 9).
P14A_MIN_W = 4200
P14A_FACTORS = {2: 0.8, 3: 0.75, 4: 0.7, 5: 0.65, 6: 0.6, 7: 0.55, 8: 0.5}
P14A_FACTOR_MANY = 0.45


def p14a_min_power_w(n_devices):
    """Legal minimum total power (W) of n controllable devices behind one energy manager while dimmed."""
    if n_devices <= 1:
        return P14A_MIN_W
    factor = P14A_FACTORS.get(n_devices, P14A_FACTOR_MANY)
    # integer arithmetic in per-mille, so 0.45 * 4200 has no float residue
    return P14A_MIN_W + (n_devices - 1) * int(round(factor * 1000)) * P14A_MIN_W // 1000


def fresh(reading, now_ms):
    """The quantities of a (quantities, taken_ms, max_age_ms) reading if it is not older than its limit, else None."""
    if reading is None:
        return None
    quantities, taken_ms, max_age_ms = reading
    if now_ms - taken_ms > max_age_ms:
        return None
    return quantities


def grid_load(reading, now_ms):
    """What the grid meter says the whole site draws: {"current_ma": [l1, l2, l3], "power_w": p} or None.

    None when the reading is missing, stale, or lacks a phase current (the caller then uses the site's
    error-case limit). Power falls back to the sum of the phase powers when the meter has no total.
    """
    q = fresh(reading, now_ms)
    if q is None:
        return None
    currents = [q.get("current_l1_ma"), q.get("current_l2_ma"), q.get("current_l3_ma")]
    if None in currents:
        return None
    power = q.get("power_w")
    if power is None:
        parts = [q.get("power_l1_w"), q.get("power_l2_w"), q.get("power_l3_w")]
        if None in parts:
            return None
        power = parts[0] + parts[1] + parts[2]
    return {"current_ma": currents, "power_w": power}


def evse_draw_on_grid(evse_currents_ma, l1_phase):
    """An EVSE's phase currents [its L1, L2, L3] mapped onto grid phases [1, 2, 3] (phase rotation)."""
    out = [0, 0, 0]
    for i in range(3):
        out[(l1_phase - 1 + i) % 3] += evse_currents_ma[i]
    return out


def household_load(grid, evse_draws):
    """Site load without the EVSEs: grid minus what the EVSEs draw, per grid phase, never below 0.

    grid: result of grid_load (or None -> None). evse_draws: list of ([l1, l2, l3] mA on grid phases, power W).
    """
    if grid is None:
        return None
    cur = list(grid["current_ma"])
    power = grid["power_w"]
    for currents, p in evse_draws:
        for i in range(3):
            cur[i] -= currents[i]
        power -= p
    return {"current_ma": [max(0, c) for c in cur], "power_w": max(0, power)}


def site_power_limit_w(configured_w, grid, fallback_w):
    """(limit W, reason): the configured limit while the grid meter is fresh, the error-case limit otherwise."""
    if grid is None:
        if configured_w is None:
            return fallback_w, "grid meter stale: error-case limit"
        return min(configured_w, fallback_w), "grid meter stale: error-case limit"
    return configured_w, "site limit"


def dual_controlled_limit_ma(modbus_ma, modbus_enable, ocpp_ma, ocpp_enable):
    """(current mA, enable) of a box on Modbus and on our OCPP server: the minimum, charging only if both allow.

    A side that gave nothing (None) does not restrict.
    """
    enable = modbus_enable is not False and ocpp_enable is not False
    limits = [x for x in (modbus_ma, ocpp_ma) if x is not None]
    current = min(limits) if limits else 0
    if not enable:
        current = 0
    return current, enable


class Dimming14a:
    """§14a dimming state: follows the control input, caps the EVSEs' total power, records evidence.

    update() returns audit events (dicts) for each activation and release, with the site power at that moment.
    """

    def __init__(self):
        self.active = False
        self.since_ms = None

    def update(self, input_active, n_devices, site_power_w, now_ms):
        events = []
        input_active = bool(input_active)
        if input_active != self.active:
            self.active = input_active
            self.since_ms = now_ms
            events.append({
                "event": "p14a_dimming_on" if input_active else "p14a_dimming_off",
                "at_ms": now_ms,
                "site_power_w": site_power_w,
                "limit_w": p14a_min_power_w(n_devices) if input_active else None,
                "devices": n_devices,
            })
        return events

    def evse_cap_w(self, n_devices):
        """Total power cap (W) for the EVSEs together while dimmed, else None."""
        return p14a_min_power_w(n_devices) if self.active else None
