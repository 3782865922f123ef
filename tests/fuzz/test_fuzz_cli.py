"""Fuzz: python -m fastnn train / info with bad arguments (run in the worker through
fastnn.__main__.main, on the bundled data).

Each generated case runs in the shared worker process; see tests/fuzz/harness.py for the oracle.
"""

import pytest

from tests.fuzz.harness import Results, examples_for, run_family
from tests.fuzz.strategies import FAMILIES


def test_fuzz_cli(fuzz_worker):
    results = run_family("cli", FAMILIES["cli"](), examples_for("cli"), fuzz_worker, Results())
    if results.failures:
        pytest.fail(results.summary(), pytrace=False)
