"""Grid-serving control around the load management: §14a EnWG dimming (legal minimum, state, evidence) and the
limit of a wallbox that two controllers (Modbus and OCPP) command. The grid meter, household load and the
stale-meter fallback live in core/tick.py.

Invariants: currents are integer mA per phase, power integer W, times integer ms from the caller's monotonic
clock (this module never reads a clock). Pure: MicroPython-compatible, no I/O.
"""

from chargemanager.core.limits import section_14a_min_power_w


def p14a_min_power_w(n_devices):
    """Legal minimum total power (W) of n controllable devices behind one energy manager while dimmed (§14a
    EnWG, core/limits.py); at least the one-device minimum, so a cap is never 0."""
    return section_14a_min_power_w(max(1, n_devices))


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
