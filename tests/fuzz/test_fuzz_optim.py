"""Fuzz: optimizers (hyperparameters, steps, state_dict loading), lr schedulers and gradient clipping.

Each generated case runs in the shared worker process; see tests/fuzz/harness.py for the oracle.
"""

import pytest

from tests.fuzz.harness import Results, examples_for, run_family
from tests.fuzz.strategies import FAMILIES


def test_fuzz_optim(fuzz_worker):
    results = run_family("optim", FAMILIES["optim"](), examples_for("optim"), fuzz_worker, Results())
    if results.failures:
        pytest.fail(results.summary(), pytrace=False)
