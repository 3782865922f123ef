"""conv3x3_winograd_forward / _input_grad / _weight_grad (kernels/conv_winograd.h): C++ vs the
Winograd reference and vs the direct convolution (float32, float64; odd sizes, so half-used last
tiles; padding 0-3, non-square; 1, 3 and 17 channels; batch 1), with F(2x2, 3x3) tiles and, for 64
or more output channels, F(4x4, 3x3) ones (their last tiles 1-3 rows or columns used), finite
differences, that conv2d takes it (bit for bit) for its shapes, the same bits on 1-3 threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, num_threads, random_array
from tests.reference.test_conv import backward_terms, forward_terms

# The transforms add up to 4 inputs (B^T d B: each V value is a sum of up to 16 with weights +-1)
# and 9 weights (G g G^T, weights 1/4..1), and the inverse A^T M A adds 9 of M's values: each output
# is rounded through about 3x more operations than the direct sum of C*9 terms, on values whose
# size is bounded by the same |x| |W| sums times those small integer weights. The direct sum's
# bound (c eps sqrt(k) terms) times WINOGRAD_C covers that (measured worst: about 1/10 of it).
# F(4x4, 3x3)'s transforms weigh up to 36 inputs by up to 25 (B^T d B), 9 weights by 1/576..1 and
# 36 of M's values by up to 64 (A^T M A), but its products sum C terms as F(2x2)'s do and the
# values they round are bounded by the same sums times those weights: measured worst 0.74 of
# c eps sqrt(k) terms in NumPy float32, within the same WINOGRAD_C. But an F(4x4) tile's outputs
# are all rounded through the products of its 36 inputs: an output whose own terms are small (in
# the padding, beyond 2 rows of zeros) gets the error of its tile's larger ones, so its bound takes
# the largest terms of its tile (tile_terms).
WINOGRAD_C = 40.0


def tile_terms(terms, out_channels):
    """terms (N, O, P, Q), each replaced by the largest of its m x m output tile (m =
    R.output_tile(out_channels); unchanged for F(2x2))."""
    m = R.output_tile(out_channels)
    if m == 2:
        return terms
    N, O, P, Q = terms.shape
    t = np.zeros((N, O, -(-P // m) * m, -(-Q // m) * m))
    t[:, :, :P, :Q] = terms
    big = t.reshape(N, O, t.shape[2] // m, m, t.shape[3] // m, m).max(axis=(3, 5), keepdims=True)
    return np.broadcast_to(big, t.reshape(N, O, t.shape[2] // m, m, t.shape[3] // m, m).shape).reshape(t.shape)[:, :, :P, :Q]

# (x shape, out channels, padding)
CASES = [
    ((1, 1, 3, 3), 1, 0),  # one tile, batch 1
    ((2, 3, 7, 9), 4, 1),  # odd P: a half-used last tile row
    ((1, 3, 6, 5), 2, 0),  # odd Q
    ((3, 2, 5, 8), 3, 2),
    ((2, 17, 9, 11), 5, (1, 2)),
    ((1, 4, 4, 6), 3, (0, 2)),
    ((2, 2, 5, 4), 3, 3),  # padding beyond the kernel (forward only)
    ((4, 16, 28, 28), 32, 1),
    ((5, 32, 14, 14), 64, 1),  # the BENCH.md CNN's second convolution
    ((3, 17, 7, 7), 19, 1),
    ((2, 33, 5, 17), 16, (1, 0)),  # rows of 17: the planes' pixels transposed across rows, a lone 33rd channel
    # F(4x4) tiles (>= 64 output channels): P, Q = 1 .. 3 mod 4 (cut last tiles), batch 1, padding 0-3;
    # the input gradient takes them with >= 64 input channels
    ((1, 1, 3, 3), 64, 0),  # one tile, one output
    ((2, 3, 7, 9), 65, 1),  # 7 x 9: last tiles of 3 rows, 1 column
    ((1, 5, 6, 8), 72, (0, 2)),  # 4 x 10: exact rows, last tile of 2 columns
    ((2, 2, 5, 4), 64, 3),  # padding beyond the kernel (forward only)
    ((2, 66, 9, 11), 8, (1, 2)),  # F(2x2) forward, F(4x4) input gradient (66 out)
    ((3, 64, 10, 10), 64, 1),  # both F(4x4)
]
IDS = [f"{c[0]}-o{c[1]}-p{c[2]}".replace(" ", "") for c in CASES]


def _args(case, rng, dtype, bias=True):
    shape, O, p = case
    x = random_array(rng, shape, dtype)
    w = random_array(rng, (O, shape[1], 3, 3), dtype)
    b = random_array(rng, (O,), dtype) if bias else None
    return x, w, b, p


def _pads(p):
    return (p, p) if isinstance(p, int) else p


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_the_references(rng, case, dtype):
    x, w, b, p = _args(case, rng, dtype, bias=case[1] != 3)
    y = F.conv3x3_winograd_forward(x, w, b, p)
    assert y.dtype == dtype and y.flags.c_contiguous
    terms, k = forward_terms(x, w, b, padding=p)
    terms = tile_terms(terms, w.shape[0])
    assert_sum_close(y, R.conv2d_forward(x, w, b, padding=p), terms, k, c=WINOGRAD_C)
    assert_sum_close(y, R.conv3x3_winograd_forward(x, w, b, p), terms, k, c=WINOGRAD_C)


@pytest.mark.parametrize("case", [c for c in CASES if max(_pads(c[2])) <= 2], ids=[i for c, i in zip(CASES, IDS) if max(_pads(c[2])) <= 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_input_grad_matches_the_references(rng, case, dtype):
    x, w, _, p = _args(case, rng, dtype)
    g = random_array(rng, R.conv2d_forward(x, w, padding=p).shape, dtype)
    dx = F.conv3x3_winograd_input_grad(g, w, p)
    assert dx.shape == x.shape and dx.dtype == dtype and dx.flags.c_contiguous
    (terms, _, _), (k, _, _) = backward_terms(g, x, w, padding=p)
    terms = tile_terms(terms, w.shape[1])  # the input gradient's output channels: C
    assert_sum_close(dx, R.conv2d_backward(g, x, w, padding=p)[0], terms, k, c=WINOGRAD_C)
    assert_sum_close(dx, R.conv3x3_winograd_input_grad(g, w, p), terms, k, c=WINOGRAD_C)


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad_matches_the_references(rng, case, dtype):
    x, w, _, p = _args(case, rng, dtype)
    g = random_array(rng, R.conv2d_forward(x, w, padding=p).shape, dtype)
    dw = F.conv3x3_winograd_weight_grad(g, x, p)
    assert dw.shape == w.shape and dw.dtype == dtype and dw.flags.c_contiguous
    (_, terms, _), (_, k, _) = backward_terms(g, x, w, padding=p)
    assert_sum_close(dw, R.conv2d_backward(g, x, w, padding=p)[1], terms, k, c=WINOGRAD_C)
    assert_sum_close(dw, R.conv3x3_winograd_weight_grad(g, x, p), terms, k, c=WINOGRAD_C)


@pytest.mark.parametrize("case", [((1, 2, 4, 3), 2, 1), ((2, 3, 5, 4), 2, (0, 2))])
def test_matches_finite_differences(rng, case):
    x, w, b, p = _args(case, rng, np.float64)
    g = random_array(rng, F.conv3x3_winograd_forward(x, w, b, p).shape, np.float64)

    def loss():
        return float(np.sum(F.conv3x3_winograd_forward(x, w, b, p) * g))

    assert_gradient(loss, x, F.conv3x3_winograd_input_grad(g, w, p))
    assert_gradient(loss, w, F.conv3x3_winograd_weight_grad(g, x, p))


# conv2d's own tests (tests/kernels/test_conv.py) hold it against the reference; these say that it
# runs on this kernel for 3x3 stride-1 ungrouped convolutions of >= 16 channels in, >= 8 out, over
# >= 4 images (the input gradient of a "same" conv with O < C, a DenseNet's 48 -> 12, excepted)
@pytest.mark.parametrize("case", [((4, 16, 9, 7), 16, 1), ((5, 32, 14, 14), 64, 1), ((4, 24, 6, 5), 16, (2, 0)),
                                  ((4, 20, 7, 7), 8, 1), ((4, 16, 11, 6), 64, 1), ((4, 64, 10, 10), 64, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_runs_on_it(rng, case, dtype):
    x, w, b, p = _args(case, rng, dtype)
    y = F.conv2d_forward(x, w, b, padding=p)
    np.testing.assert_array_equal(y, F.conv3x3_winograd_forward(x, w, b, p))
    g = random_array(rng, y.shape, dtype)
    dx, dw, _ = F.conv2d_backward(g, x, w, padding=p)
    np.testing.assert_array_equal(dw, F.conv3x3_winograd_weight_grad(g, x, p))
    if case[1] >= case[0][1]:
        np.testing.assert_array_equal(dx, F.conv3x3_winograd_input_grad(g, w, p))


THREAD_CASES = [-9, -8, -7, -5, -2, -1]  # 3 of each tile, padding <= 2


@pytest.mark.parametrize("case", [CASES[i] for i in THREAD_CASES], ids=[IDS[i] for i in THREAD_CASES])
def test_same_result_with_one_two_and_three_threads(rng, case):
    x, w, b, p = _args(case, rng, np.float32)
    g = random_array(rng, R.conv2d_forward(x, w, b, padding=p).shape, np.float32)
    results = []
    for n in (1, 2, 3):
        with num_threads(n):
            results.append([F.conv3x3_winograd_forward(x, w, b, p), F.conv3x3_winograd_input_grad(g, w, p),
                            F.conv3x3_winograd_weight_grad(g, x, p),
                            F.conv2d_forward(x, w, b, padding=p), *F.conv2d_backward(g, x, w, padding=p)])
    for one, *others in zip(*results):
        for other in others:
            np.testing.assert_array_equal(one, other)


X, W = np.zeros((2, 4, 5, 5)), np.zeros((6, 4, 3, 3))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.conv3x3_winograd_forward(X, W[:, :3]), ValueError,
         r"\[conv3x3_winograd_forward\] x must be \(N, 3, H, W\), got \(2, 4, 5, 5\)"),
        (lambda: F.conv3x3_winograd_forward(X, np.zeros((6, 4, 3, 2))), ValueError,
         r"\[conv3x3_winograd_forward\] weight must be \(O, C, 3, 3\), got \(6, 4, 3, 2\)"),
        (lambda: F.conv3x3_winograd_forward(X[0], W), ValueError,
         r"\[conv3x3_winograd_forward\] x must be \(N, C, H, W\), got \(4, 5, 5\)"),
        (lambda: F.conv3x3_winograd_forward(X[:, :, :2], W, padding=0), ValueError,
         r"\[conv3x3_winograd_forward\] the 3x3 kernel is larger than the padded input \(2, 5\)"),
        (lambda: F.conv3x3_winograd_forward(X, W, padding=-1), ValueError,
         r"\[conv3x3_winograd_forward\] padding must be >= 0, got -1"),
        (lambda: F.conv3x3_winograd_forward(X, W, np.zeros(5)), ValueError,
         r"\[conv3x3_winograd_forward\] bias must be \(6,\), got \(5,\)"),
        (lambda: F.conv3x3_winograd_forward(X.astype(np.float32), W), TypeError,
         r"\[conv3x3_winograd_forward\] weight must be float32"),
        (lambda: F.conv3x3_winograd_input_grad(np.zeros((2, 6, 5, 5)), W, padding=3), ValueError,
         r"\[conv3x3_winograd_input_grad\] padding must be <= 2, got 3"),
        (lambda: F.conv3x3_winograd_input_grad(np.zeros((2, 4, 5, 5)), W), ValueError,
         r"\[conv3x3_winograd_input_grad\] grad_out must be \(N, 6, H, W\), got \(2, 4, 5, 5\)"),
        (lambda: F.conv3x3_winograd_input_grad(np.zeros((2, 6, 5, 5), np.int32), W), TypeError,
         r"\[conv3x3_winograd_input_grad\] grad_out must be float32 or float64, got int32"),
    ],
)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: F.conv3x3_winograd_weight_grad(np.zeros((2, 6, 4, 5)), X), r"grad_out must be \(2, O, 5, 5\), got \(2, 6, 4, 5\)"),
        (lambda: F.conv3x3_winograd_weight_grad(np.zeros((3, 6, 5, 5)), X), r"grad_out must be \(2, O, 5, 5\), got \(3, 6, 5, 5\)"),
        (lambda: F.conv3x3_winograd_weight_grad(np.zeros((2, 6, 5)), X), r"grad_out must be \(N, C, H, W\), got \(2, 6, 5\)"),
        (lambda: F.conv3x3_winograd_weight_grad(np.zeros((2, 6, 1, 5)), X[:, :, :1], 0),
         r"the 3x3 kernel is larger than the padded input \(1, 5\)"),
    ],
)
def test_weight_grad_bad_arguments(call, match):
    with pytest.raises(ValueError, match=r"\[conv3x3_winograd_weight_grad\] " + match):
        call()


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("case", [((2, 3, 7, 9), 4, 1), ((1, 1, 3, 3), 2, 0), ((2, 5, 6, 11), 3, (2, 1))])
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_tiles_are_the_direct_convolution(rng, case, m, dtype):
    x, w, b, p = _args(case, rng, dtype)
    y = R.conv3x3_winograd_forward(x, w, b, p, m=m)
    terms, k = forward_terms(x, w, b, padding=p)
    terms = tile_terms(terms, 64 if m == 4 else 1)
    assert_sum_close(y, R.conv2d_forward(x, w, b, padding=p), terms, k, c=WINOGRAD_C)


def test_output_tile():
    assert [R.output_tile(o) for o in (1, 8, 32, 63, 64, 100)] == [2, 2, 2, 2, 4, 4]


def test_reference_bad_arguments():
    with pytest.raises(ValueError, match=r"\[conv3x3_winograd_forward\] x must be \(N, 3, H, W\)"):
        R.conv3x3_winograd_forward(X, W[:, :3])
    with pytest.raises(ValueError, match=r"\[conv3x3_winograd_forward\] weight must be \(O, C, 3, 3\)"):
        R.conv3x3_winograd_forward(X, np.zeros((6, 4, 3, 2)))
    with pytest.raises(ValueError, match=r"\[conv3x3_winograd_forward\] m must be 2 or 4, got 3"):
        R.conv3x3_winograd_forward(X, W, m=3)
    with pytest.raises(ValueError, match=r"\[conv3x3_winograd_input_grad\] padding must be <= 2"):
        R.conv3x3_winograd_input_grad(np.zeros((2, 6, 5, 5)), W, padding=3)
    with pytest.raises(ValueError, match=r"\[conv3x3_winograd_weight_grad\] grad_out must be \(2, O, 5, 5\)"):
        R.conv3x3_winograd_weight_grad(np.zeros((2, 6, 4, 5)), X)
