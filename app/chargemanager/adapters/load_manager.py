"""Runs the load-management core every control tick and hands each EVSE's decision to the driver that owns it.

Drivers (the OCPP server, the Modbus bus owners) register per EVSE `type` with `register_driver(type, driver)`;
a driver has `apply(evse_config, decision)` (called from the control loop for every EVSE whose decision says
`send`; the driver decides whether the box needs a new message, and must not block) and may have
`device_info(dev_id) -> dict` (extra fields for get_dev_info). Drivers publish their EVSEs' readings (`online`,
`wants`, `current_l1_ma`…, `power_w`, `energy_wh`) to the runtime's ReadingBoard under the EVSE's dev_id.

API commands (cFos names where the product has them, SPEC §10): `get_dev_info`, `override_device`,
`reset_overdraft`.
"""

import logging
import threading
import time

from chargemanager.adapters.http_api import ApiError
from chargemanager.adapters.loadmgmt_state import LoadStateFile
from chargemanager.core.ocpp_profiles import iso_utc
from chargemanager.core.tick import prepare, reset_max_overdraft, snapshot_from_readings, tick
from chargemanager.shim.clock import monotonic_ms, wall_time_s

log = logging.getLogger("loadmgmt")


class LoadManager:
    def __init__(self, runtime):
        self._runtime = runtime
        self._lock = threading.Lock()    # guards overrides and the reset flag (written by HTTP threads)
        self.plan = prepare(runtime.config)
        # the maximum overdraft, a running cut and minimum pauses survive a restart (adapters/loadmgmt_state.py)
        self.state_file = LoadStateFile(runtime.store.folder)
        self.state = self.state_file.load(self.plan, monotonic_ms(), int(wall_time_s() * 1000))
        self.decision = None
        self.drivers = {}
        self.overrides = {}              # dev_id -> {"current_ma": n or None, "charging": bool, "rules": bool}
        self._reset_requested = False
        # f(snapshot, readings, now_ms) called before each tick; may refine the snapshot (per-EVSE meters,
        # §14a dimming cap: adapters/fieldbus.py)
        self.snapshot_hooks = []
        self._routes_config = None      # the configuration _route_table was built for
        self._route_table = {}
        runtime.config_listeners.append(self.on_config)
        runtime.tick_hooks.append(self.on_tick)
        runtime.status_providers["site"] = self.site_status
        runtime.status_providers["evses"] = self.evse_status
        commands = runtime.commands
        commands.register("get_dev_info", self.cmd_get_dev_info)
        commands.register("override_device", self.cmd_override_device, methods=("GET", "POST"))
        commands.register("reset_overdraft", self.cmd_reset_overdraft, methods=("GET", "POST"))

    def register_driver(self, evse_type, driver):
        self.drivers[evse_type] = driver
        self._routes_config = None

    # --- control loop ---------------------------------------------------------------------------------------
    def on_config(self, new, old):
        self.plan = prepare(new)
        with self._lock:
            known = set(e["dev_id"] for e in new.get("evses", []))
            for dev_id in list(self.overrides):
                if dev_id not in known:
                    del self.overrides[dev_id]

    def on_tick(self, now_ms, values):
        t = time.localtime(wall_time_s())
        with self._lock:
            overrides = dict(self.overrides)
            reset = self._reset_requested
            self._reset_requested = False
        readings = self._runtime.readings.snapshot()
        snapshot = snapshot_from_readings(self.plan, readings, now_ms,
                                          minute_of_day=t.tm_hour * 60 + t.tm_min, weekday=t.tm_wday + 1,
                                          overrides=overrides, reset_max_overdraft=reset)
        for hook in list(self.snapshot_hooks):
            try:
                hook(snapshot, readings, now_ms)
            except Exception:
                log.exception("snapshot hook %r failed", hook)
        decision, self.state = tick(self.plan, self._runtime.formula_lookup, snapshot, self.state, now_ms)
        self.decision = decision
        self.state_file.save(self.state, now_ms, int(wall_time_s() * 1000))
        routes = self._routes()
        for dev_id, result in decision.evses.items():
            if not result.send:
                continue
            route = routes.get(dev_id)
            if route is None:
                continue
            try:
                route[1](route[0], result)
            except Exception:
                log.exception("driver for %s failed to apply its limit", dev_id)

    def _routes(self):
        """{dev_id: (evse config, driver.apply)} for the current configuration and drivers (rebuilt when either
        changed, not every tick)."""
        config = self._runtime.config
        if self._routes_config is not config:
            routes = {}
            for evse in config.get("evses", []):
                driver = self.drivers.get(evse["type"])
                if driver is not None:
                    routes[evse["dev_id"]] = (evse, driver.apply)
            self._route_table = routes
            self._routes_config = config
        return self._route_table

    # --- status and commands --------------------------------------------------------------------------------
    def site_status(self):
        decision = self.decision
        if decision is None:
            return {}
        site = decision.site.to_dict()
        site["errors"] = list(decision.errors)
        if site.get("max_overdraft_at_ms") is not None:
            # monotonic ms mean nothing to a reader: the wall-clock time of the record as well
            ago_ms = monotonic_ms() - site["max_overdraft_at_ms"]
            site["max_overdraft_at"] = iso_utc(int(wall_time_s() * 1000) - ago_ms)
        return site

    def evse_status(self):
        decision = self.decision
        readings = self._runtime.readings.snapshot()
        result = []
        for evse in self._runtime.config.get("evses", []):
            dev_id = evse["dev_id"]
            entry = {"dev_id": dev_id, "name": evse.get("name", ""), "type": evse["type"],
                     "address": evse.get("address", ""), "id": evse.get("id")}
            if decision is not None and dev_id in decision.evses:
                entry["decision"] = decision.evses[dev_id].to_dict()
            reading = readings.get(dev_id)
            if reading is not None:
                entry["reading"] = dict(reading[0])
                entry["reading_age_ms"] = max(0, monotonic_ms() - reading[1])
            with self._lock:
                if dev_id in self.overrides:
                    entry["override"] = dict(self.overrides[dev_id])
            driver = self.drivers.get(evse["type"])
            if driver is not None and hasattr(driver, "device_info"):
                try:
                    entry.update(driver.device_info(dev_id))
                except Exception:
                    log.exception("device_info of %s failed", dev_id)
            result.append(entry)
        return result

    def cmd_get_dev_info(self, req):
        """cFos-shaped device list: {params: {...site...}, devices: [...]} (SPEC §10)."""
        site = self.site_status()
        devices = []
        evses = dict((e["dev_id"], e) for e in self._runtime.config.get("evses", []))
        for entry in self.evse_status():
            decision = entry.get("decision") or {}
            reading = entry.get("reading") or {}
            evse = evses.get(entry["dev_id"], {})
            phases = 0
            for p in range(evse.get("phases", 3)):
                phases |= 1 << ((evse.get("l1_phase", 1) - 1 + p) % 3)
            device = dict(entry)
            device.update({
                "dev_id": entry["dev_id"], "name": entry.get("name", ""), "address": entry.get("address", ""),
                "id": entry.get("id"), "min_charging_cur": evse.get("min_current_ma"),
                "max_power": evse.get("max_power_w"), "prio": evse.get("prio"),
                "phases": phases, "state": reading.get("state"),
                "cur_charging_power": reading.get("power_w"),
                "last_set_charging_cur": decision.get("current_ma"),
                "total_energy": reading.get("energy_wh"),
                "reason": decision.get("reason"),
            })
            devices.append(device)
        return 200, {"params": site, "devices": devices}

    def cmd_override_device(self, req):
        """`dev_id=E1&mamps=<mA>&flags=<letters>`: C/c disable/enable charging, U/u disable/enable user rules
        (E/e is accepted for the EVSE's own rules, which are the same list here). `mamps=` empty clears the current
        override."""
        dev_id = req.param("dev_id", required=True)
        if dev_id not in set(e["dev_id"] for e in self._runtime.config.get("evses", [])):
            raise ApiError(404, "unknown EVSE '%s'" % dev_id)
        mamps = req.param("mamps")
        flags = req.param("flags") or ""
        with self._lock:
            override = dict(self.overrides.get(dev_id) or {"current_ma": None, "charging": True, "rules": True})
        if mamps is not None:
            if mamps == "":
                override["current_ma"] = None
            else:
                try:
                    value = int(mamps)
                except ValueError:
                    raise ApiError(400, "mamps must be a whole number of mA")
                if value < 0 or value > 80000:
                    raise ApiError(400, "mamps must be between 0 and 80000")
                override["current_ma"] = value
        for letter in flags:
            if letter in "Cc":
                override["charging"] = letter == "c"
            elif letter in "UuEe":
                override["rules"] = letter in "ue"
            else:
                raise ApiError(400, "unknown flag '%s' (use C/c, U/u, E/e)" % letter)
        with self._lock:
            if override == {"current_ma": None, "charging": True, "rules": True}:
                self.overrides.pop(dev_id, None)
            else:
                self.overrides[dev_id] = override
        self._runtime.wake.set()
        return 200, {"ok": True, "dev_id": dev_id, "override": override}

    def cmd_reset_overdraft(self, req):
        with self._lock:
            self._reset_requested = True
        if self.state is not None:
            self.state = reset_max_overdraft(self.state)
        self._runtime.wake.set()
        return 200, {"ok": True}
