"""Canonical device quantities: the one list every register table draws its names from.

Invariants: every quantity has exactly one canonical unit, and decoded values are integers in that unit
(currents mA, voltages mV, power W, energy Wh, frequency millihertz, power factor per mille, temperature
milli-degC, times ms). `code` and `flag` values are raw integers (a status code, 0/1). The table rows name the
unit the device reports in; `UNIT_FACTORS` says how to reach the canonical unit. This module is pure data.
"""

QUANTITIES = {
    "voltage_l1_mv": "mV", "voltage_l2_mv": "mV", "voltage_l3_mv": "mV",
    "current_l1_ma": "mA", "current_l2_ma": "mA", "current_l3_ma": "mA",
    "power_w": "W", "power_l1_w": "W", "power_l2_w": "W", "power_l3_w": "W",
    "apparent_power_va": "VA", "reactive_power_var": "var",
    "power_factor_permille": "permille",
    "power_factor_l1_permille": "permille", "power_factor_l2_permille": "permille",
    "power_factor_l3_permille": "permille",
    "frequency_mhz": "mHz",
    "import_wh": "Wh", "export_wh": "Wh", "total_wh": "Wh",
    "import_l1_wh": "Wh", "import_l2_wh": "Wh", "import_l3_wh": "Wh",
    "temperature_mdegc": "mdegC",
    # charger state and setpoint read-back
    "state_code": "code", "enabled": "flag", "current_limit_ma": "mA",
    "watchdog_timeout_ms": "ms", "failsafe_current_ma": "mA", "standby_code": "code", "remote_lock": "flag",
    "meter_present": "flag", "vendor_id": "code", "serial_number": "code",
    # switching inputs of an I/O module (1 = contact closed)
    "di_1": "flag", "di_2": "flag", "di_3": "flag", "di_4": "flag",
    "di_5": "flag", "di_6": "flag", "di_7": "flag", "di_8": "flag",
}

# (device unit, canonical unit) -> factor: canonical = round(raw * scale * factor)
UNIT_FACTORS = {
    ("V", "mV"): 1000, ("mV", "mV"): 1,
    ("A", "mA"): 1000, ("mA", "mA"): 1,
    ("W", "W"): 1, ("kW", "W"): 1000,
    ("VA", "VA"): 1, ("var", "var"): 1,
    ("Wh", "Wh"): 1, ("kWh", "Wh"): 1000,
    ("Hz", "mHz"): 1000,
    ("ratio", "permille"): 1000,
    ("degC", "mdegC"): 1000,
    ("ms", "ms"): 1, ("s", "ms"): 1000,
    ("code", "code"): 1, ("flag", "flag"): 1,
}

# IEC 61851-1 control pilot states a STATUS table may map to.
IEC_STATES = ("A", "B", "C", "D", "E", "F")

# Register types and their width in 16-bit registers (coils/discrete inputs: one bit = one "register").
TYPE_WORDS = {"u16": 1, "i16": 1, "u8lo": 1, "u32": 2, "i32": 2, "f32": 2, "u64": 4, "bit": 1}

WORD_ORDERS = ("msw", "lsw")  # msw: high word first (Modbus convention); lsw: low word first (Phoenix)
