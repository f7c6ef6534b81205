"""core.regmap: block planning, decoding and encoding (plain asserts: also runs under MicroPython)."""
from chargemanager.core import regmap

META = {"max_regs_per_read": 10, "max_gap_regs": 2, "na_markers": False}


def row(q, fc, addr, typ="u16", order="msw", scale=1, unit="W"):
    return (q, fc, addr, typ, order, scale, unit)


def test_plan_merges_contiguous_rows_into_one_block():
    rows = (row("power_l1_w", 4, 0, "u32"), row("power_l2_w", 4, 2, "u32"), row("power_l3_w", 4, 4, "u32"))
    blocks = regmap.plan_reads(META, rows)
    assert [(b[0], b[1], b[2]) for b in blocks] == [(4, 0, 6)]


def test_plan_splits_on_function_code_gap_and_size():
    rows = (row("power_w", 4, 0, "u32"), row("power_l1_w", 4, 5, "u32"),  # gap 3 > 2: new block
            row("power_l2_w", 4, 7, "u32"), row("power_l3_w", 4, 11, "u32"),  # hole of 2 allowed: 5..13
            row("import_wh", 3, 0, "u32", unit="Wh"))  # other function code
    blocks = regmap.plan_reads(META, rows)
    assert [(b[0], b[1], b[2]) for b in blocks] == [(3, 0, 2), (4, 0, 2), (4, 5, 8)]


def test_plan_respects_max_registers_per_read():
    rows = tuple(row("power_l%d_w" % (i + 1), 4, 4 * i, "u32") for i in range(3))
    meta = {"max_regs_per_read": 6, "max_gap_regs": 10, "na_markers": False}
    blocks = regmap.plan_reads(meta, rows)
    assert [(b[1], b[2]) for b in blocks] == [(0, 6), (8, 2)]


def test_plan_only_requested_quantities():
    rows = (row("power_w", 4, 0), row("power_l1_w", 4, 50))
    assert [(b[1], b[2]) for b in regmap.plan_reads(META, rows, ("power_l1_w",))] == [(50, 1)]


def test_decode_signed_and_word_order():
    r_msw = row("power_w", 4, 0, "i32", "msw")
    r_lsw = row("power_w", 4, 0, "i32", "lsw")
    assert regmap.decode_row(META, r_msw, [0xFFFF, 0xFF38]) == -200
    assert regmap.decode_row(META, r_lsw, [0xFF38, 0xFFFF]) == -200


def test_decode_float_scaled_to_milliamps_and_nan_is_unknown():
    r = row("current_l1_ma", 4, 6, "f32", unit="A")
    assert regmap.decode_row(META, r, [0x4120, 0x0000]) == 10000  # 10.0 A
    assert regmap.decode_row(META, r, [0x7FC0, 0x0000]) is None


def test_decode_na_marker_only_where_the_model_has_them():
    r = row("voltage_l1_mv", 3, 0, "u32", scale=0.1, unit="V")
    assert regmap.decode_row({"na_markers": True}, r, [0xFFFF, 0xFFFF]) is None
    assert regmap.decode_row({"na_markers": False}, r, [0x0000, 0x08FD]) == 230100


def test_encode_rounds_down_and_checks_range():
    w = {"function_code": 16, "address": 261, "type": "u16", "word_order": "msw", "scale": 0.1, "unit": "A"}
    assert regmap.encode_write(w, 16000) == (16, 261, [160])
    assert regmap.encode_write(w, 6099) == (16, 261, [60])
    amps = {"function_code": 6, "address": 528, "type": "u16", "word_order": "msw", "scale": 1, "unit": "A"}
    assert regmap.encode_write(amps, 6999) == (6, 528, [6])
    coil = {"function_code": 5, "address": 400, "type": "bit", "word_order": "msw", "scale": 1, "unit": "flag"}
    assert regmap.encode_write(coil, 1) == (5, 400, [True])
    try:
        regmap.encode_write(coil, 2)
        assert False, "2 is not a coil value"
    except ValueError as e:
        assert "out of range" in str(e)
    try:
        regmap.encode_write(w, -1)
        assert False, "negative setpoint accepted"
    except ValueError as e:
        assert "non-negative" in str(e)


def test_encode_two_register_value_low_word_first():
    w = {"function_code": 16, "address": 10, "type": "u32", "word_order": "lsw", "scale": 1, "unit": "ms"}
    assert regmap.encode_write(w, 0x12345) == (16, 10, [0x2345, 0x0001])


def test_iec_state_lookup():
    assert regmap.iec_state({2: "A", 6: "C"}, 6) == "C"
    assert regmap.iec_state({2: "A"}, 99) is None
