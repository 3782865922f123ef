"""Fuzz: fastnn.load on truncated, corrupted and crafted model files (huge declared sizes, zip bombs,
lying .npy headers).

Each generated case runs in the shared worker process; see tests/fuzz/harness.py for the oracle.
"""

import pytest

from tests.fuzz.harness import Results, examples_for, run_family
from tests.fuzz.strategies import FAMILIES


def test_fuzz_io(fuzz_worker):
    results = run_family("io", FAMILIES["io"](), examples_for("io"), fuzz_worker, Results())
    if results.failures:
        pytest.fail(results.summary(), pytrace=False)
