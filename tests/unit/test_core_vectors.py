"""Runs the load-management scenarios in tests/vectors/loadmgmt/*.json (also under MicroPython).

A vector: {"description", "config", "ticks": [{"inputs": {"now_ms", "values", "snapshot"}, "expected": {...}}]}.
Each tick's `inputs` keys replace the previous tick's; missing keys carry over. `expected` is compared as a subset:
only the keys it names are checked (recursively for objects, exactly for lists and numbers). The state goes
through to_dict/json/from_dict between ticks, as a runtime that persists it would do.
"""

import json
import os

from chargemanager.core.config import validate_config
from chargemanager.core.tick import State, prepare, tick


def vector_dir():
    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    return here + "/../vectors/loadmgmt"


def vector_names():
    return sorted([name for name in os.listdir(vector_dir()) if name.endswith(".json")])


def _mismatches(expected, actual, path, out):
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            out.append("%s: expected an object, got %r" % (path, actual))
            return
        for key in expected:
            if key not in actual:
                out.append("%s.%s: missing" % (path, key))
            else:
                _mismatches(expected[key], actual[key], "%s.%s" % (path, key), out)
    elif expected != actual:
        out.append("%s: expected %r, got %r" % (path, expected, actual))


def run_vector(name):
    """Problems found running one vector file (an empty list when it passes)."""
    with open(vector_dir() + "/" + name) as f:
        vector = json.load(f)
    problems = []
    if not vector.get("description"):
        problems.append("no description")
    config, errors = validate_config(vector["config"])
    if errors:
        return ["config: %r" % (errors,)]
    plan = prepare(config)
    state = None
    inputs = {"now_ms": 0, "values": {}, "snapshot": {}}
    for index, step in enumerate(vector["ticks"]):
        inputs.update(step.get("inputs") or {})
        decision, state = tick(plan, inputs["values"], inputs["snapshot"], state, inputs["now_ms"])
        state = State.from_dict(json.loads(json.dumps(state.to_dict())))
        _mismatches(step["expected"], decision.to_dict(), "%s tick[%d]" % (name, index), problems)
    return problems


def test_every_vector():
    names = vector_names()
    assert len(names) >= 9
    problems = []
    for name in names:
        problems.extend(run_vector(name))
    assert problems == [], "\n".join(problems)
