"""One fuzz worker process for the whole session (see worker.py); it is restarted after each crash."""

import pytest

from tests.fuzz.worker import Worker


@pytest.fixture(scope="session")
def fuzz_worker():
    w = Worker()
    yield w
    w.close()
