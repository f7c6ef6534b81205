"""Heidelberg Energy Control wallbox (Modbus RTU, 19200 baud 8E1, unit id from the box's DIP switches).

Sources: Heidelberg "EC_ModBus_register_table_20210222.pdf" (wallbox.heidelberg.com); evcc
`charger/heidelberg-ec.go` (register numbers only). Input registers (FC04): 5 charging state, 6-8 phase
currents (0.1 A), 9 PCB temperature (0.1 degC, signed), 10-12 phase voltages (V), 14 power (W), 17-18 energy
since installation (uint32, Wh, high word first). Holding registers, written with FC16 only: 257 Modbus
watchdog timeout (ms, 0 = off; after it expires without any request the box falls back to the failsafe
current), 258 standby control (4 = standby off, so the bus stays reachable), 259 remote lock, 261 maximum
current (0.1 A; 0 = no charging; 60..160 = 6..16 A), 262 failsafe current (0.1 A). evcc needs about 100 ms
between requests (evcc issue #15437).
"""

META = {
    "vendor": "Heidelberg",
    "model": "Energy Control",
    "kind": "charger",
    "transports": ("rtu",),
    "default_unit_id": 1,
    "serial": {"baud": 19200, "parity": "E", "stopbits": 1},
    "max_regs_per_read": 20,
    "max_gap_regs": 2,
    "silent_interval_ms": 100,
    "timeout_ms": 300,
    "address_base": 0,
    "na_markers": False,
    "current_min_ma": 6000,
    "current_max_ma": 16000,
    "stop_by": "zero_current",
    "flash_registers": (),
    "capabilities": ("phase_currents", "phase_voltages", "energy", "watchdog", "failsafe_current"),
}

REGMAP = (
    ("state_code", 4, 5, "u16", "msw", 1, "code"),
    ("current_l1_ma", 4, 6, "u16", "msw", 0.1, "A"),
    ("current_l2_ma", 4, 7, "u16", "msw", 0.1, "A"),
    ("current_l3_ma", 4, 8, "u16", "msw", 0.1, "A"),
    ("temperature_mdegc", 4, 9, "i16", "msw", 0.1, "degC"),
    ("voltage_l1_mv", 4, 10, "u16", "msw", 1, "V"),
    ("voltage_l2_mv", 4, 11, "u16", "msw", 1, "V"),
    ("voltage_l3_mv", 4, 12, "u16", "msw", 1, "V"),
    ("power_w", 4, 14, "u16", "msw", 1, "W"),
    ("import_wh", 4, 17, "u32", "msw", 1, "Wh"),
    ("watchdog_timeout_ms", 3, 257, "u16", "msw", 1, "ms"),
    ("standby_code", 3, 258, "u16", "msw", 1, "code"),
    ("current_limit_ma", 3, 261, "u16", "msw", 0.1, "A"),
    ("failsafe_current_ma", 3, 262, "u16", "msw", 0.1, "A"),
)

# when: "cyclic" = every allocation change / refresh; "setup" = once after (re)connect, only if the
# read-back differs. ram_only False means the manual does not promise RAM: never written cyclically.
WRITES = {
    "current_limit": {"function_code": 16, "address": 261, "type": "u16", "word_order": "msw",
                      "scale": 0.1, "unit": "A", "ram_only": True, "when": "cyclic"},
    "watchdog_timeout": {"function_code": 16, "address": 257, "type": "u16", "word_order": "msw",
                         "scale": 1, "unit": "ms", "ram_only": False, "when": "setup", "default": 15000},
    "failsafe_current": {"function_code": 16, "address": 262, "type": "u16", "word_order": "msw",
                         "scale": 0.1, "unit": "A", "ram_only": False, "when": "setup", "default": 0},
    "standby": {"function_code": 16, "address": 258, "type": "u16", "word_order": "msw",
                "scale": 1, "unit": "code", "ram_only": False, "when": "setup", "default": 4},
}

STATUS = {
    2: "A", 3: "A",  # A1/A2: no vehicle
    4: "B", 5: "B",  # B1/B2: vehicle connected, not charging
    6: "C", 7: "C",  # C1/C2: charging (C1 = waiting for current)
    8: "D",          # charging with ventilation
    9: "E",          # error / no pilot
    10: "F",         # locked by remote lock or fault
}
