"""Central-System side model of one OCPP 1.6 charge point (one ChargeBox ID): answers its CALLs, keeps per-connector
state for the control loop, and decides which CALLs we send (capability read, charging profiles).

Invariants and units:
- Pure: no clock, no I/O. `now_ms` is monotonic ms, `wall_ms` Unix ms UTC; both are passed in.
- Currents are integer mA per phase (index 0..2 = the box's L1..L3), power integer W, energy integer Wh; OCPP's
  camelCase names and A/kW/kWh units are converted here and nowhere else.
- StopTransaction is always answered with a CALLRESULT, even for an unknown transaction id (1.6 §4.10, A4 #6-7).
- StartTransaction is idempotent: the same connector, idTag, meterStart and timestamp get the same transactionId
  (A4 #8: boxes resend it before they see the answer).
- Limits: `set_limit(connector, limit_ma)`; a profile goes out only when the policy key differs from the last one the
  box accepted, and every (re)connect forgets what was accepted, so limits are re-sent (A4 #12). Connectors in
  `monitor` mode never get a profile.
"""

from chargemanager.core import ocpp_profiles

HEARTBEAT_INTERVAL_S = 300
# A box that reconnects after our restart does not resend BootNotification (OCPP-J §5.4); ask for one after this.
BOOT_TRIGGER_AFTER_MS = 5000
MAX_EVENTS = 50
# Connector statuses in which a car is plugged in and may take current (SuspendedEVSE: paused by us or the box).
WANTS_STATUSES = ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE")

_USED_MEASURANDS = ("Current.Import", "Current.Offered", "Power.Active.Import", "Energy.Active.Import.Register")
_PHASES = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_meter_values(meter_values, phases):
    """Readings from the newest entry of MeterValues.req `meterValue` (list). Returns a dict with any of
    `current_ma` [l1, l2, l3], `offered_ma`, `power_w`, `energy_wh`. Unphased current counts on every used phase."""
    out = {}
    if not meter_values:
        return out
    sampled = meter_values[-1].get("sampledValue", ())
    current = [None, None, None]
    power_by_phase = 0
    power_phased = False
    for sv in sampled:
        # Measurands the control loop does not use (voltage, temperature, SoC...) are skipped before anything else:
        # this runs for every MeterValues of every box.
        measurand = sv.get("measurand", "Energy.Active.Import.Register")
        if measurand not in _USED_MEASURANDS:
            continue
        if sv.get("format") == "SignedData" or sv.get("location") in ("EV", "Body"):
            continue
        v = _num(sv.get("value"))
        if v is None:
            continue
        unit = sv.get("unit")
        phase = sv.get("phase")
        if measurand == "Current.Import":
            ma = int(round(v * 1000))
            if phase in _PHASES:
                current[_PHASES[phase]] = ma
            elif phase is None:
                for i in range(phases):
                    current[i] = ma
        elif measurand == "Current.Offered" and phase in (None, "L1", "L1-N"):
            out["offered_ma"] = int(round(v * 1000))
        elif measurand == "Power.Active.Import":
            w = v * 1000 if unit == "kW" else v
            if phase in _PHASES:
                power_by_phase += w
                power_phased = True
            elif phase is None:
                out["power_w"] = int(round(w))
        elif measurand == "Energy.Active.Import.Register" and phase is None:
            out["energy_wh"] = int(round(v * 1000 if unit == "kWh" else v))
    if power_phased and "power_w" not in out:
        out["power_w"] = int(round(power_by_phase))
    if current != [None, None, None]:
        out["current_ma"] = [c or 0 for c in current]
    return out


def ocpp_endpoint(evse):
    """(ChargeBox ID, connector id) under which a config `evses[]` entry talks OCPP to our server, or None.

    An `ocpp16` EVSE is its `address` and `id`; a Modbus charger that also connects to our server (SPEC section 7:
    load management over Modbus, billing over OCPP) is its `ocpp_id` and `ocpp_connector_id`."""
    if evse.get("type", "ocpp16") == "ocpp16":
        return evse.get("address"), int(evse.get("id", 1))
    if evse.get("ocpp_id"):
        return evse["ocpp_id"], int(evse.get("ocpp_connector_id", 1))
    return None


def connector_opts(evse):
    """Station connector options from a config `evses[]` entry (defaults for absent keys)."""
    return {
        "dev_id": evse.get("dev_id"),
        "mode": evse.get("mode", "active"),
        "phases": evse.get("phases", 3),
        "voltage_v": evse.get("voltage_v", 230),
        "stack_level_zero": bool(evse.get("stack_level_zero", False)),
        "unit": evse.get("charging_rate_unit", "auto"),
        "profile_kind": evse.get("profile_kind", "Absolute"),
    }


class Station:
    """One charge point. `connectors`: {connector_id: opts from `connector_opts`}; `new_tx_id()` returns a fresh
    integer transaction id."""

    def __init__(self, chargebox_id, connectors, new_tx_id):
        self.chargebox_id = chargebox_id
        self.connectors = dict(connectors)
        self.new_tx_id = new_tx_id
        self.connected = False
        self.booted = False  # a BootNotification was accepted (in this process)
        self.boot = {}
        self.connected_ms = None
        self.boot_triggered = False
        self.status_triggered = False
        self.caps = None  # None until read (or given up)
        self.caps_pending = False
        self.station_status = None
        self.conn = {}  # connector id -> state dict
        self.tx_by_key = {}  # StartTransaction idempotency
        self.limits = {}  # connector -> desired mA (None = no grant yet)
        self.accepted = {}  # connector -> policy key the box accepted
        self.pending = {}  # connector -> policy key in flight
        self.refused = {}  # connector -> policy key the box refused (not retried until the limit changes)
        self.learnt_stack_zero = False
        self.events = []

    # ---- connection lifecycle -----------------------------------------------------------------------------------

    def connect(self, now_ms):
        self.connected = True
        self.connected_ms = now_ms
        self.boot_triggered = False
        self.status_triggered = False
        self.accepted = {}
        self.pending = {}
        self.refused = {}
        self.caps = None
        self.caps_pending = False

    def disconnect(self, now_ms):
        self.connected = False
        self.pending = {}
        self.caps_pending = False

    def _state(self, connector_id):
        st = self.conn.get(connector_id)
        if st is None:
            st = {"status": None, "error_code": None, "transaction": None, "current_ma": None, "offered_ma": None,
                  "power_w": None, "energy_wh": None, "meter_ms": None}
            self.conn[connector_id] = st
        return st

    def note(self, now_ms, text):
        self.events.append((now_ms, text))
        if len(self.events) > MAX_EVENTS:
            self.events.pop(0)

    # ---- CALLs from the charge point ----------------------------------------------------------------------------

    def handle(self, action, payload, now_ms, wall_ms):
        """CALLRESULT payload for a validated CALL, or None for actions we do not support (-> NotSupported)."""
        fn = getattr(self, "_on_" + action, None)
        if fn is None:
            return None
        return fn(payload, now_ms, wall_ms)

    def _on_BootNotification(self, p, now_ms, wall_ms):
        self.boot = {
            "vendor": p.get("chargePointVendor"), "model": p.get("chargePointModel"),
            "serial": p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber"),
            "firmware": p.get("firmwareVersion"),
        }
        self.booted = True
        # A boot means the box restarted: profiles it kept may differ from ours, so send them again.
        self.accepted = {}
        self.refused = {}
        return {"status": "Accepted", "currentTime": ocpp_profiles.iso_utc(wall_ms), "interval": HEARTBEAT_INTERVAL_S}

    def _on_Heartbeat(self, p, now_ms, wall_ms):
        return {"currentTime": ocpp_profiles.iso_utc(wall_ms)}

    def _on_StatusNotification(self, p, now_ms, wall_ms):
        cid = p.get("connectorId", 0)
        if cid == 0:
            self.station_status = p.get("status")
        else:
            st = self._state(cid)
            st["status"] = p.get("status")
            st["error_code"] = p.get("errorCode")
        if p.get("errorCode") not in (None, "NoError"):
            self.note(now_ms, "connector %s %s %s" % (cid, p.get("errorCode"), p.get("info", "")))
        return {}

    def _on_Authorize(self, p, now_ms, wall_ms):
        # Authorisation belongs to the billing backend (gateway); the manager itself lets every idTag charge.
        return {"idTagInfo": {"status": "Accepted"}}

    def _on_StartTransaction(self, p, now_ms, wall_ms):
        cid = p.get("connectorId")
        key = (cid, p.get("idTag"), p.get("meterStart"), p.get("timestamp"))
        tx_id = self.tx_by_key.get(key)
        if tx_id is None:
            tx_id = self.new_tx_id()
            self.tx_by_key[key] = tx_id
            if len(self.tx_by_key) > 20:
                self.tx_by_key.pop(next(iter(self.tx_by_key)))
        st = self._state(cid)
        st["transaction"] = {"transaction_id": tx_id, "id_tag": p.get("idTag"), "meter_start_wh": p.get("meterStart"),
                             "start": p.get("timestamp")}
        st["energy_wh"] = p.get("meterStart")
        return {"transactionId": tx_id, "idTagInfo": {"status": "Accepted"}}

    def _on_StopTransaction(self, p, now_ms, wall_ms):
        tx_id = p.get("transactionId")
        found = False
        for st in self.conn.values():
            tx = st["transaction"]
            if tx is not None and tx["transaction_id"] == tx_id:
                st["transaction"] = None
                if isinstance(p.get("meterStop"), int):
                    st["energy_wh"] = p.get("meterStop")
                found = True
        if not found:
            self.note(now_ms, "StopTransaction for unknown transaction %r answered" % (tx_id,))
        if "idTag" in p:
            return {"idTagInfo": {"status": "Accepted"}}
        return {}

    def _on_MeterValues(self, p, now_ms, wall_ms):
        cid = p.get("connectorId", 0)
        opts = self.connectors.get(cid, {})
        readings = parse_meter_values(p.get("meterValue", ()), opts.get("phases", 3))
        if readings:
            st = self._state(cid)
            st.update(readings)
            st["meter_ms"] = now_ms
        return {}

    def _on_DataTransfer(self, p, now_ms, wall_ms):
        # No vendor extensions are handled locally (the gateway forwards them unchanged to the backend).
        return {"status": "UnknownVendorId"}

    def _on_DiagnosticsStatusNotification(self, p, now_ms, wall_ms):
        self.note(now_ms, "diagnostics %s" % p.get("status"))
        return {}

    def _on_FirmwareStatusNotification(self, p, now_ms, wall_ms):
        self.note(now_ms, "firmware %s" % p.get("status"))
        return {}

    def _on_SecurityEventNotification(self, p, now_ms, wall_ms):
        self.note(now_ms, "security event %s %s" % (p.get("type"), p.get("techInfo", "")))
        return {}

    def _on_LogStatusNotification(self, p, now_ms, wall_ms):
        return {}

    def _on_SignedFirmwareStatusNotification(self, p, now_ms, wall_ms):
        self.note(now_ms, "signed firmware %s" % p.get("status"))
        return {}

    def _on_SignCertificate(self, p, now_ms, wall_ms):
        return {"status": "Rejected"}

    # ---- CALLs we send ------------------------------------------------------------------------------------------

    def set_limit(self, connector_id, limit_ma):
        """Desired limit in mA for a connector (None: no grant yet, installs the zero default)."""
        self.limits[connector_id] = limit_ma

    def commands(self, now_ms, wall_ms, boot_accepted):
        """CALLs to queue now: [(action, payload, ref)]. `ref` comes back with the answer."""
        out = []
        if not self.connected:
            return out
        if not boot_accepted:
            if not self.boot_triggered and now_ms - self.connected_ms >= BOOT_TRIGGER_AFTER_MS:
                self.boot_triggered = True
                out.append(("TriggerMessage", {"requestedMessage": "BootNotification"}, ("trigger",)))
            return out
        if self.caps is None:
            if not self.caps_pending:
                self.caps_pending = True
                out.append(("GetConfiguration", {"key": list(ocpp_profiles.CAPABILITY_KEYS)}, ("caps",)))
            return out
        for cid in sorted(self.connectors):
            opts = self.connectors[cid]
            if cid in self.pending:
                continue
            if opts.get("mode") == "monitor":
                if cid in self.accepted:
                    # Switched to monitor while our profile is on the box: take ours away (by its id only), or a
                    # zero limit of ours would keep blocking the box under the other load manager.
                    del self.accepted[cid]
                    self.pending[cid] = None
                    out.append(("ClearChargingProfile", {"id": ocpp_profiles.PROFILE_ID_BASE + cid},
                                ("unprofile", cid)))
                continue
            if self.learnt_stack_zero and not opts.get("stack_level_zero"):
                opts = dict(opts)
                opts["stack_level_zero"] = True
            key, payload = ocpp_profiles.profile_for(cid, self.limits.get(cid), self.caps, opts, wall_ms)
            if self.accepted.get(cid) == key or self.refused.get(cid) == key:
                continue
            self.pending[cid] = key
            out.append(("SetChargingProfile", payload, ("profile", cid, key)))
        if not self.status_triggered:
            # After our restart a box with a car plugged in sends no new StatusNotification; ask for the current
            # ones so the load management sees the demand (after the profiles: limits first).
            self.status_triggered = True
            out.append(("TriggerMessage", {"requestedMessage": "StatusNotification"}, ("trigger",)))
        return out

    def clear_profiles(self):
        """The ClearChargingProfile CALL for a box that will be used without the manager; our profiles are
        forgotten so a later limit is sent again."""
        self.accepted = {}
        return ("ClearChargingProfile", ocpp_profiles.clear_profiles_payload(), ("clear",))

    def on_result(self, action, payload, ref, now_ms):
        what = ref[0] if ref else None
        if what == "caps":
            self.caps_pending = False
            self.caps = ocpp_profiles.parse_capabilities(payload)
        elif what == "profile":
            cid, key = ref[1], ref[2]
            self.pending.pop(cid, None)
            if payload.get("status") == "Accepted":
                self.accepted[cid] = key
                self.refused.pop(cid, None)
            elif key[2] > 0 and not self.learnt_stack_zero:
                # Boxes such as ABB Terra AC FW 1.8, go-e and Grizzl-E accept only stack level 0 (REFERENCE 2.2).
                self.learnt_stack_zero = True
                self.note(now_ms, "profile at stack level %d rejected; using stack level 0" % key[2])
            else:
                self.refused[cid] = key
                self.note(now_ms, "connector %d refused profile %r: %s" % (cid, key, payload.get("status")))
        elif what == "clear":
            self.note(now_ms, "ClearChargingProfile %s" % payload.get("status"))
        elif what == "unprofile":
            self.pending.pop(ref[1], None)
            self.note(now_ms, "connector %d now in monitor mode: our profile removed (%s)"
                      % (ref[1], payload.get("status")))

    def on_failed(self, action, code, description, ref, now_ms):
        what = ref[0] if ref else None
        if what == "caps":
            self.caps_pending = False
            self.caps = ocpp_profiles.default_capabilities()
            self.note(now_ms, "GetConfiguration failed (%s); assuming stack level 0, unit A" % code)
        elif what == "unprofile":
            self.pending.pop(ref[1], None)
            self.note(now_ms, "removing our profile from connector %d failed: %s" % (ref[1], code))
        elif what == "profile":
            self.pending.pop(ref[1], None)
            if code != "Timeout":
                self.refused[ref[1]] = ref[2]
            self.note(now_ms, "SetChargingProfile connector %d failed: %s %s" % (ref[1], code, description))
        else:
            self.note(now_ms, "%s failed: %s %s" % (action, code, description))

    # ---- state for the control loop ------------------------------------------------------------------------------

    def wants(self, connector_id):
        """A car is plugged in and may charge (OCPP status), or a transaction runs while the status is unknown."""
        st = self._state(connector_id)
        if st["status"] in WANTS_STATUSES:
            return True
        return st["status"] is None and st["transaction"] is not None

    def evse_states(self, now_ms):
        """{connector_id: state} for every configured connector (plain dicts, safe to hand to another thread)."""
        out = {}
        for cid, opts in self.connectors.items():
            st = self._state(cid)
            acc = self.accepted.get(cid)
            out[cid] = {
                "dev_id": opts.get("dev_id"),
                "address": self.chargebox_id,
                "connector_id": cid,
                "connected": self.connected,
                "booted": self.booted,
                "status": st["status"],
                "wants": self.wants(cid),
                "error_code": st["error_code"],
                "transaction": dict(st["transaction"]) if st["transaction"] else None,
                "current_ma": list(st["current_ma"]) if st["current_ma"] else None,
                "offered_ma": st["offered_ma"],
                "power_w": st["power_w"],
                "energy_wh": st["energy_wh"],
                "meter_ms": st["meter_ms"],
                "meter_age_ms": None if st["meter_ms"] is None else now_ms - st["meter_ms"],
                "limit_ma": self.limits.get(cid),
                "profile": None if acc is None else {"unit": acc[0], "limit": acc[1], "stack_level": acc[2]},
                "capabilities": None if self.caps is None else {
                    "max_stack_level": self.caps["max_stack_level"], "units": list(self.caps["units"]),
                    "max_profiles": self.caps["max_profiles"], "read": self.caps["read"],
                    "stack_level_zero_learnt": self.learnt_stack_zero},
                "boot": dict(self.boot),
            }
        return out
