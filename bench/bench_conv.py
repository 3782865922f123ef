"""Conv2d forward and forward+backward (dx, dW, db) at BENCH.md's shapes: the micro benchmark
(batch 64, 32 -> 64 channels, 28x28, 3x3, pad 1) and the cnn workload's two convolutions at
batch 128 (1 -> 32 at 28x28, 32 -> 64 at 14x14), fastnn vs torch.nn.functional.conv2d."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from conftest import bench, need, torch

# id: (N, C, H, W), out_channels, kernel, padding
SHAPES = {
    "micro 64x32x28x28->64 k3p1": ((64, 32, 28, 28), 64, 3, 1),
    "cnn conv1 128x1x28x28->32 k3p1": ((128, 1, 28, 28), 32, 3, 1),
    "cnn conv2 128x32x14x14->64 k3p1": ((128, 32, 14, 14), 64, 3, 1),
}


def conv_case(rng, shape, out, k):
    x = rng.standard_normal(shape, dtype=np.float32)
    w = (rng.standard_normal((out, shape[1], k, k)) / np.sqrt(shape[1] * k * k)).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32)
    return x, w, b


def conv_fn(impl, x, w, b, padding, backward):
    """forward (and backward with a fixed upstream gradient) with `impl`; returns (y, dx, dW, db)."""
    g = np.random.default_rng(1).standard_normal(R.conv2d_forward(x[:1], w, b, padding=padding).shape[1:],
                                                 dtype=np.float32)
    g = np.ascontiguousarray(np.broadcast_to(g, (x.shape[0],) + g.shape))
    if impl == "fastnn":
        def fn():
            y = F.conv2d_forward(x, w, b, padding=padding)
            return (y, *F.conv2d_backward(g, x, w, padding=padding)) if backward else (y,)
        return fn
    tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
    if backward:
        tx.requires_grad_(), tw.requires_grad_(), tb.requires_grad_()

    def fn():
        if not backward:
            with torch.no_grad():
                return (torch.nn.functional.conv2d(tx, tw, tb, padding=padding),)
        tx.grad = tw.grad = tb.grad = None
        y = torch.nn.functional.conv2d(tx, tw, tb, padding=padding)
        y.backward(tg)
        return y, tx.grad, tw.grad, tb.grad
    return fn


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("impl", ["fastnn", "torch"])
def test_conv2d(benchmark, rng, impl, shape_id, backward):
    need(impl)
    shape, out, k, padding = SHAPES[shape_id]
    x, w, b = conv_case(rng, shape, out, k)
    fn = conv_fn(impl, x, w, b, padding, backward)
    bench(benchmark, f"conv2d {'fwd+bwd' if backward else 'fwd'} {shape_id}", fn, rounds=20)
    # the result agrees with fastnn's (checked against the reference in tests/kernels/test_conv.py)
    want = conv_fn("fastnn", x, w, b, padding, backward)()
    for got, ref in zip(fn(), want):
        np.testing.assert_allclose(np.asarray(got.detach() if hasattr(got, "detach") else got), ref,
                                   rtol=2e-3, atol=2e-3 * float(np.abs(ref).max()))
