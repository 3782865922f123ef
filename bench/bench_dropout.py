"""Dropout p=0.5 on (256, 4096) float32: forward, and forward+backward."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from conftest import IMPLS, bench, need, torch


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_dropout(benchmark, rng, impl, backward):
    need(impl)
    x = rng.standard_normal((256, 4096), dtype=np.float32)
    g = rng.standard_normal((256, 4096), dtype=np.float32)
    step = iter(range(10**9))
    if impl in ("fastnn", "numpy"):
        mod = F if impl == "fastnn" else R

        def fn():
            y, mask = mod.dropout_forward(x, 0.5, 0, next(step))
            return mod.dropout_backward(g, mask, 0.5) if backward else y
    else:
        tx, tg = torch.from_numpy(x).requires_grad_(backward), torch.from_numpy(g)

        def fn():
            y = torch.nn.functional.dropout(tx, 0.5, True)
            if backward:
                tx.grad = None
                y.backward(tg)
                return tx.grad
            return y
    bench(benchmark, f"dropout p=0.5 {'fwd+bwd' if backward else 'fwd'} 256x4096", fn)
    out = fn()
    out = out.detach().numpy() if torch is not None and isinstance(out, torch.Tensor) else np.asarray(out)
    assert 0.48 < float((out != 0).mean()) < 0.52
