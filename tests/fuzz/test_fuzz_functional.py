"""Fuzz: fastnn.functional and the _C kernels: dtypes, ranks 0-4, empty and huge (broadcast) extents,
layouts, NaN/inf, scalars for arrays, out= aliasing.

Each generated case runs in the shared worker process; see tests/fuzz/harness.py for the oracle.
"""

import pytest

from tests.fuzz.harness import Results, examples_for, run_family
from tests.fuzz.strategies import FAMILIES


def test_fuzz_functional(fuzz_worker):
    results = run_family("functional", FAMILIES["functional"](), examples_for("functional"), fuzz_worker, Results())
    if results.failures:
        pytest.fail(results.summary(), pytrace=False)
