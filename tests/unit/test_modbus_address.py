"""Modbus addresses in the configuration: serial with settings, TCP host:port, and clear errors."""
import pytest

from chargemanager.adapters.modbus_bus import load_model, parse_address


def test_serial_address_with_and_without_settings():
    hec = load_model("heidelberg_ec")
    assert parse_address("/dev/ttyUSB0", hec) == {"kind": "rtu", "device": "/dev/ttyUSB0", "baud": 19200,
                                                  "parity": "E", "stopbits": 1}
    assert parse_address("/dev/ttyAMA0,9600,8,n,2", hec) == {"kind": "rtu", "device": "/dev/ttyAMA0", "baud": 9600,
                                                             "parity": "N", "stopbits": 2}


def test_tcp_address_forms_and_default_port():
    cfos = load_model("cfos_power_brain")
    assert parse_address("192.168.1.60", cfos) == {"kind": "tcp", "host": "192.168.1.60", "port": 4701}
    assert parse_address("tcp://box.local:502", cfos) == {"kind": "tcp", "host": "box.local", "port": 502}


@pytest.mark.parametrize("model_id,address,message", [
    ("heidelberg_ec", "192.168.1.5:502", "no Modbus TCP interface"),       # RTU-only box
    ("phoenix_ev_cc_ac1", "/dev/ttyUSB0", "no Modbus RTU interface"),      # TCP-only controller
    ("eastron_sdm630", "/dev/ttyUSB0,fast", "bad serial settings"),
    ("eastron_sdm630", "/dev/ttyUSB0,9600,7,N,1", "only 8 data bits"),
    ("eastron_sdm630", "/dev/ttyUSB0,9600,8,X,1", "DEVICE[,BAUD"),
    ("abb_b23", "meter.local:http", "host:port"),
    ("abb_b23", "meter.local:70000", "host:port"),
    ("abb_b23", "", "serial device or host:port"),
])
def test_bad_addresses_say_what_is_wrong(model_id, address, message):
    with pytest.raises(ValueError) as err:
        parse_address(address, load_model(model_id))
    assert message in str(err.value)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError) as err:
        load_model("keba_p30")
    assert "unknown device model 'keba_p30'" in str(err.value) and "heidelberg_ec" in str(err.value)


def test_meter_without_address_is_not_polled_but_a_wallbox_needs_one():
    from chargemanager.adapters.modbus_bus import ModbusService
    from chargemanager.adapters.readings import ReadingBoard
    svc = ModbusService.from_config({"meters": [{"dev_id": "M1", "type": "eastron_sdm630", "role": "grid"}]},
                                    ReadingBoard())
    assert svc.owners == []
    with pytest.raises(ValueError) as err:
        ModbusService.from_config({"evses": [{"dev_id": "E1", "type": "heidelberg_ec", "address": ""}]},
                                  ReadingBoard())
    assert str(err.value).startswith("E1: Modbus address must be")
