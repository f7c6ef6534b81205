"""Phoenix Contact EV-CC-AC1-M3-...-ETH charge controller (Wallbe Eco, ESL Walli; Modbus TCP port 502).

Sources: Phoenix Contact EV-CC-AC1-M3 user manual (Modbus register list); evcc `charger/phoenix-ev-eth.go`.
Input registers (FC04): 100 state as an ASCII letter 'A'..'F' in the low byte, 108/110/112 phase voltages,
114/116/118 phase currents, 120 power (int32 W) - all 32-bit with the LOW word first. Coil 400 charging
enable (FC05). Holding 528 maximum current in A (FC06; Wallbe firmware reads it in 0.1 A: set the model
`phoenix_ev_cc_ac1` only for the Phoenix firmware), holding 904 energy (uint32 Wh, low word first).
Unit id 255 (some firmware 180). Currents are integer amperes per evcc's reading of this firmware.
"""

META = {
    "vendor": "Phoenix Contact",
    "model": "EV-CC-AC1-M3-ETH",
    "kind": "charger",
    "transports": ("tcp",),
    "default_unit_id": 255,
    "tcp_port": 502,
    "max_regs_per_read": 125,
    "max_gap_regs": 10,
    "silent_interval_ms": 0,
    "timeout_ms": 500,
    "address_base": 0,
    "na_markers": False,
    "current_min_ma": 6000,
    "current_max_ma": 32000,
    "stop_by": "enable_register",
    "flash_registers": (),
    "capabilities": ("phase_currents", "phase_voltages", "energy"),
}

REGMAP = (
    ("state_code", 4, 100, "u8lo", "msw", 1, "code"),
    ("voltage_l1_mv", 4, 108, "i32", "lsw", 1, "V"),
    ("voltage_l2_mv", 4, 110, "i32", "lsw", 1, "V"),
    ("voltage_l3_mv", 4, 112, "i32", "lsw", 1, "V"),
    ("current_l1_ma", 4, 114, "i32", "lsw", 1, "A"),
    ("current_l2_ma", 4, 116, "i32", "lsw", 1, "A"),
    ("current_l3_ma", 4, 118, "i32", "lsw", 1, "A"),
    ("power_w", 4, 120, "i32", "lsw", 1, "W"),
    ("enabled", 1, 400, "bit", "msw", 1, "flag"),
    ("current_limit_ma", 3, 528, "u16", "msw", 1, "A"),
    ("import_wh", 3, 904, "u32", "lsw", 1, "Wh"),
)

WRITES = {
    "current_limit": {"function_code": 6, "address": 528, "type": "u16", "word_order": "msw",
                      "scale": 1, "unit": "A", "ram_only": True, "when": "cyclic"},
    "enable": {"function_code": 5, "address": 400, "type": "bit", "word_order": "msw",
               "scale": 1, "unit": "flag", "ram_only": True, "when": "cyclic"},
}

STATUS = {65: "A", 66: "B", 67: "C", 68: "D", 69: "E", 70: "F"}  # ASCII 'A'..'F'
