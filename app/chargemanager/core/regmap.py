"""Register tables -> block reads, raw words -> canonical quantities, setpoints -> register writes.

Pure: no clock, no I/O. Units: every decoded value is an integer in the canonical unit of its quantity
(`core.quantities`: mA, mV, W, Wh, mHz, per mille, milli-degC, ms; `code`/`flag` raw). A value the device
marks as unavailable (NaN float, ABB all-ones markers) decodes to None, never to 0. A setpoint is encoded
rounding down, so the device is never told more than the allocation.

Table row: (quantity, function_code, address, type, word_order, scale, unit); the device value in `unit` is
raw * scale. Function codes: 1 coils, 2 discrete inputs, 3 holding, 4 input registers.
"""

import struct

from chargemanager.core.quantities import QUANTITIES, UNIT_FACTORS, IEC_STATES, TYPE_WORDS, WORD_ORDERS

READ_FCS = (1, 2, 3, 4)
WRITE_FCS = (5, 6, 15, 16)
META_REQUIRED = ("vendor", "model", "kind", "transports", "default_unit_id", "max_regs_per_read",
                 "max_gap_regs", "silent_interval_ms", "timeout_ms", "address_base", "na_markers")
KINDS = ("meter", "charger", "io")
TRANSPORTS = ("rtu", "tcp")
WRITE_KEYS = ("function_code", "address", "type", "word_order", "scale", "unit", "ram_only", "when")

_RANGES = {"u16": (0, 0xFFFF), "i16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF),
           "i32": (-0x80000000, 0x7FFFFFFF), "bit": (0, 1), "u8lo": (0, 0xFF), "u64": (0, 0xFFFFFFFFFFFFFFFF)}


def factor(row_unit, quantity):
    """Multiplier from the device unit to the canonical unit of `quantity`, or None if they do not fit."""
    canon = QUANTITIES.get(quantity)
    if canon is None:
        return None
    return UNIT_FACTORS.get((row_unit, canon))


def check_table(meta, regmap, writes=None, status=None):
    """Lint one model table; returns a list of error strings (empty = fine)."""
    errors = []
    for key in META_REQUIRED:
        if key not in meta:
            errors.append("META lacks " + key)
    if meta.get("kind") not in KINDS:
        errors.append("META kind must be one of " + ", ".join(KINDS))
    for t in meta.get("transports", ()):
        if t not in TRANSPORTS:
            errors.append("unknown transport " + str(t))
    if "rtu" in meta.get("transports", ()) and "serial" not in meta:
        errors.append("RTU model lacks META serial defaults")
    max_regs = meta.get("max_regs_per_read", 0)
    if not (isinstance(max_regs, int) and 1 <= max_regs <= 125):
        errors.append("max_regs_per_read must be 1..125")
    seen = {}
    for row in regmap:
        if len(row) != 7:
            errors.append("row %r must have 7 fields" % (row,))
            continue
        q, fc, addr, typ, order, scale, unit = row
        where = "row " + str(q)
        if q not in QUANTITIES:
            errors.append(where + ": unknown quantity")
        if q in seen:
            errors.append(where + ": quantity listed twice")
        seen[q] = True
        if fc not in READ_FCS:
            errors.append(where + ": read function code must be 1..4")
        if typ not in TYPE_WORDS:
            errors.append(where + ": unknown type " + str(typ))
        elif (fc in (1, 2)) != (typ == "bit"):
            errors.append(where + ": coils/discrete inputs need type bit and only they")
        elif TYPE_WORDS[typ] > max_regs:
            errors.append(where + ": wider than max_regs_per_read")
        if order not in WORD_ORDERS:
            errors.append(where + ": word order must be msw or lsw")
        if not (isinstance(addr, int) and 0 <= addr <= 0xFFFF):
            errors.append(where + ": address out of 0..65535")
        if not (isinstance(scale, (int, float)) and scale > 0):
            errors.append(where + ": scale must be a positive number")
        if factor(unit, q) is None:
            errors.append(where + ": unit %s does not convert to %s" % (unit, QUANTITIES.get(q)))
    rows = sorted([r for r in regmap if len(r) == 7 and r[3] in TYPE_WORDS], key=lambda r: (r[1], r[2]))
    for a, b in zip(rows, rows[1:]):
        if a[1] == b[1] and a[2] + TYPE_WORDS[a[3]] > b[2]:
            errors.append("rows %s and %s overlap" % (a[0], b[0]))
    kind = meta.get("kind")
    if kind == "charger":
        errors.extend(_check_charger(meta, regmap, writes, status))
    elif writes:
        errors.append("only chargers have WRITES")
    return errors


def _check_charger(meta, regmap, writes, status):
    errors = []
    for key in ("current_min_ma", "current_max_ma", "stop_by", "flash_registers"):
        if key not in meta:
            errors.append("charger META lacks " + key)
    if not writes or "current_limit" not in writes:
        errors.append("charger lacks WRITES current_limit")
        return errors
    if meta.get("stop_by") == "enable_register" and "enable" not in writes:
        errors.append("stop_by enable_register needs WRITES enable")
    if meta.get("stop_by") not in ("zero_current", "enable_register"):
        errors.append("stop_by must be zero_current or enable_register")
    flash = meta.get("flash_registers", ())
    for name in writes:
        w = writes[name]
        where = "write " + name
        for key in WRITE_KEYS:
            if key not in w:
                errors.append(where + " lacks " + key)
        if any(key not in w for key in WRITE_KEYS):
            continue
        if w["function_code"] not in WRITE_FCS:
            errors.append(where + ": function code must be 5, 6, 15 or 16")
        if w["type"] not in _RANGES or TYPE_WORDS.get(w["type"], 9) > 2:
            errors.append(where + ": type must be a 1- or 2-register type or bit")
        if w["function_code"] == 6 and TYPE_WORDS.get(w["type"]) != 1:
            errors.append(where + ": FC06 writes exactly one register")
        if (w["function_code"] in (5, 15)) != (w["type"] == "bit"):
            errors.append(where + ": coil writes need type bit and only they")
        if w["when"] not in ("cyclic", "setup"):
            errors.append(where + ": when must be cyclic or setup")
        if w["when"] == "cyclic" and not w["ram_only"]:
            errors.append(where + ": a cyclic write must go to a RAM-only register")
        if w["address"] in flash:
            errors.append(where + ": writes a flash register")
        if w["unit"] not in [u for (u, c) in UNIT_FACTORS]:
            errors.append(where + ": unknown unit " + str(w["unit"]))
    if not status:
        errors.append("charger lacks STATUS")
    else:
        for code in status:
            if not isinstance(code, int) or status[code] not in IEC_STATES:
                errors.append("STATUS %r must map an int code to A..F" % (code,))
    if "state_code" not in [r[0] for r in regmap]:
        errors.append("charger REGMAP lacks state_code")
    return errors


def plan_reads(meta, regmap, quantities=None):
    """Fewest block reads covering the rows (all, or only `quantities`) within the model's limits.

    Returns a list of (function_code, start_address, register_count, rows). Greedy left-to-right per function
    code is optimal here: a block may grow while it stays within max_regs_per_read and each hole between two
    rows is at most max_gap_regs.
    """
    max_regs = meta["max_regs_per_read"]
    max_gap = meta["max_gap_regs"]
    rows = [r for r in regmap if quantities is None or r[0] in quantities]
    rows.sort(key=lambda r: (r[1], r[2]))
    blocks = []
    cur = None
    for r in rows:
        end = r[2] + TYPE_WORDS[r[3]]
        if cur is not None and cur[0] == r[1] and r[2] - cur[2] <= max_gap and end - cur[1] <= max_regs:
            cur[2] = max(cur[2], end)
            cur[3].append(r)
            continue
        if cur is not None:
            blocks.append((cur[0], cur[1], cur[2] - cur[1], tuple(cur[3])))
        cur = [r[1], r[2], end, [r]]
    if cur is not None:
        blocks.append((cur[0], cur[1], cur[2] - cur[1], tuple(cur[3])))
    return blocks


def _join(words, order):
    if order == "lsw":
        words = list(reversed(words))
    v = 0
    for w in words:
        v = (v << 16) | (w & 0xFFFF)
    return v


def _raw(typ, order, words, na_markers):
    """Integer or float device value of one field, or None when unavailable."""
    if typ == "bit":
        return 1 if words[0] else 0
    if typ == "u8lo":
        return words[0] & 0xFF
    v = _join(words, order)
    bits = 16 * TYPE_WORDS[typ]
    if typ == "f32":
        f = struct.unpack(">f", struct.pack(">I", v))[0]
        if f != f or f in (float("inf"), float("-inf")):
            return None
        return f
    if na_markers:
        if typ[0] == "u" and v == (1 << bits) - 1:
            return None
        if typ[0] == "i" and v == (1 << (bits - 1)) - 1:
            return None
    if typ[0] == "i" and v >= 1 << (bits - 1):
        v -= 1 << bits
    return v


def decode_row(meta, row, words):
    """Canonical integer value of one table row from its raw words (None = unavailable)."""
    q, fc, addr, typ, order, scale, unit = row
    raw = _raw(typ, order, words, meta.get("na_markers", False))
    if raw is None:
        return None
    return int(round(raw * (scale * factor(unit, q))))


def decode_block(meta, block, words):
    """Decode one planned block: `words` are the registers (or bits) read from block start; -> {quantity: value}."""
    fc, start, count, rows = block
    if len(words) < count:
        raise ValueError("block at %d: got %d registers, expected %d" % (start, len(words), count))
    out = {}
    for row in rows:
        off = row[2] - start
        out[row[0]] = decode_row(meta, row, words[off:off + TYPE_WORDS[row[3]]])
    return out


def encode_write(write, value):
    """(function_code, address, values) for a WRITES entry and a canonical value (mA, ms, flag, code).

    values is a list of 16-bit words, or [bool] for a coil. Rounds down. ValueError if out of the register's range.
    """
    mult = write["scale"] * UNIT_FACTORS[(write["unit"], _canon_of(write["unit"]))]
    if not isinstance(value, int) or value < 0:
        raise ValueError("setpoint must be a non-negative integer, got %r" % (value,))
    raw = int((value + 1e-9) // mult) if mult != 1 else value
    lo, hi = _RANGES[write["type"]]
    if raw < lo or raw > hi:
        raise ValueError("value %d out of range for %s register %d" % (value, write["type"], write["address"]))
    typ = write["type"]
    if typ == "bit":
        return write["function_code"], write["address"], [bool(raw)]
    if TYPE_WORDS[typ] == 1:
        return write["function_code"], write["address"], [raw & 0xFFFF]
    words = [(raw >> 16) & 0xFFFF, raw & 0xFFFF]
    if write["word_order"] == "lsw":
        words.reverse()
    return write["function_code"], write["address"], words


def _canon_of(unit):
    for (u, c) in UNIT_FACTORS:
        if u == unit:
            return c
    raise ValueError("unknown unit " + str(unit))


def iec_state(status, code):
    """IEC 61851 state letter for a device status code, or None for an unknown code."""
    if status is None or code is None:
        return None
    return status.get(code)
