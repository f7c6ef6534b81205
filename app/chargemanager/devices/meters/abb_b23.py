"""ABB B23 / B24 three-phase meter (Modbus RTU; B24 also Modbus TCP through a gateway).

Sources: ABB "B21/B23/B24 user manual", chapter Modbus register map (holding registers, big-endian words);
volkszaehler/mbmd `meters/rs485/abb.go`; openWB `packages/modules/common/b23.py`. Voltages uint32 in 0.1 V,
currents uint32 in 0.01 A, active power int32 in 0.01 W (total first, then L1..L3), frequency uint16 in
0.01 Hz, power factors int16 in 0.001, energies uint64 in 0.01 kWh. Unavailable values read as all ones
(unsigned) or 0x7FFF... (signed): `na_markers` turns them into "unknown".
"""

META = {
    "vendor": "ABB",
    "model": "B23/B24",
    "kind": "meter",
    "transports": ("rtu", "tcp"),
    "default_unit_id": 1,
    "serial": {"baud": 19200, "parity": "E", "stopbits": 1},
    "tcp_port": 502,
    "max_regs_per_read": 64,
    "max_gap_regs": 16,
    "silent_interval_ms": 20,
    "timeout_ms": 300,
    "address_base": 0,
    "na_markers": True,
    "capabilities": ("phase_currents", "phase_voltages", "phase_power", "energy"),
}

REGMAP = (
    ("import_wh", 3, 0x5000, "u64", "msw", 0.01, "kWh"),
    ("export_wh", 3, 0x5004, "u64", "msw", 0.01, "kWh"),
    ("voltage_l1_mv", 3, 0x5B00, "u32", "msw", 0.1, "V"),
    ("voltage_l2_mv", 3, 0x5B02, "u32", "msw", 0.1, "V"),
    ("voltage_l3_mv", 3, 0x5B04, "u32", "msw", 0.1, "V"),
    ("current_l1_ma", 3, 0x5B0C, "u32", "msw", 0.01, "A"),
    ("current_l2_ma", 3, 0x5B0E, "u32", "msw", 0.01, "A"),
    ("current_l3_ma", 3, 0x5B10, "u32", "msw", 0.01, "A"),
    ("power_w", 3, 0x5B14, "i32", "msw", 0.01, "W"),
    ("power_l1_w", 3, 0x5B16, "i32", "msw", 0.01, "W"),
    ("power_l2_w", 3, 0x5B18, "i32", "msw", 0.01, "W"),
    ("power_l3_w", 3, 0x5B1A, "i32", "msw", 0.01, "W"),
    ("frequency_mhz", 3, 0x5B2C, "u16", "msw", 0.01, "Hz"),
    ("power_factor_permille", 3, 0x5B3A, "i16", "msw", 0.001, "ratio"),
    ("power_factor_l1_permille", 3, 0x5B3B, "i16", "msw", 0.001, "ratio"),
    ("power_factor_l2_permille", 3, 0x5B3C, "i16", "msw", 0.001, "ratio"),
    ("power_factor_l3_permille", 3, 0x5B3D, "i16", "msw", 0.001, "ratio"),
)
