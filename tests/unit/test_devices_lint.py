"""Lint over every device table in devices/index.py: pure literals, known quantities, sane writes."""
import ast
import importlib
import pathlib

import pytest

from chargemanager.core import regmap
from chargemanager.devices.index import MODELS

DEVICES = pathlib.Path(__file__).resolve().parents[2] / "app" / "chargemanager" / "devices"


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_table_passes_lint(model_id):
    mod = importlib.import_module(MODELS[model_id])
    errors = regmap.check_table(mod.META, mod.REGMAP, getattr(mod, "WRITES", None), getattr(mod, "STATUS", None))
    assert errors == []


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_table_is_pure_literal_data_with_cited_source(model_id):
    mod = importlib.import_module(MODELS[model_id])
    assert MODELS[model_id].rsplit(".", 1)[1] == model_id, "file name must equal the model id"
    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    doc = ast.get_docstring(tree)
    assert doc and "Source" in doc, "docstring must cite its sources"
    for node in tree.body[1:]:
        assert isinstance(node, ast.Assign), "only assignments of literals, found %s" % type(node).__name__
        ast.literal_eval(node.value)  # raises for anything but literals


def test_every_table_module_is_registered():
    files = {p.stem for p in DEVICES.glob("*/*.py") if p.stem != "__init__"}
    assert files == set(MODELS)


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_no_write_targets_a_flash_register_cyclically(model_id):
    mod = importlib.import_module(MODELS[model_id])
    for name, w in getattr(mod, "WRITES", {}).items():
        if w["when"] == "cyclic":
            assert w["ram_only"], name
        assert w["address"] not in mod.META.get("flash_registers", ()), name


def test_lint_catches_a_cyclic_flash_write_and_unknown_quantity():
    mod = importlib.import_module(MODELS["cfos_power_brain"])
    writes = dict(mod.WRITES)
    writes["pulses"] = {"function_code": 6, "address": 8042, "type": "u16", "word_order": "msw",
                        "scale": 1, "unit": "code", "ram_only": False, "when": "cyclic"}
    rows = mod.REGMAP + (("volts", 3, 9000, "u16", "msw", 1, "V"),)
    errors = regmap.check_table(mod.META, rows, writes, mod.STATUS)
    assert "write pulses: a cyclic write must go to a RAM-only register" in errors
    assert "write pulses: writes a flash register" in errors
    assert "row volts: unknown quantity" in errors
