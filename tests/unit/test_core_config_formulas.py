"""Formula fields of the configuration, evaluated per tick. Runs under CPython and MicroPython."""

from chargemanager.core.config import validate_config
from chargemanager.core.config_formulas import ConfigFormulas
from chargemanager.core.formula import UnknownName


def lookup_with(values):
    def lookup(name):
        if name in values:
            return values[name]
        raise UnknownName(name)
    return lookup


def config(site=None, evses=None):
    clean, errors = validate_config({"site": site or {}, "evses": evses or []})
    assert errors == [], errors
    return clean


def test_seed_example_follows_avail():
    formulas = ConfigFormulas(config({"max_power_w": "55000 * AVAIL / 100"}))
    for avail, expected in ((0, 0), (50, 27500), (100, 55000)):
        values, errors = formulas.evaluate(lookup_with({"AVAIL": avail}))
        assert errors == {} and values["site"]["max_power_w"] == expected


def test_numbers_and_evse_fields():
    formulas = ConfigFormulas(config({"max_power_w": 11000}, [
        {"dev_id": "E1", "address": "a", "max_current_ma": "TARIF == 1 ? 16000 : 8000", "max_power_w": None}]))
    values, errors = formulas.evaluate(lookup_with({"TARIF": 0}))
    assert values["site"]["max_power_w"] == 11000
    assert values["evses"]["E1"] == {"max_current_ma": 8000, "max_power_w": None}


def test_failures_are_reported_per_field():
    formulas = ConfigFormulas(config({"max_power_w": "55000 * AVAIL / 100", "max_current_ma": "1 / 0"}))
    values, errors = formulas.evaluate(lookup_with({}))
    assert values["site"]["max_power_w"] is None and "AVAIL" in errors["site.max_power_w"]
    assert errors["site.max_current_ma"] == "division by zero"


def test_negative_is_clamped_and_reported():
    formulas = ConfigFormulas(config({"max_power_w": "AVAIL - 100"}))
    values, errors = formulas.evaluate(lookup_with({"AVAIL": 50}))
    assert values["site"]["max_power_w"] == 0 and "negative" in errors["site.max_power_w"]
