"""docs/configuration.md is generated from the schema; it must not drift."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import gen_config_docs  # noqa: E402


def test_configuration_reference_is_up_to_date():
    with open(os.path.join(ROOT, "docs", "configuration.md"), encoding="utf-8") as f:
        assert f.read() == gen_config_docs.render(), "run: .venv/bin/python tools/gen_config_docs.py"
