"""Activations forward+backward, float32, vs the NumPy reference and torch."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from conftest import IMPLS, bench, need, torch

# name -> (fastnn/reference forward, backward taking (g, x, y), torch function)
ACTS = {
    "relu": (lambda m, x: m.relu_forward(x), lambda m, g, x, y: m.relu_backward(g, y), "relu"),
    "sigmoid": (lambda m, x: m.sigmoid_forward(x), lambda m, g, x, y: m.sigmoid_backward(g, y), "sigmoid"),
    "tanh": (lambda m, x: m.tanh_forward(x), lambda m, g, x, y: m.tanh_backward(g, y), "tanh"),
    "elu": (lambda m, x: m.elu_forward(x), lambda m, g, x, y: m.elu_backward(g, x), "elu"),
    "leaky_relu": (lambda m, x: m.leaky_relu_forward(x), lambda m, g, x, y: m.leaky_relu_backward(g, x), "leaky_relu"),
    "softmax": (lambda m, x: m.softmax_forward(x), lambda m, g, x, y: m.softmax_backward(g, y), "softmax"),
}
SHAPES = [(256, 4096), (64, 64, 28, 28)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", list(ACTS))
def test_activation_fwd_bwd(benchmark, rng, name, shape, impl):
    need(impl)
    if name == "softmax" and len(shape) == 4:
        shape = (256, 10)
    x = rng.standard_normal(shape, dtype=np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    fwd, bwd, tname = ACTS[name]
    if impl in ("fastnn", "numpy"):
        mod = F if impl == "fastnn" else R

        def fn():
            y = fwd(mod, x)
            return bwd(mod, g, x, y)
    else:
        tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)
        tf = getattr(torch.nn.functional, tname)
        kwargs = {"dim": -1} if name == "softmax" else {}

        def fn():
            tx.grad = None
            tf(tx, **kwargs).backward(tg)
            return tx.grad
    bench(benchmark, f"{name} fwd+bwd {'x'.join(map(str, shape))}", fn)
    expected = bwd(R, g, x, fwd(R, x))
    np.testing.assert_allclose(np.asarray(fn()), expected, rtol=1e-4, atol=1e-5)
