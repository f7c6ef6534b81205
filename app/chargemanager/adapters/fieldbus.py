"""Connects the Modbus buses and switching inputs to the runtime and the load management.

- Services: one ModbusService (bus owners) and one InputService, rebuilt when the configuration changes.
- Load management: a driver per Modbus charger model hands each decision to the box's bus owner (the minimum
  with what our OCPP server allows when the box is on both, SPEC §7); a snapshot hook replaces an EVSE's
  currents by its own meter (`meters[].role = "evse"`, `meters[].evse = "E1"`) and applies §14a dimming: while
  the input named by `site.p14a_input` is active (or cannot be read), the controlled EVSEs together get at most
  the legal minimum (core/gridcontrol.py), and each activation and release goes into the audit log with the
  site's power at that moment.
- Status sections `modbus`, `inputs`, `p14a`; the admin command `modbus` (raw register read for installers,
  cFos `cmd=modbus` style); a configuration check (addresses, serial settings, unit ids).
"""

import logging

from chargemanager.adapters.audit import AuditLog
from chargemanager.adapters.http_api import ApiError
from chargemanager.adapters.inputs import InputService
from chargemanager.adapters.modbus_bus import BusError, ModbusService, is_modbus_model
from chargemanager.adapters.readings import ReadingBoard
from chargemanager.core.gridcontrol import Dimming14a, dual_controlled_limit_ma, p14a_min_power_w
from chargemanager.devices.index import MODELS
from chargemanager.shim.clock import monotonic_ms

log = logging.getLogger("fieldbus")

WANTING_STATES = ("B", "C", "D")  # IEC 61851: a car is connected (B) or charging (C, D)


def check_config(clean):
    """Errors a Modbus/input configuration would meet when applied, as [{"field", "error"}]."""
    try:
        svc = ModbusService.from_config(clean, ReadingBoard())
        InputService.from_config(clean, ReadingBoard(), io_dev_ids=svc.io_dev_ids)
    except (ValueError, KeyError) as e:
        return [{"field": "modbus", "error": str(e)}]
    for index, evse in enumerate(clean.get("evses") or []):
        if evse.get("type") != "ocpp16" and not is_modbus_model(evse.get("type"), "charger"):
            chargers = sorted(m for m in MODELS if is_modbus_model(m, "charger"))
            return [{"field": "evses[%d].type" % index,
                     "error": "unknown EVSE type %r: use ocpp16 or a Modbus charger model (%s)"
                              % (evse.get("type"), ", ".join(chargers))}]
    site = clean.get("site") or {}
    fuse_ma = site.get("max_current_ma")
    failsafe_ma = sum(e.get("failsafe_current_ma") or 0 for e in clean.get("evses") or []
                      if is_modbus_model(e.get("type"), "charger"))
    if isinstance(fuse_ma, (int, float)) and failsafe_ma > fuse_ma:
        # REFERENCE A6: what the boxes draw by themselves when the manager stops must fit the connection
        return [{"field": "evses", "error": "the failsafe currents add up to %d mA per phase, more than "
                                            "site.max_current_ma (%d mA)" % (failsafe_ma, fuse_ma)}]
    name = (site.get("p14a_input") or "").upper()
    if name and name not in [i["name"].upper() for i in clean.get("inputs") or []]:
        return [{"field": "site.p14a_input", "error": "%s is not one of the configured inputs[]" % name}]
    return []


class ModbusChargerDriver:
    """Load-management driver for the EVSE types that are Modbus charger models."""

    def __init__(self, fieldbus):
        self.fieldbus = fieldbus

    def apply(self, evse, decision):
        current_ma, enable = decision.current_ma, decision.enable
        if evse.get("ocpp_id"):
            ocpp_ma, ocpp_enable = self.fieldbus.ocpp_limit(evse)
            current_ma, enable = dual_controlled_limit_ma(current_ma, enable, ocpp_ma, ocpp_enable)
            ocpp = getattr(self.fieldbus.runtime, "ocpp", None)
            if ocpp is not None:
                # The box's OCPP side gets our decision as its charging profile too (instead of the zero default),
                # and the gateway caps its backend's profiles at it: whichever side the box obeys, it is the minimum.
                ocpp.apply(evse, decision)
        modbus = self.fieldbus.modbus
        if modbus is not None and modbus.has(evse["dev_id"]):
            modbus.set_charge(evse["dev_id"], current_ma, enable)

    def device_info(self, dev_id):
        info = {}
        for d in self.fieldbus.modbus_diagnostics():
            if d["dev_id"] == dev_id:
                info["modbus"] = d
        ocpp = getattr(self.fieldbus.runtime, "ocpp", None)
        if ocpp is not None:
            info.update(ocpp.device_info(dev_id))  # a box also connected to our OCPP server
        return info


class Fieldbus:
    def __init__(self, runtime):
        self.runtime = runtime
        # the project's audit log (adapters/audit.py); the SMGW part's instance is used once it exists, so one
        # lock guards the file
        self._own_audit = AuditLog(runtime.store.folder,
                                   site_power_fn=lambda: self._site_power_w(runtime.readings.snapshot(),
                                                                            monotonic_ms()))
        self.dimming = Dimming14a()
        self.dimming_limit_w = None
        self.modbus = None
        self.inputs = None
        self.started = False
        # f(evse) -> (current mA or None, enable or None): what the OCPP side allows a Modbus charger that also
        # talks OCPP to our server (its billing backend's profiles, OcppService.ocpp_side_limit). None: no restriction.
        ocpp = getattr(runtime, "ocpp", None)
        self.ocpp_limit_provider = ocpp.ocpp_side_limit if ocpp is not None else None
        self._build(runtime.config)

    def install(self):
        rt = self.runtime
        rt.services.append(self)
        rt.config_listeners.append(self.on_config)
        rt.config_checks.append(check_config)
        rt.status_providers["modbus"] = self.modbus_diagnostics
        rt.status_providers["inputs"] = self.input_status
        rt.status_providers["p14a"] = self.p14a_status
        rt.commands.register("modbus", self.cmd_modbus)
        lm = getattr(rt, "load_manager", None)
        if lm is not None:
            driver = ModbusChargerDriver(self)
            for model_id in MODELS:
                if is_modbus_model(model_id, "charger"):
                    lm.register_driver(model_id, driver)
            lm.snapshot_hooks.append(self.refine_snapshot)
        return self

    # --- services -------------------------------------------------------------------------------------------
    def _build(self, config):
        try:
            self.modbus = ModbusService.from_config(config, self.runtime.readings)
            self.inputs = InputService.from_config(config, self.runtime.readings, self.runtime.wake,
                                                   io_dev_ids=self.modbus.io_dev_ids)
        except (ValueError, KeyError) as e:
            log.error("Modbus/input configuration not usable: %s", e)
            self.modbus = None
            self.inputs = None

    def start(self):
        self.started = True
        if self.modbus is not None:
            self.modbus.start()
        if self.inputs is not None:
            self.inputs.start()

    def stop(self):
        self.started = False
        if self.inputs is not None:
            self.inputs.stop()
        if self.modbus is not None:
            self.modbus.stop()

    def on_config(self, new, old):
        keys = ("meters", "evses", "inputs")
        if all(new.get(k) == old.get(k) for k in keys):
            return
        was_started = self.started
        self.stop()
        self._build(new)
        if was_started:
            self.start()

    def audit(self):
        smgw = getattr(self.runtime, "smgw", None)
        return getattr(smgw, "audit", None) or self._own_audit

    def ocpp_limit(self, evse):
        if self.ocpp_limit_provider is None:
            return None, None
        return self.ocpp_limit_provider(evse)

    # --- load management ------------------------------------------------------------------------------------
    def refine_snapshot(self, snapshot, readings, now_ms):
        """Per-EVSE meters, Modbus boxes' `wants`, and the §14a cap (called by the load manager each tick)."""
        config = self.runtime.config
        evses = snapshot.setdefault("evses", {})
        for meter in config.get("meters") or []:
            target = meter.get("evse")
            if meter.get("role") != "evse" or not target or target not in evses:
                continue
            entry = readings.get(meter["dev_id"])
            if entry is None:
                continue
            quantities, taken_ms, max_age_ms = entry
            if now_ms - taken_ms > max_age_ms or quantities.get("current_l1_ma") is None:
                continue
            evses[target]["current_ma"] = [quantities.get("current_l1_ma") or 0,
                                           quantities.get("current_l2_ma") or 0,
                                           quantities.get("current_l3_ma") or 0]
            if quantities.get("power_w") is not None:
                evses[target]["power_w"] = quantities["power_w"]
            evses[target]["age_ms"] = max(evses[target].get("age_ms", 0), now_ms - taken_ms)
        self._p14a(snapshot, readings, now_ms)

    def _p14a(self, snapshot, readings, now_ms):
        site = self.runtime.config.get("site") or {}
        name = (site.get("p14a_input") or "").upper()
        if not name:
            return
        entry = readings.get(name)
        # fail-safe: an input that is missing or stale counts as "dimming active"
        active = True
        if entry is not None and now_ms - entry[1] <= entry[2]:
            active = bool(entry[0].get("value", 1))
        evses = [e for e in self.runtime.config.get("evses") or [] if e.get("mode", "active") == "active"]
        n = site.get("p14a_devices") or len(evses) or 1
        events = self.dimming.update(active, n, self._site_power_w(readings, now_ms), now_ms)
        for event in events:
            self.audit().record(event["event"], input=name, site_power_w=event["site_power_w"],
                                limit_w=event["limit_w"], devices=event["devices"])
            log.warning("§14a %s (site power %s W, limit %s W)", event["event"], event["site_power_w"],
                        event["limit_w"])
        cap = self.dimming.evse_cap_w(n)
        self.dimming_limit_w = cap
        if cap is not None:
            snapshot["evse_cap_w"] = cap

    def _site_power_w(self, readings, now_ms):
        total = None
        for meter in self.runtime.config.get("meters") or []:
            if meter.get("role", "grid") != "grid":
                continue
            entry = readings.get(meter["dev_id"])
            if entry is None or now_ms - entry[1] > entry[2] or entry[0].get("power_w") is None:
                return None
            total = (total or 0) + entry[0]["power_w"]
        return total

    # --- status and commands --------------------------------------------------------------------------------
    def modbus_diagnostics(self):
        return self.modbus.diagnostics() if self.modbus is not None else []

    def input_status(self):
        return self.inputs.status() if self.inputs is not None else []

    def p14a_status(self):
        site = self.runtime.config.get("site") or {}
        return {"input": site.get("p14a_input") or None, "active": self.dimming.active,
                "limit_w": self.dimming_limit_w, "since_ms": self.dimming.since_ms,
                "minimum_one_device_w": p14a_min_power_w(1)}

    def cmd_modbus(self, req):
        """Raw register read for installers: `dev_id=M1` or `bus=/dev/ttyUSB0` (or host:port) with `id=<unit>`,
        `func=1|2|3|4` (default 3), `addr=<register>`, `cnt=<count>` (default 1). Reads only; admin only."""
        dev_id = req.param("dev_id")
        bus = req.param("bus")
        if not dev_id and not bus:
            raise ApiError(400, "give dev_id=<device> or bus=<serial device or host:port>")
        unit = _int_param(req, "id", None, 0, 255)
        func = _int_param(req, "func", 3, 1, 4)
        addr = _int_param(req, "addr", None, 0, 65535)
        if addr is None:
            raise ApiError(400, "missing parameter 'addr'")
        count = _int_param(req, "cnt", 1, 1, 125)
        if self.modbus is None:
            raise ApiError(404, "no Modbus device is configured")
        try:
            values = self.modbus.raw_read(unit, func, addr, count, dev_id=dev_id or None, bus_address=bus)
        except LookupError as e:
            raise ApiError(404, str(e).strip("'\""))
        except ValueError as e:
            raise ApiError(400, str(e))
        except BusError as e:
            raise ApiError(504, "no valid answer: %s" % e, kind=e.kind)
        return 200, {"dev_id": dev_id, "bus": bus, "id": unit, "func": func, "addr": addr, "cnt": count,
                     "values": values, "hex": ["0x%04X" % v for v in values]}


def _int_param(req, name, default, lo, hi):
    raw = req.param(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        raise ApiError(400, "parameter '%s' must be a whole number, got %r" % (name, raw))
    if not lo <= value <= hi:
        raise ApiError(400, "parameter '%s' must be %d..%d" % (name, lo, hi))
    return value


def install(runtime):
    """Create the field-bus part for a runtime and plug it in (services, hooks, status, commands)."""
    return Fieldbus(runtime).install()
