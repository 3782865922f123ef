"""torch is only an oracle here: run it on one thread, so that its OpenMP pool does not compete
with fastnn's on these small 2-core machines (which makes its small ops 10-100x slower)."""

import pytest

from tests.conftest import HAVE_TORCH


@pytest.fixture(autouse=True)
def _torch_single_thread():
    if not HAVE_TORCH:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
