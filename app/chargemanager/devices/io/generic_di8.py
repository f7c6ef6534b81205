"""Generic Modbus digital-input module with 8 inputs (discrete inputs 0..7, FC02).

Sources: Modbus Application Protocol V1.1b3 §6.2 (Read Discrete Inputs). Fits common DIN-rail I/O modules
(e.g. Waveshare Modbus RTU IO 8CH, Eletechsup R4DIF08) whose inputs start at address 0; ripple control
receiver and FNN control box contacts are wired to them.
"""

META = {
    "vendor": "generic",
    "model": "8 digital inputs",
    "kind": "io",
    "transports": ("rtu", "tcp"),
    "default_unit_id": 1,
    "serial": {"baud": 9600, "parity": "N", "stopbits": 1},
    "tcp_port": 502,
    "max_regs_per_read": 8,
    "max_gap_regs": 0,
    "silent_interval_ms": 10,
    "timeout_ms": 300,
    "address_base": 0,
    "na_markers": False,
    "capabilities": ("inputs",),
}

REGMAP = (
    ("di_1", 2, 0, "bit", "msw", 1, "flag"),
    ("di_2", 2, 1, "bit", "msw", 1, "flag"),
    ("di_3", 2, 2, "bit", "msw", 1, "flag"),
    ("di_4", 2, 3, "bit", "msw", 1, "flag"),
    ("di_5", 2, 4, "bit", "msw", 1, "flag"),
    ("di_6", 2, 5, "bit", "msw", 1, "flag"),
    ("di_7", 2, 6, "bit", "msw", 1, "flag"),
    ("di_8", 2, 7, "bit", "msw", 1, "flag"),
)
