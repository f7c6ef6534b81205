"""Configuration schema (one schema validates, fills defaults, describes). Runs under CPython and MicroPython."""

from chargemanager.core.config import default_config, validate_config


def fields(errors):
    return sorted(e["field"] for e in errors)


def test_defaults_are_valid():
    doc = default_config()
    clean, errors = validate_config(doc)
    assert errors == [], errors
    assert clean["site"]["voltage_v"] == 230 and clean["ocpp"]["server"]["port"] == 19520


def test_formula_limits_are_accepted_and_checked():
    clean, errors = validate_config({"site": {"max_power_w": "55000 * AVAIL / 100"}})
    assert errors == [] and clean["site"]["max_power_w"] == "55000 * AVAIL / 100"
    _, errors = validate_config({"site": {"max_power_w": "55000 * (AVAIL"}})
    assert fields(errors) == ["site.max_power_w"] and "position" in errors[0]["error"]


def test_one_message_per_bad_field():
    doc = {"site": {"voltage_v": "230", "mode": "fast"},
           "evses": [{"dev_id": "E1", "address": "box1", "phases": 4}, {"address": "x"}]}
    _, errors = validate_config(doc)
    assert fields(errors) == ["evses[0].phases", "evses[1].dev_id", "site.mode", "site.voltage_v"], errors


def test_duplicate_dev_ids_and_missing_chargebox_id():
    doc = {"evses": [{"dev_id": "E1", "address": "a"}, {"dev_id": "E1", "address": "b"},
                     {"dev_id": "E3", "address": ""}]}
    _, errors = validate_config(doc)
    assert "evses[1].dev_id" in fields(errors)
    doc = {"evses": [{"dev_id": "E3", "address": ""}]}
    _, errors = validate_config(doc)
    assert fields(errors) == ["evses[0].address"]


def test_one_ocpp_endpoint_per_evse_and_modbus_ocpp_id_checked():
    doc = {"evses": [{"dev_id": "E1", "address": "BOX", "id": 1}, {"dev_id": "E2", "address": "BOX", "id": 2},
                     {"dev_id": "E3", "type": "heidelberg_ec", "address": "/dev/ttyUSB0", "id": 1, "ocpp_id": "BOX",
                      "ocpp_connector_id": 2}]}
    _, errors = validate_config(doc)
    assert fields(errors) == ["evses[2]"] and "already used by evses[1]" in errors[0]["error"], errors
    doc["evses"][2]["ocpp_connector_id"] = 3
    assert validate_config(doc)[1] == []
    doc["evses"][2]["ocpp_id"] = "BOX/1"
    _, errors = validate_config(doc)
    assert fields(errors) == ["evses[2].ocpp_id"], errors


def test_unknown_keys_are_kept():
    clean, errors = validate_config({"future_section": {"x": 1}, "site": {"future_key": 2}})
    assert errors == [] and clean["future_section"] == {"x": 1} and clean["site"]["future_key"] == 2


def test_not_an_object():
    _, errors = validate_config([1, 2])
    assert errors and errors[0]["field"] == "(document)"
