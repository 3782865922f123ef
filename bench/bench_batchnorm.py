"""Batch norm forward+backward in training mode, float32 (BENCH.md micro: BN1d and BN2d)."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from conftest import IMPLS, bench, need, torch

SHAPES = [(256, 1024), (64, 64, 28, 28)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batchnorm_fwd_bwd(benchmark, rng, shape, impl):
    need(impl)
    c = shape[1]
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    w = rng.uniform(0.5, 1.5, c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    if impl in ("fastnn", "numpy"):
        mod = F if impl == "fastnn" else R

        def fn():
            y, mean, invstd = mod.batch_norm_forward(x, w, b, rm, rv, True, 0.1, 1e-5)
            return mod.batch_norm_backward(g, x, w, mean, invstd, True)
    else:
        tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)
        tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())

        def fn():
            tx.grad = tw.grad = tb.grad = None
            torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, True, 0.1, 1e-5).backward(tg)
            return tx.grad, tw.grad, tb.grad
    bench(benchmark, f"batchnorm fwd+bwd {'x'.join(map(str, shape))}", fn)
    y, mean, invstd = R.batch_norm_forward(x, w, b, None, None, True, 0.1, 1e-5)
    for got, want in zip(fn(), R.batch_norm_backward(g, x, w, mean, invstd, True)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("impl", IMPLS)
def test_batchnorm_eval_2d(benchmark, rng, impl):
    """Inference: the folded affine (one multiply-add per element)."""
    need(impl)
    x = rng.standard_normal((64, 64, 28, 28), dtype=np.float32)
    w, b = rng.uniform(0.5, 1.5, 64).astype(np.float32), rng.standard_normal(64).astype(np.float32)
    rm, rv = rng.standard_normal(64).astype(np.float32), rng.uniform(0.5, 2, 64).astype(np.float32)
    if impl in ("fastnn", "numpy"):
        mod = F if impl == "fastnn" else R
        fn = lambda: mod.batch_norm_forward(x, w, b, rm, rv, False)[0]  # noqa: E731
    else:
        args = [torch.from_numpy(a) for a in (x, rm, rv, w, b)]
        fn = lambda: torch.nn.functional.batch_norm(*args, False)  # noqa: E731
    bench(benchmark, "batchnorm eval 64x64x28x28", fn)
