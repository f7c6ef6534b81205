"""Modbus TCP over loopback: cFos Power Brain and Phoenix Contact EV-CC-AC1 simulated by pymodbus servers on
ephemeral ports, driven by our ModbusService."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
sys.path.insert(0, os.path.dirname(__file__))
from modbus_sim import SimDevice, SimServer  # noqa: E402
from test_modbus_rtu import diag, wait_until  # noqa: E402

from chargemanager.adapters.modbus_bus import ModbusService  # noqa: E402
from chargemanager.adapters.readings import ReadingBoard  # noqa: E402


@pytest.fixture
def tcp():
    cfos = SimDevice("cfos_power_brain", 1, {"state_code": 2, "current_l1_ma": 16000, "current_l2_ma": 16000,
                                             "current_l3_ma": 16000, "power_w": 11000, "import_wh": 42000,
                                             "meter_present": 1})
    phoenix = SimDevice("phoenix_ev_cc_ac1", 255, {"state_code": ord("B"), "voltage_l1_mv": 230000,
                                                   "current_l1_ma": 0, "power_w": 0, "import_wh": 777})
    s1 = SimServer("tcp", [cfos]).start()
    s2 = SimServer("tcp", [phoenix]).start()
    board = ReadingBoard()
    svc = ModbusService.from_config({"evses": [
        {"dev_id": "E1", "type": "cfos_power_brain", "address": "127.0.0.1:%d" % s1.port, "id": 1,
         "poll_interval_ms": 100},
        {"dev_id": "E2", "type": "phoenix_ev_cc_ac1", "address": "tcp://127.0.0.1:%d" % s2.port, "id": 255,
         "poll_interval_ms": 100},
        {"dev_id": "E3", "type": "ocpp16", "address": "BOX1", "id": 1}]}, board)
    svc.start()
    yield svc, board, cfos, phoenix, s1
    svc.stop()
    s1.stop()
    s2.stop()


def test_tcp_readings_decode_for_both_boxes(tcp):
    svc, board, cfos, phoenix, _ = tcp
    e1 = wait_until(lambda: board.get("E1"), what="cFos reading")[0]
    assert e1["state"] == "C" and e1["current_l2_ma"] == 16000 and e1["power_w"] == 11000
    assert e1["import_wh"] == 42000
    e2 = wait_until(lambda: board.get("E2"), what="Phoenix reading")[0]
    assert e2["state"] == "B" and e2["voltage_l1_mv"] == 230000 and e2["import_wh"] == 777
    assert not svc.has("E3"), "an OCPP box has no bus"
    assert len(svc.owners) == 2, "one owner per TCP endpoint"


def test_cfos_setpoints_only_touch_ram_registers(tcp):
    svc, board, cfos, phoenix, _ = tcp
    wait_until(lambda: board.get("E1"))
    svc.set_charge("E1", 13000, True)
    wait_until(lambda: cfos.register(3, 8093) == 130 and cfos.register(3, 8094) == 1, what="13 A enabled")
    svc.set_charge("E1", 13000, False)
    wait_until(lambda: cfos.register(3, 8094) == 0, what="disabled")
    addresses = {a for _, a, _ in cfos.writes}
    assert addresses <= {8093, 8094}, "never a flash register"
    assert {fc for fc, _, _ in cfos.writes} == {6}


def test_phoenix_enable_coil_and_current_in_amps(tcp):
    svc, board, cfos, phoenix, _ = tcp
    wait_until(lambda: board.get("E2"))
    svc.set_charge("E2", 10999, True)  # rounds down to whole amperes
    wait_until(lambda: phoenix.register(3, 528) == 10 and phoenix.register(1, 400) == 1, what="10 A enabled")
    wait_until(lambda: board.get("E2")[0]["enabled"] == 1 and board.get("E2")[0]["current_limit_ma"] == 10000)
    svc.set_charge("E2", 0, False)
    wait_until(lambda: phoenix.register(1, 400) == 0, what="coil off")
    assert phoenix.register(3, 528) == 6, "the limit never goes below the controller's 6 A minimum"


def test_endpoint_gone_moves_box_to_slow_lane(tcp):
    svc, board, cfos, phoenix, s1 = tcp
    wait_until(lambda: board.get("E1"))
    s1.stop()
    wait_until(lambda: diag(svc, "E1")["lane"] == "slow", what="slow lane")
    d = diag(svc, "E1")
    assert d["last_error"] and d["last_good"]["power_w"] == 11000
    assert wait_until(lambda: diag(svc, "E2")["counters"]["ok"] > 5), "the other endpoint keeps working"
