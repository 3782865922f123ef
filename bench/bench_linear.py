"""Linear + ReLU forward+backward at (256, 784) -> 512 and (128, 784) -> 32; and the width sweep
(no threading cliff)."""

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import reference as R
from conftest import IMPLS, THREADS, bench, need, torch


def linear_case(rng, n, fin, fout):
    x = rng.standard_normal((n, fin), dtype=np.float32)
    w = (rng.standard_normal((fout, fin)) / np.sqrt(fin)).astype(np.float32)
    b = rng.standard_normal(fout).astype(np.float32)
    g = rng.standard_normal((n, fout), dtype=np.float32)
    return x, w, b, g


def fwd_bwd(impl, x, w, b, g):
    """A function doing forward (bias + ReLU) and backward (dx, dW, db) with `impl`."""
    if impl == "fastnn":
        def fn():
            y = F.linear_forward(x, w, b, activation="relu")
            return F.linear_backward(g, x, w, y=y, activation="relu")
    elif impl == "numpy":
        def fn():
            y = R.linear_forward(x, w, b, activation="relu")
            return R.linear_backward(g, x, w, y=y, activation="relu")
    else:
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        tg = torch.from_numpy(g)

        def fn():
            tx.grad = tw.grad = tb.grad = None
            torch.relu(torch.nn.functional.linear(tx, tw, tb)).backward(tg)
            return tx.grad, tw.grad, tb.grad
    return fn


@pytest.mark.parametrize("shape", [(256, 784, 512), (128, 784, 32)], ids=["wide", "narrow"])
@pytest.mark.parametrize("impl", IMPLS)
def test_linear_relu_fwd_bwd(benchmark, rng, impl, shape):
    """BENCH.md's micro shape, and mlp-s's first layer (kernels/linear_narrow.h)."""
    need(impl)
    case = linear_case(rng, *shape)
    fn = fwd_bwd(impl, *case)
    bench(benchmark, "linear+relu fwd+bwd ({},{})->{}".format(*shape), fn)
    expected = R.linear_backward(case[3], case[0], case[1], y=R.linear_forward(*case[:3], activation="relu"),
                                 activation="relu")
    for got, want in zip(fn(), expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-3)


WIDTHS = [16, 32, 64, 128, 256, 512, 1024, 2048]


@pytest.mark.parametrize("threads", sorted({1, THREADS}))
@pytest.mark.parametrize("impl", ["fastnn", "torch"])
@pytest.mark.parametrize("width", WIDTHS)
def test_width_sweep(benchmark, rng, impl, width, threads):
    """Batch 128, in = out = width: small widths must not get slower when threads are added."""
    need(impl)
    fn = fwd_bwd(impl, *linear_case(rng, 128, width, width))
    old_fastnn, old_torch = fastnn.get_num_threads(), torch.get_num_threads() if torch else None
    fastnn.set_num_threads(threads)
    if torch:
        torch.set_num_threads(threads)
    try:
        bench(benchmark, f"width sweep {width:4d}", fn)
    finally:
        fastnn.set_num_threads(old_fastnn)
        if torch:
            torch.set_num_threads(old_torch)
