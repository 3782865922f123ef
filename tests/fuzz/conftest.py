"""One fuzz worker process per test file (see worker.py), restarted after each crash: a family's
cases do not run after another family's, so that each file's verdicts are deterministic."""

import pytest

from tests.fuzz.worker import Worker


@pytest.fixture(scope="module")
def fuzz_worker():
    w = Worker()
    yield w
    w.close()
