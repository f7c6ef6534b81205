"""Eastron SDM630 / SDM630MCT three-phase meter (Modbus RTU).

Sources: Eastron "SDM630 Modbus Protocol" (input registers, IEEE-754 float32, high word first);
volkszaehler/mbmd `meters/rs485/sdm.go`; openWB `packages/modules/common/sdm.py`. Eastron allows at most
40 parameters (80 registers) per request; reading across unused addresses returns zeros, so one block read
covers 0x0000..0x004B.
"""

META = {
    "vendor": "Eastron",
    "model": "SDM630",
    "kind": "meter",
    "transports": ("rtu",),
    "default_unit_id": 1,
    "serial": {"baud": 9600, "parity": "N", "stopbits": 1},
    "max_regs_per_read": 80,
    "max_gap_regs": 80,
    "silent_interval_ms": 20,
    "timeout_ms": 300,
    "address_base": 0,
    "na_markers": False,
    "capabilities": ("phase_currents", "phase_voltages", "phase_power", "energy"),
}

REGMAP = (
    ("voltage_l1_mv", 4, 0x0000, "f32", "msw", 1, "V"),
    ("voltage_l2_mv", 4, 0x0002, "f32", "msw", 1, "V"),
    ("voltage_l3_mv", 4, 0x0004, "f32", "msw", 1, "V"),
    ("current_l1_ma", 4, 0x0006, "f32", "msw", 1, "A"),
    ("current_l2_ma", 4, 0x0008, "f32", "msw", 1, "A"),
    ("current_l3_ma", 4, 0x000A, "f32", "msw", 1, "A"),
    ("power_l1_w", 4, 0x000C, "f32", "msw", 1, "W"),
    ("power_l2_w", 4, 0x000E, "f32", "msw", 1, "W"),
    ("power_l3_w", 4, 0x0010, "f32", "msw", 1, "W"),
    ("power_factor_l1_permille", 4, 0x001E, "f32", "msw", 1, "ratio"),
    ("power_factor_l2_permille", 4, 0x0020, "f32", "msw", 1, "ratio"),
    ("power_factor_l3_permille", 4, 0x0022, "f32", "msw", 1, "ratio"),
    ("power_w", 4, 0x0034, "f32", "msw", 1, "W"),
    ("apparent_power_va", 4, 0x0038, "f32", "msw", 1, "VA"),
    ("reactive_power_var", 4, 0x003C, "f32", "msw", 1, "var"),
    ("frequency_mhz", 4, 0x0046, "f32", "msw", 1, "Hz"),
    ("import_wh", 4, 0x0048, "f32", "msw", 1, "kWh"),
    ("export_wh", 4, 0x004A, "f32", "msw", 1, "kWh"),
)
