"""Wires the OCPP server into the runtime: start/stop, EVSE readings into the ReadingBoard, limits out as the driver
for EVSE type `ocpp16`, the `clear_profiles` command, and an `ocpp` section in get_status.

Threads: `apply()` and the tick hook run in the control loop; they collect the changed limits of one tick and hand
them to the server's loop in one `set_limits` call. Readings are published from the server's loop thread.
"""

import logging
import os

from chargemanager.adapters import tls
from chargemanager.adapters.http_api import ApiError
from chargemanager.adapters.ocpp_gateway_service import GatewayService
from chargemanager.adapters.ocpp_server import OcppServer
from chargemanager.core.ocpp_station import ocpp_endpoint
from chargemanager.shim.clock import monotonic_ms

log = logging.getLogger("chargemanager.ocpp")

# An OCPP EVSE's reading stays usable this long without new MeterValues (boxes often send every 60 s); its online
# and status fields are pushed at once on every change anyway.
READING_MAX_AGE_MS = 120000


class OcppService:
    def __init__(self, runtime):
        self.runtime = runtime
        self.server = None
        self.gateway = None  # the backend links of EVSEs with `gateway.url` (docs/ocpp.md, "Gateway")
        self.error = None
        self._sent = {}      # dev_id -> last limit handed to the server
        self._pending = {}   # dev_id -> limit collected in this tick
        self._context_fn = None  # TLS server context from the certificate store (built on first use)
        # Modbus chargers that also talk OCPP to us: their readings come from Modbus, not from this server.
        self._companions = self._companion_ids(runtime.config)
        runtime.services.append(self)
        runtime.tick_hooks.append(self.on_tick)
        runtime.config_listeners.append(self.on_config)
        runtime.status_providers["ocpp"] = self.status
        runtime.status_providers["gateway"] = self.gateway_status
        runtime.load_manager.register_driver("ocpp16", self)
        runtime.commands.register("clear_profiles", self.cmd_clear_profiles, methods=("GET", "POST"))

    # --- lifecycle ------------------------------------------------------------------------------------------
    def _make_server(self, config, port):
        server_cfg = config["ocpp"]["server"]
        mode = server_cfg.get("tls", "off")
        self.error = None
        # The context comes from the certificate store at each handshake, so imported certificates apply at once.
        # One function per service: each one registers a listener with the store.
        if mode != "off" and self._context_fn is None:
            self._context_fn = tls.store_context_fn(self.runtime.certs)
        context_fn = self._context_fn if mode != "off" else None
        site = config["site"]
        ping_s = server_cfg.get("ping_interval_s", 30)
        return OcppServer(config.get("evses", []), host=self.runtime.host, port=port,
                          password=server_cfg.get("password") or None, monitor=site.get("mode") == "monitor",
                          voltage_v=site.get("voltage_v", 230), on_publish=self._publish,
                          ping_interval_s=ping_s or None, ping_timeout_s=ping_s or None,
                          tls_mode=mode, ssl_context_fn=context_fn)

    def start(self):
        self.server = self._make_server(self.runtime.config, self.runtime.ocpp_port)
        if self.server is None:
            return
        try:
            self.runtime.ocpp_port = self.server.start()
        except OSError as exc:
            # The rest of the manager (HTTP API to fix the setting, load management of Modbus boxes) keeps running.
            self.error = "cannot listen on OCPP port %s: %s" % (self.runtime.ocpp_port, exc)
            log.error(self.error)
            self.server = None
            return
        log.info("OCPP server listening on port %d", self.runtime.ocpp_port)
        self.gateway = GatewayService(self.server, self.runtime.config, self.runtime.store.folder,
                                      upstream_opts_fn=self._gateway_link_opts, on_event=self._gateway_event)
        self.gateway.start()

    def stop(self):
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.server is not None:
            self.server.stop()

    def on_config(self, new, old):
        if new["ocpp"]["server"] != old["ocpp"]["server"]:
            # Port, password or TLS changed: boxes must reconnect anyway.
            self.stop()
            if old["ocpp"]["server"]["port"] != new["ocpp"]["server"]["port"]:
                self.runtime.ocpp_port = new["ocpp"]["server"]["port"]  # else keep a --ocpp-port override
            self._sent = {}
            if self.runtime.http is not None:  # only once the runtime runs: start() binds the port itself
                self.start()
            return
        if self.server is not None:
            self.server.update_evses(new.get("evses", []), monitor=new["site"].get("mode") == "monitor",
                                     voltage_v=new["site"].get("voltage_v", 230))
        if self.gateway is not None:
            self.gateway.apply_config(new)
        self._companions = self._companion_ids(new)
        known = set(e["dev_id"] for e in new.get("evses", []))
        for dev_id in list(self._sent):
            if dev_id not in known:
                del self._sent[dev_id]

    @staticmethod
    def _companion_ids(config):
        return frozenset(e["dev_id"] for e in config.get("evses", [])
                         if e.get("type") != "ocpp16" and ocpp_endpoint(e) is not None)

    # --- readings in ----------------------------------------------------------------------------------------
    def _publish(self, states):
        now_ms = monotonic_ms()
        companions = self._companions
        for dev_id, st in states.items():
            if dev_id in companions:
                continue
            current = st["current_ma"]
            quantities = {
                "online": bool(st["connected"] and st["booted"]),
                "wants": bool(st["wants"]),
                "state": st["status"] if st["connected"] else "Offline",
                "power_w": st["power_w"],
                "energy_wh": st["energy_wh"],
            }
            if current is not None:
                quantities["current_l1_ma"], quantities["current_l2_ma"], quantities["current_l3_ma"] = current
            taken_ms = st["meter_ms"] if st["meter_ms"] is not None else now_ms
            self.runtime.readings.publish(dev_id, quantities, taken_ms, READING_MAX_AGE_MS)

    # --- limits out (driver interface of the load manager) --------------------------------------------------
    def apply(self, evse, decision):
        limit = decision.current_ma if decision.enable else 0
        if self._sent.get(evse["dev_id"]) != limit:
            self._pending[evse["dev_id"]] = limit

    def on_tick(self, now_ms, values):
        if not self._pending or self.server is None:
            return
        pending, self._pending = self._pending, {}
        self.server.set_limits(pending)
        self._sent.update(pending)

    def ocpp_side_limit(self, evse):
        """(current mA or None, enable or None) that the OCPP side allows a Modbus charger that also talks OCPP to
        us: its billing backend's charging profiles, kept by the gateway (SPEC section 7: the box gets the minimum of
        both and charges only if both allow). A limit below the EVSE's minimum current forbids charging."""
        endpoint = ocpp_endpoint(evse)
        gateway = self.gateway
        if endpoint is None or gateway is None:
            return None, None
        limit_ma = gateway.backend_limit_ma(endpoint[0], endpoint[1])
        if limit_ma is None:
            return None, None
        return limit_ma, limit_ma >= evse.get("min_current_ma", 6000)

    def device_info(self, dev_id):
        if self.server is None:
            return {}
        st = self.server.state_of(dev_id)
        if st is None:
            return {}
        return {"ocpp": {
            "connected": st["connected"], "booted": st["booted"], "status": st["status"],
            "error_code": st["error_code"], "transaction": st["transaction"], "current_ma": st["current_ma"],
            "offered_ma": st["offered_ma"], "meter_age_ms": st["meter_age_ms"], "profile": st["profile"],
            "limit_ma": st["limit_ma"], "capabilities": st["capabilities"], "boot": st["boot"],
        }}

    # --- commands and status --------------------------------------------------------------------------------
    def cmd_clear_profiles(self, req):
        """`clear_profiles&dev_id=E1`: ClearChargingProfile (all profiles) on the EVSE's box, for a box that will
        be used without the manager (SPEC §4)."""
        dev_id = req.param("dev_id", required=True)
        evse = next((e for e in self.runtime.config.get("evses", []) if e["dev_id"] == dev_id), None)
        if evse is None:
            raise ApiError(404, "unknown EVSE '%s'" % dev_id)
        if evse["type"] != "ocpp16":
            raise ApiError(400, "EVSE '%s' is not an OCPP EVSE" % dev_id)
        if self.server is None:
            raise ApiError(409, "the OCPP server is not running")
        result = self.server.clear_profiles(evse["address"])
        if "error" in result:
            if result["error"] == "not connected":
                raise ApiError(409, "box '%s' of %s is not connected" % (evse["address"], dev_id))
            raise ApiError(409, "box '%s' answered %s %s" % (evse["address"], result["error"],
                                                              result.get("description", "")))
        return 200, {"ok": result.get("status") == "Accepted", "dev_id": dev_id, "status": result.get("status")}

    # --- gateway to the billing backends ---------------------------------------------------------------------
    def _gateway_link_opts(self, gw):
        """Backend link options from the certificate store and the SMGW (called on the OCPP thread per link):
        trust the configured CA file, else the store's CA certificates, else the system store (profile 2); present
        the store certificate `client_cert_id`, else the configured client certificate file, else the store's newest
        client certificate (profile 3); dial through the SMGW when its function 1 is on. ValueError (the link is
        not built, its status says why) for a certificate that is missing or has no key."""
        opts = {}
        certs = getattr(self.runtime, "certs", None)
        if certs is not None and gw.get("url", "").startswith("wss://"):
            ca_pem = None
            if gw.get("ca_file"):
                with open(os.path.join(self.runtime.store.folder, gw["ca_file"])) as f:
                    ca_pem = f.read()
            elif certs.ids("ca"):
                ca_pem = certs.ca_pem()
            pair = None
            if gw.get("client_cert_id"):
                # This EVSE's own certificate from the store (each backend may know the station by another one).
                try:
                    pair = certs.client_pair(gw["client_cert_id"])
                except KeyError:
                    raise ValueError("client certificate '%s' is not in the certificate store" % gw["client_cert_id"])
            elif gw.get("client_cert"):
                folder = self.runtime.store.folder
                pair = (os.path.join(folder, gw["client_cert"]), os.path.join(folder, gw.get("client_key") or
                                                                              gw["client_cert"]))
            elif certs.ids("client"):
                pair = certs.client_pair(certs.ids("client")[-1])
            opts["ssl_context"] = tls.client_context(ca_pem=ca_pem, client_pair=pair)
        smgw = getattr(self.runtime, "smgw", None)
        if smgw is not None:
            opts["connector"] = smgw.channel.socket_connector  # direct while SMGW function 1 is off
        return opts

    def _gateway_event(self, dev_id, name, data):
        """Gateway events on the OCPP thread. A transaction the wallbox ran while the backend was away, whose idTag
        the backend then rejected, goes into the audit log (evidence for billing; also in get_status)."""
        if name != "backend_rejected_offline_tx":
            return
        fieldbus = getattr(self.runtime, "fieldbus", None)
        if fieldbus is None:
            return
        fields = dict(data, dev_id=dev_id)
        # The audit log fsyncs: not on the OCPP loop.
        self.server._loop.run_in_executor(None, lambda: fieldbus.audit().record("gateway_offline_tx_rejected",
                                                                                **fields))

    def gateway_status(self):
        return self.gateway.status() if self.gateway is not None else {}

    def status(self):
        if self.server is None:
            return {"running": False, "error": self.error}
        tls_mode = self.runtime.config["ocpp"]["server"].get("tls", "off")
        connected = sorted(list(self.server.connections))
        events = {}
        for cbid, station in list(self.server.stations.items()):
            if station.events:
                events[cbid] = [text for _, text in station.events[-10:]]
        return {"running": True, "port": self.runtime.ocpp_port, "tls": tls_mode, "error": self.error,
                "connected": connected, "last_apply_cpu_ms": round(self.server.last_apply_cpu_ms, 3),
                "seen_unconfigured": self.server.seen_unconfigured(), "events": events}
