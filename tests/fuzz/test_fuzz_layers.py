"""Fuzz: nn layers (constructor arguments, inputs, backward) and the _C layer objects (bind_params,
forward, backward, state).

Each generated case runs in the shared worker process; see tests/fuzz/harness.py for the oracle.
"""

import pytest

from tests.fuzz.harness import Results, examples_for, run_family
from tests.fuzz.strategies import FAMILIES


def test_fuzz_layers(fuzz_worker):
    results = run_family("layers", FAMILIES["layers"](), examples_for("layers"), fuzz_worker, Results())
    if results.failures:
        pytest.fail(results.summary(), pytrace=False)
