"""The pooling layers' R-operator (layers/pool.h): linear maps once MaxPool2d's argmax is fixed,
so R{y} = pool(R{x}) and R{dx} = poolᵀ(R{g}); against central differences (float64), float32
against float64, and the max pool's gather kernel against its NumPy reference."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import nn
from fastnn import reference as R
from tests.conftest import DTYPES, random_array
from tests.curvature.rop_image import F64, check_rop_float32
from tests.curvature.test_layer_rop import check_rop

POOLS = {
    "max2x2": lambda dt: nn.MaxPool2d(2, dtype=dt),
    "max3s2p1": lambda dt: nn.MaxPool2d(3, stride=2, padding=1, dtype=dt),
    "max-dilated-ceil": lambda dt: nn.MaxPool2d(2, stride=2, dilation=2, ceil_mode=True, dtype=dt),
    "avg3s2p1": lambda dt: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, dtype=dt),
    "avg-ceil-divisor": lambda dt: nn.AvgPool2d(2, ceil_mode=True, divisor_override=3, dtype=dt),
    "adaptive": lambda dt: nn.AdaptiveAvgPool2d((2, 3), dtype=dt),
    "global": lambda dt: nn.GlobalAvgPool2d(dtype=dt),
}


@pytest.mark.parametrize("name", POOLS)
@pytest.mark.parametrize("shape", [(1, 1, 5, 7), (3, 2, 8, 6)])
def test_matches_central_differences(name, shape):
    # distinct values a step apart: the argmax does not move within ±1e-6
    x = np.random.default_rng(0).permutation(np.prod(shape)).reshape(shape) * 0.01
    check_rop(POOLS[name](F64), x)
    ry, _, _ = check_rop(POOLS[name](F64), x, rx_zero=True)
    assert not ry.any()


@pytest.mark.parametrize("name", POOLS)
def test_float32_matches_float64(name):
    # x >= 0: the terms' pass (on |x|) keeps the max pool's argmax
    x = np.random.default_rng(1).uniform(0, 2, (2, 3, 7, 9))
    check_rop_float32(POOLS[name], x, k=7 * 9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("geometry", [dict(kernel_size=2), dict(kernel_size=3, stride=1, padding=1),
                                      dict(kernel_size=2, dilation=3, padding=1, ceil_mode=True)])
def test_gather_kernel_matches_reference(rng, dtype, geometry):
    x = random_array(rng, (2, 3, 7, 8), dtype)
    _, idx = F.max_pool2d_forward(x, **geometry)
    rx = random_array(rng, x.shape, dtype)
    want = R.max_pool2d_gather(rx, idx)
    got = F.max_pool2d_gather(rx, idx)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    # the gather is the adjoint of the backward scatter: <gather(rx), g> = <rx, scatter(g)>
    g = random_array(rng, idx.shape, dtype).astype(F64)
    lhs = np.sum(got.astype(F64) * g)
    rhs = np.sum(rx.astype(F64) * F.max_pool2d_backward(g, idx, x.shape))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def test_gather_kernel_bad_input(rng):
    x = random_array(rng, (1, 2, 4, 4), np.float32)
    idx = np.zeros((1, 2, 2, 2), np.int64)
    for bad, err, match in [
        (idx.astype(np.int32), TypeError, "int64"),
        (idx + 16, ValueError, r"\[0, 16\)"),
        (idx - 2, ValueError, "must be -1 or in"),
        (np.zeros((1, 3, 2, 2), np.int64), ValueError, r"\(N, C\) = \(1, 2\)"),
    ]:
        for fn in (F.max_pool2d_gather, R.max_pool2d_gather):
            with pytest.raises(err, match=match):
                fn(x, bad)
    with pytest.raises(TypeError):
        F.max_pool2d_gather(x.astype(np.int32), idx)
    with pytest.raises(ValueError, match="rx must have the input's shape"):
        m = nn.MaxPool2d(2, dtype=F64)
        m(np.zeros((1, 2, 4, 4)))
        m._layer.rop_forward(np.zeros((1, 2, 4, 5)))
