# Charging-profile policy and the station model (pure core). Plain asserts only: also runs under MicroPython.
from chargemanager.core.ocpp_profiles import default_capabilities, iso_utc, parse_capabilities, profile_for
from chargemanager.core.ocpp_station import Station, connector_opts, parse_meter_values

WALL_MS = 1767225600000  # 2026-01-01T00:00:00Z

CAPS_A8 = {"max_stack_level": 8, "units": ("A", "W"), "max_profiles": 10, "read": True}
CAPS_W = {"max_stack_level": 2, "units": ("W",), "max_profiles": 4, "read": True}


def _limit(payload):
    return payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]


def test_iso_utc():
    rows = (
        (0, "1970-01-01T00:00:00Z"),
        (WALL_MS, "2026-01-01T00:00:00Z"),
        (951782400000, "2000-02-29T00:00:00Z"),  # leap day
        (WALL_MS - 1, "2025-12-31T23:59:59Z"),
        (4102444799000, "2099-12-31T23:59:59Z"),
    )
    for ms, text in rows:
        assert iso_utc(ms) == text, (ms, iso_utc(ms))


def test_parse_capabilities():
    caps = parse_capabilities({"configurationKey": [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "5"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"},
        {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "3"},
    ]})
    assert caps["max_stack_level"] == 5 and caps["units"] == ("A", "W") and caps["max_profiles"] == 3


def test_parse_capabilities_power_only_and_garbage():
    caps = parse_capabilities({"configurationKey": [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "many"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": " Power "},
    ], "unknownKey": ["MaxChargingProfilesInstalled"]})
    assert caps["max_stack_level"] == 0 and caps["units"] == ("W",) and caps["max_profiles"] is None


def test_default_zero_profile_when_no_grant():
    key, p = profile_for(1, None, CAPS_A8, {"phases": 3}, WALL_MS)
    prof = p["csChargingProfiles"]
    assert p["connectorId"] == 1
    assert prof["chargingProfilePurpose"] == "TxDefaultProfile"
    assert prof["stackLevel"] == 8
    assert prof["chargingProfileKind"] == "Absolute"
    assert prof["chargingSchedule"]["startSchedule"] == "2025-12-31T23:59:00Z"
    assert prof["chargingSchedule"]["chargingRateUnit"] == "A"
    assert _limit(p) == 0
    assert key == ("A", 0.0, 8, 3, "Absolute")


def test_amps_rounded_down_to_tenth():
    rows = ((16000, 16.0), (10550, 10.5), (6099, 6.0), (0, 0.0), (-5, 0.0))
    for ma, amps in rows:
        _, p = profile_for(1, ma, CAPS_A8, {"phases": 3}, WALL_MS)
        assert _limit(p) == amps, (ma, _limit(p))


def test_watts_for_power_only_box():
    _, p = profile_for(2, 16000, CAPS_W, {"phases": 3, "voltage_v": 230}, WALL_MS)
    assert p["csChargingProfiles"]["chargingSchedule"]["chargingRateUnit"] == "W"
    assert _limit(p) == 11040
    _, p = profile_for(2, 16000, CAPS_W, {"phases": 1, "voltage_v": 230}, WALL_MS)
    assert _limit(p) == 3680


def test_unit_forced_by_option():
    _, p = profile_for(1, 10000, CAPS_A8, {"phases": 1, "unit": "W"}, WALL_MS)
    assert p["csChargingProfiles"]["chargingSchedule"]["chargingRateUnit"] == "W" and _limit(p) == 2300


def test_stack_level_zero_option_and_relative_kind():
    key, p = profile_for(1, 8000, CAPS_A8, {"stack_level_zero": True, "profile_kind": "Relative"}, WALL_MS)
    prof = p["csChargingProfiles"]
    assert prof["stackLevel"] == 0 and prof["chargingProfileKind"] == "Relative"
    assert "startSchedule" not in prof["chargingSchedule"]


def test_profile_id_fixed_per_connector_and_key_ignores_time():
    k1, p1 = profile_for(1, 8000, CAPS_A8, {}, WALL_MS)
    k2, p2 = profile_for(1, 8000, CAPS_A8, {}, WALL_MS + 3600000)
    k3, p3 = profile_for(2, 8000, CAPS_A8, {}, WALL_MS)
    assert k1 == k2
    assert p1["csChargingProfiles"]["chargingProfileId"] == p2["csChargingProfiles"]["chargingProfileId"]
    assert p1["csChargingProfiles"]["chargingProfileId"] != p3["csChargingProfiles"]["chargingProfileId"]


def test_meter_values_parsing():
    mv = [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]},
          {"timestamp": "2026-01-01T00:00:10Z", "sampledValue": [
              {"value": "10.2", "measurand": "Current.Import", "phase": "L1"},
              {"value": "9.8", "measurand": "Current.Import", "phase": "L2-N"},
              {"value": "16", "measurand": "Current.Offered"},
              {"value": "2300", "measurand": "Power.Active.Import", "phase": "L1"},
              {"value": "2250", "measurand": "Power.Active.Import", "phase": "L2"},
              {"value": "12345"},
              {"value": "abc", "measurand": "Current.Import", "phase": "L3"},
              {"value": "99", "measurand": "Current.Import", "phase": "L3", "location": "EV"},
              {"value": "xyz", "format": "SignedData"},
          ]}]
    r = parse_meter_values(mv, 3)
    assert r["current_ma"] == [10200, 9800, 0]
    assert r["offered_ma"] == 16000
    assert r["power_w"] == 4550
    assert r["energy_wh"] == 12345


def test_meter_values_unphased_current_on_used_phases():
    r = parse_meter_values([{"timestamp": "x", "sampledValue": [
        {"value": "7", "measurand": "Current.Import", "unit": "A"},
        {"value": "1.61", "measurand": "Power.Active.Import", "unit": "kW"},
        {"value": "2.5", "measurand": "Energy.Active.Import.Register", "unit": "kWh"}]}], 1)
    assert r["current_ma"] == [7000, 0, 0] and r["power_w"] == 1610 and r["energy_wh"] == 2500


def _station(**evse):
    base = {"dev_id": "E1", "type": "ocpp16", "address": "B", "id": 1}
    base.update(evse)
    ids = [41]

    def new_tx():
        ids[0] += 1
        return ids[0]
    return Station("B", {1: connector_opts(base)}, new_tx)


def _caps_result():
    return {"configurationKey": [
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "4"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"}]}


def _booted_station(**evse):
    st = _station(**evse)
    st.connect(0)
    st.handle("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}, 0, WALL_MS)
    cmds = st.commands(0, WALL_MS, True)
    assert [c[0] for c in cmds] == ["GetConfiguration"]
    st.on_result("GetConfiguration", _caps_result(), cmds[0][2], 1)
    return st


def test_station_boot_then_caps_then_zero_profile_then_status_trigger():
    st = _booted_station()
    cmds = st.commands(2, WALL_MS, True)
    assert [c[0] for c in cmds] == ["SetChargingProfile", "TriggerMessage"]
    assert cmds[1][1] == {"requestedMessage": "StatusNotification"}
    assert _limit(cmds[0][1]) == 0 and cmds[0][1]["csChargingProfiles"]["stackLevel"] == 4
    assert st.commands(3, WALL_MS, True) == []  # in flight: not sent twice
    st.on_result("SetChargingProfile", {"status": "Accepted"}, cmds[0][2], 4)
    assert st.commands(5, WALL_MS, True) == []  # accepted and unchanged


def test_station_sends_only_changes_and_resends_after_reconnect():
    st = _booted_station()
    cmds = st.commands(2, WALL_MS, True)
    st.on_result("SetChargingProfile", {"status": "Accepted"}, cmds[0][2], 3)
    st.set_limit(1, 16000)
    cmds = st.commands(4, WALL_MS, True)
    assert _limit(cmds[0][1]) == 16.0
    st.on_result("SetChargingProfile", {"status": "Accepted"}, cmds[0][2], 5)
    st.set_limit(1, 16000)
    assert st.commands(6, WALL_MS, True) == []
    st.disconnect(7)
    assert st.commands(8, WALL_MS, True) == []
    st.connect(9)
    cmds = st.commands(10, WALL_MS, True)
    assert cmds[0][0] == "GetConfiguration"
    st.on_result("GetConfiguration", _caps_result(), cmds[0][2], 11)
    cmds = st.commands(12, WALL_MS, True)
    assert _limit(cmds[0][1]) == 16.0
    assert cmds[1][0] == "TriggerMessage"


def test_station_monitor_mode_sends_no_profile():
    st = _booted_station(mode="monitor")
    st.set_limit(1, 16000)
    assert [c[0] for c in st.commands(2, WALL_MS, True)] == ["TriggerMessage"]
    assert st.commands(3, WALL_MS, True) == []


def test_station_learns_stack_level_zero_after_rejection():
    st = _booted_station()
    cmds = st.commands(2, WALL_MS, True)
    st.on_result("SetChargingProfile", {"status": "Rejected"}, cmds[0][2], 3)
    cmds = st.commands(4, WALL_MS, True)
    assert cmds[0][1]["csChargingProfiles"]["stackLevel"] == 0
    st.on_result("SetChargingProfile", {"status": "Rejected"}, cmds[0][2], 5)
    assert st.commands(6, WALL_MS, True) == []  # refused at level 0 too: not retried until the limit changes
    st.set_limit(1, 6000)
    assert len(st.commands(7, WALL_MS, True)) == 1


def test_station_caps_read_failure_assumes_defaults():
    st = _station()
    st.connect(0)
    cmds = st.commands(0, WALL_MS, True)
    st.on_failed("GetConfiguration", "Timeout", "", cmds[0][2], 30000)
    assert st.caps == default_capabilities()
    cmds = st.commands(30001, WALL_MS, True)
    assert cmds[0][1]["csChargingProfiles"]["stackLevel"] == 0


def test_station_triggers_boot_when_reconnecting_unknown():
    st = _station()
    st.connect(1000)
    assert st.commands(1000, WALL_MS, False) == []
    cmds = st.commands(6000, WALL_MS, False)
    assert cmds[0][0] == "TriggerMessage" and cmds[0][1] == {"requestedMessage": "BootNotification"}
    assert st.commands(7000, WALL_MS, False) == []


def test_station_stop_transaction_always_answered():
    st = _booted_station()
    assert st.handle("StopTransaction", {"transactionId": 999, "meterStop": 1, "timestamp": "t"}, 1, WALL_MS) == {}
    r = st.handle("StopTransaction", {"transactionId": 999, "meterStop": 1, "timestamp": "t", "idTag": "A"}, 1,
                  WALL_MS)
    assert r == {"idTagInfo": {"status": "Accepted"}}
    assert "unknown transaction" in st.events[-1][1]


def test_station_start_transaction_idempotent():
    st = _booted_station()
    req = {"connectorId": 1, "idTag": "T", "meterStart": 5, "timestamp": "2026-01-01T00:00:00Z"}
    a = st.handle("StartTransaction", req, 1, WALL_MS)
    b = st.handle("StartTransaction", req, 2, WALL_MS)
    assert a["transactionId"] == b["transactionId"] == 42
    req2 = dict(req, meterStart=6)
    assert st.handle("StartTransaction", req2, 3, WALL_MS)["transactionId"] == 43
    state = st.evse_states(4)[1]
    assert state["transaction"]["transaction_id"] == 43 and state["energy_wh"] == 6


def test_station_unsupported_action():
    st = _booted_station()
    assert st.handle("Reset", {"type": "Soft"}, 1, WALL_MS) is None


def test_station_wants():
    st = _booted_station()
    assert not st.wants(1)
    rows = (("Available", False), ("Preparing", True), ("Charging", True), ("SuspendedEVSE", True),
            ("SuspendedEV", True), ("Finishing", False), ("Faulted", False))
    for status, wants in rows:
        st.handle("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": status}, 1, WALL_MS)
        assert st.wants(1) == wants, status
        assert st.evse_states(2)[1]["wants"] == wants


def test_station_switch_to_monitor_removes_only_our_profile():
    st = _booted_station()
    cmds = st.commands(2, WALL_MS, True)
    st.on_result("SetChargingProfile", {"status": "Accepted"}, cmds[0][2], 3)
    st.connectors[1] = dict(st.connectors[1], mode="monitor")
    cmds = st.commands(4, WALL_MS, True)
    assert cmds == [("ClearChargingProfile", {"id": 101}, ("unprofile", 1))]
    assert st.commands(5, WALL_MS, True) == []  # in flight
    st.on_result("ClearChargingProfile", {"status": "Accepted"}, cmds[0][2], 6)
    st.set_limit(1, 16000)
    assert st.commands(7, WALL_MS, True) == []  # monitor: nothing more
    st.connectors[1] = dict(st.connectors[1], mode="active")
    cmds = st.commands(8, WALL_MS, True)
    assert cmds[0][0] == "SetChargingProfile" and _limit(cmds[0][1]) == 16.0


def test_parse_iso_utc_inverts_iso_utc_and_reads_offsets():
    from chargemanager.core.ocpp_profiles import iso_utc, parse_iso_utc
    for ms in (0, 951782400000, 1767225600000, 4107542399000):
        assert parse_iso_utc(iso_utc(ms)) == ms
    assert parse_iso_utc("2026-01-01T01:00:00+01:00") == 1767225600000
    assert parse_iso_utc("2025-12-31T19:30:00.250-04:30") == 1767225600250
    assert parse_iso_utc("2026-01-01T00:00:00") == 1767225600000
    for bad in (None, 5, "", "2026-01-01", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00+1", "2026-01-01T00:00:00.Z",
                "yyyy-01-01T00:00:00Z"):
        assert parse_iso_utc(bad) is None, bad
