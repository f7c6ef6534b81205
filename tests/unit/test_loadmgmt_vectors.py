"""Runs every load-management scenario in tests/vectors/loadmgmt/*.json through core.tick.

A vector: {"description", "config", "ticks": [{"inputs": {"now_ms", "values", "snapshot"}, "expected": {...}}]}.
Each tick's `inputs` keys replace the previous tick's; missing keys carry over. `expected` is compared as a subset:
only the keys it names are checked (recursively for objects, exactly for lists and numbers).
"""

import json
import os

import pytest

from chargemanager.core.tick import prepare, tick

VECTOR_DIR = os.path.join(os.path.dirname(__file__), "..", "vectors", "loadmgmt")
VECTORS = sorted(name for name in os.listdir(VECTOR_DIR) if name.endswith(".json"))


def _mismatches(expected, actual, path, out):
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            out.append("%s: expected an object, got %r" % (path, actual))
            return
        for key, value in expected.items():
            if key not in actual:
                out.append("%s.%s: missing" % (path, key))
            else:
                _mismatches(value, actual[key], "%s.%s" % (path, key), out)
    elif expected != actual:
        out.append("%s: expected %r, got %r" % (path, expected, actual))


def _config(doc):
    try:
        from chargemanager.core.config import validate_config
    except ImportError:
        return doc
    clean, errors = validate_config(doc)
    assert errors == [], errors
    return clean


def test_vector_directory_has_scenarios():
    assert len(VECTORS) >= 9


@pytest.mark.parametrize("name", VECTORS)
def test_vector(name):
    with open(os.path.join(VECTOR_DIR, name)) as f:
        vector = json.load(f)
    assert vector["description"]
    plan = prepare(_config(vector["config"]))
    state = None
    inputs = {"now_ms": 0, "values": {}, "snapshot": {}}
    problems = []
    for index, step in enumerate(vector["ticks"]):
        inputs.update(step.get("inputs") or {})
        decision, state = tick(plan, inputs["values"], inputs["snapshot"], state, inputs["now_ms"])
        state = type(state).from_dict(json.loads(json.dumps(state.to_dict())))
        _mismatches(step["expected"], decision.to_dict(), "tick[%d]" % index, problems)
    assert problems == [], "\n".join(problems)
