"""Softmax cross-entropy forward+backward, float32."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from conftest import IMPLS, bench, need, torch


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n,c", [(128, 10), (256, 1000)])
def test_cross_entropy_fwd_bwd(benchmark, rng, impl, n, c):
    need(impl)
    logits = rng.standard_normal((n, c), dtype=np.float32)
    labels = rng.integers(0, c, n)
    if impl in ("fastnn", "numpy"):
        mod = F if impl == "fastnn" else R
        fn = lambda: mod.cross_entropy_forward_backward(logits, labels)  # noqa: E731
    else:
        tz, ty = torch.from_numpy(logits).requires_grad_(), torch.from_numpy(labels)

        def fn():
            tz.grad = None
            loss = torch.nn.functional.cross_entropy(tz, ty)
            loss.backward()
            return loss.item(), tz.grad
    bench(benchmark, f"cross-entropy fwd+bwd {n}x{c}", fn)
    loss, grad = fn()
    want_loss, want_grad = R.cross_entropy_forward_backward(logits, labels)
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-3, atol=1e-6)
