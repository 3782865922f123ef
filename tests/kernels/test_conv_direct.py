"""conv2d's direct path for few taps per output (kernels/conv_direct.h: C/G * kh * kw up to
_conv_direct_limits()["max_taps"], batches of at least "min_images"): forward and weight gradient
against the reference (float32, float64) with sum-scaled tolerances, at the tap limit and one past
it, with every tail of its register tiles (output channels, taps, pixels not a whole packet),
stride, padding, dilation, groups, 1x1; the same bits on 1, 2 and 3 threads. Its finite-difference
checks are test_conv.py's (DIRECT_FD_CASES there)."""

import numpy as np
import pytest

from fastnn._config import _C
from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_sum_close, random_array
from tests.kernels.test_conv import _check_backward, check_same_bits_on_threads
from tests.reference.test_conv import _args, forward_terms

LIMITS = _C._conv_direct_limits()
MAX_TAPS, MIN_IMAGES = LIMITS["max_taps"], LIMITS["min_images"]
N = MIN_IMAGES


def _taps_case(taps, n=N, o=5):
    """A 1-channel kernel of `taps` taps (1 x taps), as wide an image as it needs."""
    return ((n, 1, 3, taps + 4), o, (1, taps), 1, 0, 1, 1)


# (x shape, out channels, kernel, stride, padding, dilation, groups)
CASES = [
    ((N, 1, 28, 28), 32, 3, 1, 1, 1, 1),  # the cnn's first convolution
    ((N + 1, 3, 11, 13), 9, 3, 1, 1, 1, 1),  # 27 taps; 9 = two tiles of 4 output rows and one left
    ((N, 1, 9, 9), 3, 5, 2, 2, 1, 1),  # 25 taps, strided: 5x5 pixels, fewer than a packet's tile
    ((N + 3, 2, 10, 7), 6, (3, 2), (2, 1), (1, 0), (2, 3), 1),  # dilated, non-square, 12 taps
    ((N, 4, 9, 10), 6, 3, 1, 1, 1, 2),  # grouped: 18 taps a group
    ((N + 2, 6, 8, 8), 6, 3, 1, 1, 1, 6),  # depthwise: one output channel a group
    ((N, 3, 6, 7), 7, 1, 1, 0, 1, 1),  # 1x1: x[n] is the patches
    ((N, 2, 1, 1), 3, 1, 1, 0, 1, 1),  # one pixel: the scalar tail alone
    ((N, 1, 5, 5), 1, 2, 1, 0, 1, 1),  # 4 taps, one output channel
    ((2 * N + 1, 1, 28, 28), 8, 3, 2, 1, 1, 1),  # odd batch in chunks; 14x14 = 196 pixels
    _taps_case(MAX_TAPS),
    _taps_case(MAX_TAPS + 1),  # one past the limit: the GEMM path
    _taps_case(MAX_TAPS, n=N - 1),  # a batch below the limit: the GEMM path
]
IDS = [f"{c[0]}-o{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}-d{c[5]}-g{c[6]}".replace(" ", "") for c in CASES]


def test_limits_come_from_the_build():
    assert MAX_TAPS >= 27  # an RGB image's 3x3 conv
    assert MIN_IMAGES >= 1


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(rng, case, dtype):
    x, w, b, geometry = _args(case, rng, dtype, bias=case[1] % 2 == 1)
    y = F.conv2d_forward(x, w, b, **geometry)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_sum_close(y, R.conv2d_forward(x, w, b, **geometry), *forward_terms(x, w, b, **geometry))
    g = random_array(rng, y.shape, dtype)
    _check_backward(F.conv2d_backward(g, x, w, **geometry), R.conv2d_backward(g, x, w, **geometry), g, x, w, geometry)


@pytest.mark.parametrize("case", CASES[:2] + CASES[4:6] + CASES[9:10], ids=IDS[:2] + IDS[4:6] + IDS[9:10])
def test_same_bits_on_one_two_and_three_threads(rng, case):
    check_same_bits_on_threads(rng, case)


def test_accumulates_into_the_weight_gradient(rng):
    x, w, b, geometry = _args(CASES[0], rng, np.float32)
    g = random_array(rng, F.conv2d_forward(x, w, b, **geometry).shape, np.float32)
    _, dw, _ = F.conv2d_backward(g, x, w, **geometry)
    acc = np.ones_like(w)
    F.conv2d_backward(g, x, w, need_input_grad=False, grad_weight_out=acc, **geometry)
    np.testing.assert_allclose(acc, dw + 1, rtol=1e-6, atol=1e-5 * np.abs(dw).max())
