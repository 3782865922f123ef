"""Fuzz: fit / evaluate / predict / train_step / layer_statistics: X and y shapes, dtypes and labels, batch_size, seed,
shuffle, clipping, validation data, Python-written modules that break their contract, models whose
output is not batch-first.

Each generated case runs in the shared worker process; see tests/fuzz/harness.py for the oracle.
"""

import pytest

from tests.fuzz.harness import Results, examples_for, run_family
from tests.fuzz.strategies import FAMILIES


def test_fuzz_train(fuzz_worker):
    results = run_family("train", FAMILIES["train"](), examples_for("train"), fuzz_worker, Results())
    if results.failures:
        pytest.fail(results.summary(), pytrace=False)
