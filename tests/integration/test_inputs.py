"""Switching inputs: file source and a Modbus I/O module over a socat pty pair; fail-safe "active"."""
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
sys.path.insert(0, os.path.dirname(__file__))
from modbus_sim import PtyPair, SimDevice, SimServer  # noqa: E402
from test_modbus_rtu import wait_until  # noqa: E402

from chargemanager.adapters.inputs import FileSource, GpioSource, Input, InputError, InputService  # noqa: E402
from chargemanager.adapters.modbus_bus import ModbusService  # noqa: E402
from chargemanager.adapters.readings import ReadingBoard  # noqa: E402


def test_file_source_formats_and_failsafe(tmp_path):
    plain = tmp_path / "in1"
    plain.write_text("1\n")
    assert FileSource(str(plain)).read() == 1
    js = tmp_path / "inputs.json"
    js.write_text('{"IN1": 0, "IN2": 1}')
    assert FileSource(str(js), "IN2").read() == 1
    kv = tmp_path / "inputs.txt"
    kv.write_text("IN1=0\nIN3=1\n")
    assert FileSource(str(kv), "IN3").read() == 1
    board = ReadingBoard()
    wake = threading.Event()
    svc = InputService([Input("IN1", FileSource(str(plain))), Input("IN2", FileSource(str(kv), "IN1"), invert=True),
                        Input("IN3", FileSource(str(tmp_path / "missing")))], board, wake)
    svc.poll_once()
    assert board.get("IN1")[0] == {"value": 1, "ok": 1}
    assert board.get("IN2")[0] == {"value": 1, "ok": 1}, "inverted 0"
    assert board.get("IN3")[0] == {"value": 1, "ok": 0}, "unreadable: command active"
    wake.clear()
    plain.write_text("0")
    assert svc.poll_once() is True and wake.is_set(), "a change wakes the control loop"
    plain.write_text("maybe")
    svc.poll_once()
    status = dict((s["name"], s) for s in svc.status())
    assert status["IN1"]["value"] == 1 and "expected 0 or 1" in status["IN1"]["error"]


def test_gpio_line_that_cannot_be_read_fails_safe():
    """No such chip here (and no gpio-sim in this kernel): the input reads active, with the reason."""
    inp = Input("IN1", GpioSource("/dev/gpiochip-none", 3))
    inp.read()
    assert inp.value == 1 and not inp.ok and inp.error
    try:
        GpioSource("/dev/gpiochip-none", 3).read()
        assert False, "no GPIO here"
    except InputError:
        pass


def test_modbus_io_module_inputs_and_failsafe_when_silent():
    with PtyPair() as pty:
        module = SimDevice("generic_di8", 7, {"di_3": 0})
        server = SimServer("rtu", [module], port=pty.a).start()
        board = ReadingBoard()
        config = {"inputs": [{"name": "IN1", "source": "modbus", "address": pty.b + ",9600,8,N,1", "id": 7,
                              "channel": 3, "poll_interval_ms": 50, "max_age_ms": 1000},
                             {"name": "IN2", "source": "modbus", "address": pty.b + ",9600,8,N,1", "id": 7,
                              "channel": 4}]}
        svc = ModbusService.from_config(config, board)
        assert len(svc.owners) == 1 and len(svc.owners[0].devices) == 1, "one module, read once for both inputs"
        inputs = InputService.from_config(config, board, io_dev_ids=svc.io_dev_ids)
        svc.start()
        try:
            wait_until(lambda: inputs.poll_once() is not None and board.get("IN1")[0]["ok"] == 1, what="module read")
            assert board.get("IN1")[0]["value"] == 0
            module.set_values({"di_3": 1})
            wait_until(lambda: (inputs.poll_once(), board.get("IN1")[0]["value"])[1] == 1, what="contact closed")
            module.set_values({"di_3": 0})
            wait_until(lambda: (inputs.poll_once(), board.get("IN1")[0]["value"])[1] == 0, what="contact open")
            module.silent = True  # the module stops answering: its reading ages out, the input counts as active
            wait_until(lambda: (inputs.poll_once(), board.get("IN1")[0])[1] == {"value": 1, "ok": 0},
                       what="fail-safe active")
        finally:
            svc.stop()
            server.stop()
