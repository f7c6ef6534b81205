"""cFos Power Brain wallbox / controller (Modbus TCP port 4701 or RTU; EVSE at unit id 1).

Sources: https://www.cfos-emobility.de/en/cfos-power-brain/modbus-registers.htm; evcc `charger/cfos.go`.
Holding registers (FC03, write FC06): 8058 energy (uint64, Wh), 8062 power (int32, W), 8064/8066/8068 phase
currents (int32, 0.1 A), 8092 charging state, 8093 charging current limit (0.1 A), 8094 charging enable (0/1),
8112 meter present. The manual states that only charging_cur_limit (8093), charging_enable (8094),
fixed_current, disconnect_cp (8086), relay_select (8087) and relay2 are kept in RAM; every other write goes to
flash and wears it out, so they are listed in `flash_registers` and never written by this manager. Serial
settings for RTU are set in the box's web UI; 9600 8N1 is assumed as default.
"""

META = {
    "vendor": "cFos",
    "model": "Power Brain",
    "kind": "charger",
    "transports": ("tcp", "rtu"),
    "default_unit_id": 1,
    "tcp_port": 4701,
    "serial": {"baud": 9600, "parity": "N", "stopbits": 1},
    "max_regs_per_read": 60,
    "max_gap_regs": 30,
    "silent_interval_ms": 10,
    "timeout_ms": 500,
    "address_base": 0,
    "na_markers": False,
    "current_min_ma": 6000,
    "current_max_ma": 32000,
    "stop_by": "enable_register",
    "flash_registers": (8040, 8042, 8044, 8045, 8046, 8047, 8113),
    "capabilities": ("phase_currents", "energy"),
}

REGMAP = (
    ("import_wh", 3, 8058, "u64", "msw", 1, "Wh"),
    ("power_w", 3, 8062, "i32", "msw", 1, "W"),
    ("current_l1_ma", 3, 8064, "i32", "msw", 0.1, "A"),
    ("current_l2_ma", 3, 8066, "i32", "msw", 0.1, "A"),
    ("current_l3_ma", 3, 8068, "i32", "msw", 0.1, "A"),
    ("state_code", 3, 8092, "u16", "msw", 1, "code"),
    ("current_limit_ma", 3, 8093, "u16", "msw", 0.1, "A"),
    ("enabled", 3, 8094, "u16", "msw", 1, "flag"),
    ("meter_present", 3, 8112, "u16", "msw", 1, "flag"),
)

WRITES = {
    "current_limit": {"function_code": 6, "address": 8093, "type": "u16", "word_order": "msw",
                      "scale": 0.1, "unit": "A", "ram_only": True, "when": "cyclic"},
    "enable": {"function_code": 6, "address": 8094, "type": "u16", "word_order": "msw",
               "scale": 1, "unit": "flag", "ram_only": True, "when": "cyclic"},
}

STATUS = {
    0: "A",  # waiting for a vehicle
    1: "B",  # vehicle detected
    2: "C",  # charging
    3: "D",  # charging with ventilation
    4: "E",  # no power / pilot error
    5: "F",  # over-temperature or fault
}
