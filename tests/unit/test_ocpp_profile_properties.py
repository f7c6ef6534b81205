"""Property tests (hypothesis): every profile the policy builds is a valid OCPP 1.6 SetChargingProfile.req (checked
with the official schema) and never grants more than the load management allowed."""

from hypothesis import given, settings, strategies as st

from chargemanager.adapters.ocpp_schemas import Schemas
from chargemanager.core.ocpp_profiles import profile_for

SCHEMAS = Schemas()
CAPS = st.fixed_dictionaries({
    "max_stack_level": st.integers(0, 100),
    "units": st.sampled_from([("A",), ("W",), ("A", "W")]),
    "max_profiles": st.none() | st.integers(0, 100),
    "read": st.booleans(),
})
OPTS = st.fixed_dictionaries({
    "phases": st.integers(1, 3),
    "voltage_v": st.integers(100, 400),
    "stack_level_zero": st.booleans(),
    "unit": st.sampled_from(["auto", "A", "W"]),
    "profile_kind": st.sampled_from(["Absolute", "Relative"]),
})


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 8), st.none() | st.integers(-1000, 80000), CAPS, OPTS, st.integers(0, 4102444800000))
def test_profiles_are_valid_and_never_above_the_grant(connector, limit_ma, caps, opts, wall_ms):
    key, payload = profile_for(connector, limit_ma, caps, opts, wall_ms)
    assert SCHEMAS.validate("call", "SetChargingProfile", payload) is None, payload
    prof = payload["csChargingProfiles"]
    schedule = prof["chargingSchedule"]
    limit = schedule["chargingSchedulePeriod"][0]["limit"]
    granted = max(0, limit_ma or 0)
    if schedule["chargingRateUnit"] == "A":
        assert 0 <= limit * 1000 <= granted + 1e-6
    else:
        assert 0 <= limit <= opts["voltage_v"] * granted * opts["phases"] / 1000.0
    assert prof["stackLevel"] == (0 if opts["stack_level_zero"] else caps["max_stack_level"])
    assert prof["chargingProfilePurpose"] == "TxDefaultProfile" and payload["connectorId"] == connector
    # the change key carries exactly what the box must hear about
    assert key[:3] == (schedule["chargingRateUnit"], limit, prof["stackLevel"])
