"""Pooling forward and forward+backward at the BENCH.md CNN's shapes (MaxPool2d(2) after each
convolution, batch 128), a global average pool at the end of a ResNet/DenseNet ((128, 256, 7, 7)),
a DenseNet transition's AvgPool2d(2) and a ResNet stem's overlapping MaxPool2d(3, 2, 1), float32.

fastnn runs the nn layers (the C++ layers training runs, plus the copy of the result that every
call from Python makes), torch the torch.nn modules on an input that requires grad (training: max
pooling keeps its indices). Results are checked against each other.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/compare.py -k pool
"""

import numpy as np
import pytest

from fastnn import nn
from conftest import bench, need, torch

# id: (module name, args, input shape)
CASES = {
    "cnn pool1 MaxPool2d(2) 128x32x28x28": ("MaxPool2d", (2,), (128, 32, 28, 28)),
    "cnn pool2 MaxPool2d(2) 128x64x14x14": ("MaxPool2d", (2,), (128, 64, 14, 14)),
    "gap AdaptiveAvgPool2d(1) 128x256x7x7": ("AdaptiveAvgPool2d", (1,), (128, 256, 7, 7)),
    "transition AvgPool2d(2) 128x64x28x28": ("AvgPool2d", (2,), (128, 64, 28, 28)),
    "stem MaxPool2d(3,2,1) 128x64x28x28": ("MaxPool2d", (3, 2, 1), (128, 64, 28, 28)),
}


def pool_fn(impl, name, args, x, g, backward):
    """forward (and backward of the fixed upstream gradient g) with `impl`; returns (y, dx)."""
    if impl == "fastnn":
        layer = getattr(nn, name)(*args)

        def fn():
            y = layer(x)
            return (y, layer.backward(g)) if backward else (y,)
        return fn
    layer = getattr(torch.nn, name)(*args)
    tx, tg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(g)

    def fn():
        tx.grad = None
        y = layer(tx)
        if not backward:
            return (y,)
        y.backward(tg)
        return y, tx.grad
    return fn


@pytest.mark.parametrize("impl", ["fastnn", "torch"])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case", list(CASES))
def test_pool(benchmark, rng, case, backward, impl):
    need(impl)
    name, args, shape = CASES[case]
    x = rng.standard_normal(shape, dtype=np.float32)
    out_shape = getattr(nn, name)(*args)._layer.output_shape(shape)
    g = np.random.default_rng(1).standard_normal(out_shape, dtype=np.float32)
    fn = pool_fn(impl, name, args, x, g, backward)
    bench(benchmark, f"{case} {'fwd+bwd' if backward else 'fwd'}", fn)
    if torch is not None:  # both agree (max: exactly; averages: to rounding)
        got = [np.asarray(a) for a in pool_fn("fastnn", name, args, x, g, True)()]
        want = [t.detach().numpy() for t in pool_fn("torch", name, args, x, g, True)()]
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
