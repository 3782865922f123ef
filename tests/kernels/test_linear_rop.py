"""linear_forward_pair (kernels/linear_rop.h): the forward and the direction's R{z} of a Linear in
one product with [W; V], against the reference, both code paths (narrow kernel, GEMM), float32 and
float64, odd shapes, batch 1, threads, bad input; H v through it against gradient differences."""

import numpy as np
import pytest

import fastnn
from fastnn import functional as F
from fastnn import nn
from fastnn import reference as R
from tests.conftest import DTYPES, assert_sum_close, num_threads, random_array

ACTIVATIONS = ["none", "relu", "leaky_relu", "sigmoid", "tanh"]
# out <= 32 (float32) runs the stacked 2 out columns in the narrow kernel, wider ones in the GEMM
OUTS = [1, 7, 31, 32, 33, 65]


def make(rng, n, n_in, n_out, dtype, with_bias):
    x = random_array(rng, (n, n_in), dtype)
    w = random_array(rng, (n_out, n_in), dtype, -1 / np.sqrt(n_in), 1 / np.sqrt(n_in))
    v = random_array(rng, (n_out, n_in), dtype)
    b = random_array(rng, (n_out,), dtype) if with_bias else None
    vb = random_array(rng, (n_out,), dtype) if with_bias else None
    return x, w, b, v, vb


def terms(x, w, b):
    t = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    return t + (0 if b is None else np.abs(b.astype(np.float64))), x.shape[1] + 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n", [1, 7, 33, 129])
def test_matches_reference(rng, dtype, activation, n):
    for n_in in [1, 7, 33, 129]:
        for n_out in OUTS:
            for with_bias in (True, False):
                x, w, b, v, vb = make(rng, n, n_in, n_out, dtype, with_bias)
                shape = f"n={n} in={n_in} out={n_out} bias={with_bias}"
                y, r = F.linear_forward_pair(x, w, b, v, vb, activation, 0.1)
                want_y, want_r = R.linear_forward_pair(x, w, b, v, vb, activation, 0.1)
                rtol = 0.0 if activation in ("none", "relu", "leaky_relu") else 8 * np.finfo(dtype).eps
                assert_sum_close(y, want_y, *terms(x, w, b), rtol=rtol, err_msg=f"y {shape}")
                assert_sum_close(r, want_r, *terms(x, v, vb), err_msg=f"r {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [10, 32, 40])
def test_y_is_linear_forward_and_threads_do_not_change_bits(rng, dtype, n_out):
    x, w, b, v, vb = make(rng, 300, 784, n_out, dtype, True)
    with num_threads(1):
        y1, r1 = F.linear_forward_pair(x, w, b, v, vb, "relu")
    with num_threads(2):
        y2, r2 = F.linear_forward_pair(x, w, b, v, vb, "relu")
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(r1, r2)
    assert_sum_close(y1, F.linear_forward(x, w, b, "relu"), *terms(x, w, b))
    assert_sum_close(r1, F.linear_forward(x, v, vb), *terms(x, v, vb))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 13, 37])
def test_narrow_halves_when_the_stack_is_too_wide(rng, dtype, n):
    # out <= the narrow width < 2 out (784 -> 32 with AVX2): the narrow kernel on W, then on V;
    # y is the plain forward's, bit for bit (the same kernel), at any thread count
    widest = F.linear_loss_max_outputs(dtype)  # the narrow kernels' width in this build
    for n_out in (widest // 2 + 1, widest):
        for with_bias in (True, False):
            x, w, b, v, vb = make(rng, n, 129, n_out, dtype, with_bias)
            shape = f"n={n} out={n_out} bias={with_bias}"
            with num_threads(1):
                y1, r1 = F.linear_forward_pair(x, w, b, v, vb, "sigmoid")
            with num_threads(2):
                y2, r2 = F.linear_forward_pair(x, w, b, v, vb, "sigmoid")
            np.testing.assert_array_equal(y1, y2, err_msg=shape)
            np.testing.assert_array_equal(r1, r2, err_msg=shape)
            np.testing.assert_array_equal(y1, F.linear_forward(x, w, b, "sigmoid"), err_msg=shape)
            want_y, want_r = R.linear_forward_pair(x, w, b, v, vb, "sigmoid")
            assert_sum_close(y1, want_y, *terms(x, w, b), rtol=8 * np.finfo(dtype).eps, err_msg=f"y {shape}")
            assert_sum_close(r1, want_r, *terms(x, v, vb), err_msg=f"r {shape}")


def test_bad_input(rng):
    x, w, b, v, vb = make(rng, 5, 7, 3, np.float32, True)
    with pytest.raises(ValueError, match="v_weight"):
        F.linear_forward_pair(x, w, b, v[:2], vb)
    with pytest.raises(ValueError, match="bias"):
        F.linear_forward_pair(x, w, b[:2], v, vb)
    with pytest.raises(TypeError, match="float32"):
        F.linear_forward_pair(x, w.astype(np.float64), b, v, vb)
    with pytest.raises(ValueError, match="activation"):
        F.linear_forward_pair(x, w, b, v, vb, "gelu")
    with pytest.raises(ValueError, match="weight"):
        F.linear_forward_pair(x, w[:, :3], b, v, vb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [5, 40])  # the first layer's R{z} from the narrow kernel, from the GEMM
@pytest.mark.parametrize("n", [1, 37])
def test_hvp_through_the_fused_forward_matches_gradient_differences(dtype, width, n):
    rng = np.random.default_rng(width + n)
    m = nn.Sequential(nn.Linear(13, width, dtype=np.float64), nn.Tanh(dtype=np.float64),
                      nn.Linear(width, 4, dtype=np.float64))
    buf = m.flatten_parameters_()
    buf.params[...] = rng.standard_normal(buf.params.size) * 0.5
    X = rng.standard_normal((n, 13))
    y = rng.integers(0, 4, n)
    v = rng.standard_normal(buf.params.size)
    hv = fastnn.hvp(m, "cross_entropy", X, y, v)
    theta, eps = buf.params.copy(), 1e-5
    grads = []
    for t in (eps, -eps):
        buf.params[...] = theta + t * v
        grads.append(fastnn.loss_and_grad(m, "cross_entropy", X, y)[1])
    buf.params[...] = theta
    fd = (grads[0] - grads[1]) / (2 * eps)
    np.testing.assert_allclose(hv, fd, rtol=1e-5, atol=1e-7 * (1 + np.abs(fd).max()))
    if dtype == np.float32:  # the float32 model's H v within float32 rounding of the float64 one
        m32 = nn.Sequential(nn.Linear(13, width), nn.Tanh(), nn.Linear(width, 4))
        m32.flatten_parameters_().params[...] = theta.astype(np.float32)
        hv32 = fastnn.hvp(m32, "cross_entropy", X.astype(np.float32), y, v.astype(np.float32))
        np.testing.assert_allclose(hv32, hv, rtol=0, atol=2e-4 * (1 + np.abs(hv).max()))
