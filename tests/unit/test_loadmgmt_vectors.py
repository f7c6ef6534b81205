"""The load-management vectors one test per file under pytest (the runner itself is in test_core_vectors.py)."""

import pytest

from test_core_vectors import run_vector, vector_names


@pytest.mark.parametrize("name", vector_names())
def test_vector(name):
    problems = run_vector(name)
    assert problems == [], "\n".join(problems)
