"""Builds the manager's parts, starts their threads and runs the fixed-tick control loop in the main thread.

Data flows one way per tick: readings in (adapters publish to the ReadingBoard), variables and formulas evaluated,
decisions out (tick hooks hand commands to the adapters that own the devices). A variable write through the API sets
the wake event, so the loop runs at once instead of at the next tick. Parts plug in through `services` (start/stop),
`tick_hooks` (called every tick with `now_ms` and the variable values), `status_providers` (sections of get_status)
and `config_listeners` (called after a new configuration was stored).
"""

import collections
import logging
import os
import socket
import threading
import time

from chargemanager import __version__
from chargemanager.adapters import smgw
from chargemanager.adapters.auth import AdminAuth
from chargemanager.adapters.certs import CertStore, register_cert_commands
from chargemanager.adapters.gcpolicy import GcPolicy
from chargemanager.adapters.http_api import (
    CommandTable, build_app, register_config_commands, register_password_command, register_status_command,
    register_variable_commands,
)
from chargemanager.adapters.http_server import HttpServer
from chargemanager.adapters import fieldbus
from chargemanager.adapters.led import DEFAULT_BASE as LED_BASE, StatusLed, choose_pattern
from chargemanager.adapters.load_manager import LoadManager
from chargemanager.adapters.ocpp_service import OcppService
from chargemanager.adapters.readings import ReadingBoard
from chargemanager.adapters.store import CONFIG_FILE, DataStore
from chargemanager.adapters.variable_service import VariableService
from chargemanager.adapters.watchdog import Notifier
from chargemanager.core.formula import UnknownName, FormulaError
from chargemanager.core.variables import name_key
from chargemanager.shim.clock import monotonic_ms, wall_time_s

log = logging.getLogger("runtime")

# How long after a tick the loop collects garbage (adapters/gcpolicy.py) unless woken first: by then the tick's
# commands are out (a limit change reaches 1000 OCPP boxes in ~0.1 s).
GC_DELAY_S = 0.3


class Runtime:
    def __init__(self, data_dir, http_port=None, ocpp_port=None, host="0.0.0.0"):
        self.store = DataStore(data_dir)
        self.config, problems = self.store.load_config()
        self.config_problems = list(problems)
        # systemd (Type=notify, WatchdogSec) and the status LED; both no-ops outside the appliance
        self.notifier = Notifier()
        self.led = StatusLed(os.environ.get("CHARGEMANAGER_LED", ""),
                             os.environ.get("CHARGEMANAGER_LED_BASE", LED_BASE))
        self.led.set("booting")
        self.led_flags = []         # f() -> {"comm_error": bool, "limited": bool, "fault": bool}: parts add theirs
        for problem in problems:
            log.error("configuration: %s", problem)
        if not os.path.exists(self.store.path(CONFIG_FILE)):
            log.info("no configuration yet: writing factory defaults to %s", self.store.folder)
            self.store.save_config(self.config)
        self.host = host
        self.http_port = http_port if http_port is not None else self.config["http"]["port"]
        self.ocpp_port = ocpp_port if ocpp_port is not None else self.config["ocpp"]["server"]["port"]
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._config_lock = threading.Lock()
        self.readings = ReadingBoard()
        self.variables = VariableService(self.store, self.wake)
        self.variables.external_lookup = self.lookup
        self.auth = AdminAuth(self.store)
        self.commands = CommandTable()
        self.services = []
        self.tick_hooks = []
        self.status_providers = {}
        self.config_listeners = []
        self.config_checks = []     # f(clean config) -> [{"field", "error"}]: checks beyond the pure schema
        self.extra_routes = []      # f(bottle_app): the config page adds its routes here
        self.started_ms = monotonic_ms()
        self.tick_count = 0
        self.last_tick_cpu_ms = 0.0
        self.recent_tick_cpu_ms = collections.deque(maxlen=60)  # get_status reports their maximum
        self.values = {}
        self.gc_policy = GcPolicy()  # installed by run(): keeps full garbage collections out of the tick
        self.status_providers["gc"] = self.gc_policy.status
        register_variable_commands(self.commands, self.variables)
        register_password_command(self.commands, self.auth)
        register_config_commands(self.commands, self)
        register_status_command(self.commands, self)
        self.load_manager = LoadManager(self)
        self.ocpp = OcppService(self)
        self.fieldbus = fieldbus.install(self)
        self.http = None
        self.certs = CertStore(self.store.folder, now_fn=wall_time_s)
        register_cert_commands(self.commands, self.certs)
        self.smgw = smgw.install(self)
        from chargemanager.adapters import web  # the config page: routes, chart history, diagnostics
        self.web = web.install(self)

    # --- formula names beyond variables ---------------------------------------------------------------------
    def lookup(self, name):
        """Device values (`M1.power_w`), time (`TIME.hour`, `TIME.minute`, `TIME.weekday` 1=Monday, `TIME.minute_of_day`)."""
        if "." in name:
            dev_id, quantity = name.split(".", 1)
            if dev_id.upper() == "TIME":
                return _time_value(quantity.lower())
            reading = self.readings.get(dev_id.upper())
            if reading is None:
                raise UnknownName(name)
            quantities, taken_ms, max_age_ms = reading
            if quantity not in quantities:
                raise UnknownName(name)
            if monotonic_ms() - taken_ms > max_age_ms:
                raise FormulaError("'%s' is stale (older than %d ms)" % (name, max_age_ms))
            return quantities[quantity]
        reading = self.readings.get(name.upper())  # inputs such as IN1 publish {"value": 0/1}
        if reading is not None and "value" in reading[0]:
            return reading[0]["value"]
        raise UnknownName(name)

    def formula_lookup(self, name):
        """Names in configuration formulas: variables (this tick's values), then everything `lookup` knows."""
        if "." not in name:
            key = name_key(name)
            if key in self.values:
                return self.values[key]
            var = self.variables.get(name)
            if var is not None:
                raise FormulaError("'%s' has an error (%s)" % (var.name, var.error))
        return self.lookup(name)

    # --- configuration --------------------------------------------------------------------------------------
    def apply_config(self, clean):
        """Store a validated document, then switch to it; a failed write leaves the old one in force."""
        with self._config_lock:
            self.store.save_config(clean)
            old = self.config
            self.config = clean
        for listener in self.config_listeners:
            try:
                listener(clean, old)
            except Exception:
                log.exception("applying the new configuration in %r failed", listener)
        self.wake.set()

    # --- status ---------------------------------------------------------------------------------------------
    def status(self):
        result = {
            "version": __version__,
            "uptime_s": (monotonic_ms() - self.started_ms) // 1000,
            "tick_count": self.tick_count,
            "tick_cpu_ms": round(self.last_tick_cpu_ms, 3),
            "tick_cpu_max_ms": round(max(self.recent_tick_cpu_ms or [0.0]), 3),  # of the last 60 ticks
            "admin_password_set": self.auth.password_set,
        }
        for name, provider in list(self.status_providers.items()):
            try:
                result[name] = provider()
            except Exception:
                log.exception("status provider %s failed", name)
                result[name] = {"error": "unavailable"}
        return result

    # --- the control loop -----------------------------------------------------------------------------------
    def tick(self, now_ms=None):
        now_ms = monotonic_ms() if now_ms is None else now_ms
        started = time.thread_time()  # this thread only: the OCPP and HTTP threads run meanwhile
        self.values = self.variables.evaluate()
        for hook in list(self.tick_hooks):
            try:
                hook(now_ms, self.values)
            except Exception:
                log.exception("tick hook %r failed", hook)
        self.tick_count += 1
        self.last_tick_cpu_ms = (time.thread_time() - started) * 1000.0
        self.recent_tick_cpu_ms.append(self.last_tick_cpu_ms)
        # from the tick itself, not a thread of its own: a hung loop stops the pings and systemd restarts us
        self.notifier.ping(now_ms)
        self.led.set(self.led_pattern())

    def led_pattern(self):
        flags = {"fault": bool(self.config_problems)}
        for provider in list(self.led_flags):
            try:
                for name, value in provider().items():
                    flags[name] = flags.get(name, False) or bool(value)
            except Exception:
                log.exception("LED flag provider %r failed", provider)
                flags["fault"] = True
        return choose_pattern(started=True, fault=flags.get("fault", False), comm_error=flags.get("comm_error", False),
                              limited=flags.get("limited", False))

    def start(self):
        app = build_app(self.commands, self.auth, self.config["http"]["max_body_bytes"],
                        extra_routes=self._add_extra_routes)
        # cheroot's own body limit is only a backstop: /cnf enforces http.max_body_bytes, the config page its own
        # limits; an update bundle is the largest body there is.
        self.http = HttpServer(app, self.host, self.http_port, max_body_bytes=self.web.max_body_bytes)
        self.http.start()
        self.http_port = self.http.port
        started = []
        try:
            for service in self.services:
                service.start()
                started.append(service)
        except Exception:
            # e.g. the OCPP port is taken: stop what already runs, so no thread outlives a failed start
            for service in reversed(started):
                try:
                    service.stop()
                except Exception:
                    log.exception("stopping %r failed", service)
            self.http.stop()
            self.http = None
            raise

    def _add_extra_routes(self, app):
        for add in self.extra_routes:
            add(app)

    def run(self):
        """Start everything, loop until stop() (SIGTERM), then stop everything."""
        self.start()
        log.info("charging manager %s running: data %s, HTTP port %d", __version__, self.store.folder,
                 self.http_port)
        self.notifier.ready("running: HTTP port %d" % self.http_port)
        self.gc_policy.install()
        try:
            while not self.stopping.is_set():
                self.wake.clear()
                self.tick()
                interval_s = self.config["site"]["tick_ms"] / 1000.0
                quiet_s = min(GC_DELAY_S, interval_s / 2)
                # Garbage collection in a quiet moment: after the tick's commands went out, not in their way.
                if not self.wake.wait(quiet_s):
                    self.gc_policy.after_tick()
                    self.wake.wait(interval_s - quiet_s)
        finally:
            self.gc_policy.uninstall()
            self.shutdown()

    def stop(self):
        self.stopping.set()
        self.wake.set()

    def shutdown(self):
        self.notifier.stopping()
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception:
                log.exception("stopping %r failed", service)
        if self.http is not None:
            self.http.stop()
        log.info("stopped")


def _time_value(quantity):
    t = time.localtime(wall_time_s())
    if quantity == "hour":
        return t.tm_hour
    if quantity == "minute":
        return t.tm_min
    if quantity == "weekday":
        return t.tm_wday + 1
    if quantity == "minute_of_day":
        return t.tm_hour * 60 + t.tm_min
    raise UnknownName("TIME." + quantity)


def hostname():
    return socket.gethostname()
