"""Eastron SDM72D-M (V2) three-phase meter (Modbus RTU).

Sources: Eastron "SDM72D-M-2 Modbus protocol" (input registers, IEEE-754 float32, high word first);
volkszaehler/mbmd `meters/rs485/sdm72.go` (power 0x0034, import 0x0048, export 0x004A, total 0x0156);
openWB `packages/modules/common/sdm.py`: the SDM72 refuses large bulk reads, so read at most 18-20
registers per request and keep about 100 ms of silence between requests. The V2 adds phase voltages and
currents at the SDM630 addresses; the first SDM72DM answers those reads with an exception (the block is
then reported as an error for that read only).
"""

META = {
    "vendor": "Eastron",
    "model": "SDM72D-M",
    "kind": "meter",
    "transports": ("rtu",),
    "default_unit_id": 1,
    "serial": {"baud": 9600, "parity": "N", "stopbits": 1},
    "max_regs_per_read": 18,
    "max_gap_regs": 0,
    "silent_interval_ms": 100,
    "timeout_ms": 500,
    "address_base": 0,
    "na_markers": False,
    "capabilities": ("phase_currents", "phase_voltages", "energy"),
}

REGMAP = (
    ("voltage_l1_mv", 4, 0x0000, "f32", "msw", 1, "V"),
    ("voltage_l2_mv", 4, 0x0002, "f32", "msw", 1, "V"),
    ("voltage_l3_mv", 4, 0x0004, "f32", "msw", 1, "V"),
    ("current_l1_ma", 4, 0x0006, "f32", "msw", 1, "A"),
    ("current_l2_ma", 4, 0x0008, "f32", "msw", 1, "A"),
    ("current_l3_ma", 4, 0x000A, "f32", "msw", 1, "A"),
    ("power_w", 4, 0x0034, "f32", "msw", 1, "W"),
    ("import_wh", 4, 0x0048, "f32", "msw", 1, "kWh"),
    ("export_wh", 4, 0x004A, "f32", "msw", 1, "kWh"),
    ("total_wh", 4, 0x0156, "f32", "msw", 1, "kWh"),
)
