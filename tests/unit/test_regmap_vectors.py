"""Decode recorded raw register words per model (tests/vectors/regmaps/<model>/*.json).

A vector lists the blocks as read from the device (function code, start address, words) and the canonical
values expected. The planned reads must be exactly the recorded blocks: that also pins the block plan.
"""
import importlib
import json
import pathlib

import pytest

from chargemanager.core import regmap
from chargemanager.devices.index import MODELS

VECTORS = sorted((pathlib.Path(__file__).resolve().parents[1] / "vectors" / "regmaps").glob("*/*.json"))


def test_every_model_has_a_vector():
    assert {p.parent.name for p in VECTORS} == set(MODELS)


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.parent.name + "/" + p.stem)
def test_vector_decodes(path):
    vec = json.loads(path.read_text())
    assert vec["model"] == path.parent.name
    mod = importlib.import_module(MODELS[vec["model"]])
    plan = regmap.plan_reads(mod.META, mod.REGMAP)
    recorded = {(b["function_code"], b["address"]): b["words"] for b in vec["blocks"]}
    assert sorted((fc, start) for fc, start, _, _ in plan) == sorted(recorded), "plan differs from the recorded reads"
    got = {}
    for block in plan:
        words = recorded[(block[0], block[1])]
        assert len(words) == block[2]
        got.update(regmap.decode_block(mod.META, block, words))
    for quantity, value in vec["expected"].items():
        assert got[quantity] == value, quantity
