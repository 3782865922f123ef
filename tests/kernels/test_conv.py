"""conv2d_forward / conv2d_backward: C++ vs the reference (float32, float64; stride, padding,
dilation, groups incl. depthwise, 1x1, non-square, batch 1), finite differences on the C++
kernel itself, skipped and accumulated gradients, the same bits on 1 and 2 threads, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_gradient, assert_sum_close, num_threads, random_array
from tests.reference.test_conv import CASES as REFERENCE_CASES
from tests.reference.test_conv import FD_CASES, _args, backward_terms, forward_terms

# The reference's cases, plus shapes whose products split into several GEMM tiles (and threads):
# the BENCH.md CNN's second convolution at a small batch, a grouped and a depthwise one, a 1x1
# (no im2col) with many channels, and odd sizes with everything at once.
GROUPED_1X1 = ((2, 32, 9, 10), 64, 1, 1, 0, 1, 8)
ODD = ((3, 7, 31, 33), 5, (5, 3), (2, 3), (2, 1), (1, 2), 1)
BATCH_5 = ((5, 6, 9, 7), 4, 3, 2, 1, 2, 2)
CASES = REFERENCE_CASES + [
    ((2, 32, 28, 28), 64, 3, 1, 1, 1, 1),
    ((3, 16, 17, 15), 24, 3, 1, 1, 1, 4),
    ((2, 33, 19, 21), 33, 3, 2, 1, 1, 33),  # depthwise, stride 2
    ((4, 64, 14, 13), 96, 1, 1, 0, 1, 1),  # 1x1: no im2col
    GROUPED_1X1,
    ODD,
    ((1, 1, 28, 28), 32, 3, 1, 1, 1, 1),  # the CNN's first convolution, batch 1
    # batches of >= 4 images: image by image (conv.h kFusedMinImages)
    BATCH_5,
    ((4, 3, 8, 8), 5, (3, 5), 1, (1, 2), 1, 1),
    ((6, 16, 13, 11), 16, 3, 1, 1, 1, 16),  # depthwise
    ((8, 32, 14, 14), 64, 3, 1, 1, 1, 1),
    ((11, 4, 6, 5), 6, 3, 1, 1, 1, 2),  # 8 chunks of 1 or 2 images for dW's partial sums
    ((4, 4, 9, 10), 6, (3, 2), 1, (2, 0), (2, 3), 2),  # dilated, grouped, image by image
    ((4, 2, 5, 5), 3, 3, 1, 3, 1, 1),  # padding beyond the kernel, image by image
    # chunks of several images, images whose patches exceed L2, 1x1 convolutions image by image
    ((37, 3, 5, 5), 4, 3, 1, 1, 1, 1),  # chunks of 4 and 5 images
    ((40, 2, 20, 20), 3, 3, 1, 1, 1, 1),
    ((37, 4, 5, 5), 6, 3, 2, 1, 1, 2),  # grouped, strided
    ((37, 6, 5, 5), 4, 1, 1, 0, 1, 1),  # 1x1: x[n] and dx[n] in place, dW's partial sums per chunk
    ((37, 6, 5, 5), 4, 1, 1, 0, 1, 2),  # grouped 1x1
    ((9, 5, 28, 28), 7, 1, 1, 0, 1, 1),
    ((4, 25, 30, 30), 3, 3, 1, 1, 1, 1),  # 225 x 900 patches an image
    ((5, 64, 41, 41), 4, 3, 2, 1, 1, 2),  # strided, grouped: 576 x 441
    # stride 1, output as wide as the input (im2col.h same_width_stride1): one run per tap
    ((4, 3, 9, 9), 2, 3, 1, 2, 2, 1),  # dilated
    ((4, 2, 1, 6), 3, 3, 1, 1, 1, 1),  # a single row: the outer tap rows are all padding
    # fewer output than input channels, stride 1, same size (conv.h input_grad_as_conv): dx as a conv
    ((6, 12, 9, 7), 5, 3, 1, 1, 1, 1),
    ((4, 6, 7, 9), 3, (3, 5), 1, (1, 2), 1, 1),  # non-square kernel
    ((5, 48, 14, 14), 12, 3, 1, 1, 1, 1),  # a DenseNet-BC layer's 3x3 conv
]
CASE_IDS = [f"{c[0]}-o{c[1]}-k{c[2]}-s{c[3]}-p{c[4]}-d{c[5]}-g{c[6]}".replace(" ", "") for c in CASES]


def _check_backward(got, want, g, x, w, geometry, err_msg=""):
    terms, ks = backward_terms(g, x, w, **geometry)
    for name, a, e, t, k in zip(["grad_input", "grad_weight", "grad_bias"], got, want, terms, ks):
        if e is None:
            assert a is None, name
        else:
            assert a.flags.c_contiguous, name
            assert_sum_close(a, e, t, k, err_msg=f"{name} {err_msg}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(rng, case, dtype):
    bias = case[2] != 5  # and cases without a bias
    x, w, b, geometry = _args(case, rng, dtype, bias)
    y = F.conv2d_forward(x, w, b, **geometry)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_sum_close(y, R.conv2d_forward(x, w, b, **geometry), *forward_terms(x, w, b, **geometry))
    g = random_array(rng, y.shape, dtype)
    _check_backward(F.conv2d_backward(g, x, w, **geometry), R.conv2d_backward(g, x, w, **geometry), g, x, w, geometry)


# the direct path for few taps (kernels/conv_direct.h, batches of >= 4): the cnn's first conv on a
# small image, 27 taps (RGB 3x3), dilated and strided, 1x1
DIRECT_FD_CASES = [((4, 1, 6, 6), 5, 3, 1, 1, 1, 1), ((5, 3, 6, 6), 9, 3, 1, 1, 1, 1),
                   ((4, 2, 6, 6), 6, (3, 2), (2, 1), (1, 0), (2, 3), 1), ((4, 3, 6, 6), 7, 1, 1, 0, 1, 1)]


# and dx image by image, in chunks of 1 or 2 images (a 3x3 and a 1x1), and dx as a convolution
@pytest.mark.parametrize("case", FD_CASES + [((4, 2, 3, 4), 2, 3, 1, 1, 1, 2), ((10, 2, 4, 4), 2, 3, 1, 1, 1, 1),
                                             ((10, 3, 3, 3), 2, 1, 1, 0, 1, 1), ((4, 3, 4, 5), 2, 3, 1, 1, 1, 1)]
                         + DIRECT_FD_CASES)
def test_cpp_backward_matches_finite_differences(rng, case):
    x, w, b, geometry = _args(case, rng, np.float64)
    g = random_array(rng, F.conv2d_forward(x, w, b, **geometry).shape, np.float64)

    def loss():
        return float(np.sum(F.conv2d_forward(x, w, b, **geometry) * g))

    dx, dw, db = F.conv2d_backward(g, x, w, **geometry)
    assert_gradient(loss, x, dx)
    assert_gradient(loss, w, dw)
    assert_gradient(loss, b, db)


@pytest.mark.parametrize("case", [REFERENCE_CASES[1], REFERENCE_CASES[9], GROUPED_1X1, BATCH_5],
                         ids=["3x3", "1x1", "grouped1x1", "batch5"])
@pytest.mark.parametrize("given", ["both", "weight", "bias"])
def test_skipped_and_accumulated_gradients(rng, case, given):
    x, w, b, geometry = _args(case, rng, np.float32)
    g = random_array(rng, F.conv2d_forward(x, w, b, **geometry).shape, np.float32)
    want = R.conv2d_backward(g, x, w, **geometry)
    (tx, tw, tb), (kx, kw, kb) = backward_terms(g, x, w, **geometry)
    for need_input, need_bias in [(False, True), (True, False), (False, False)]:
        gx, gw, gb = F.conv2d_backward(g, x, w, **geometry, need_input_grad=need_input, need_bias_grad=need_bias)
        assert (gx is None) == (not need_input) and (gb is None) == (not need_bias)
        assert_sum_close(gw, want[1], tw, kw)
        if need_input:
            assert_sum_close(gx, want[0], tx, kx)
        if need_bias:
            assert_sum_close(gb, want[2], tb, kb)
    gw_acc = random_array(rng, w.shape, np.float32) if given != "bias" else None
    gb_acc = random_array(rng, b.shape, np.float32) if given != "weight" else None
    gw0 = None if gw_acc is None else gw_acc.copy()
    gb0 = None if gb_acc is None else gb_acc.copy()
    for step in (1, 2):  # accumulates over calls
        gx, rw, rb = F.conv2d_backward(g, x, w, **geometry, grad_weight_out=gw_acc, grad_bias_out=gb_acc)
        assert_sum_close(gx, want[0], tx, kx)  # never accumulated
        if gw_acc is not None:
            assert rw is gw_acc
            assert_sum_close(gw_acc, gw0 + step * want[1], np.abs(gw0) + step * tw, step * kw + 1)
        else:
            assert_sum_close(rw, want[1], tw, kw)
        if gb_acc is not None:
            assert rb is gb_acc
            assert_sum_close(gb_acc, gb0 + step * want[2], np.abs(gb0) + step * tb, step * kb + 1)
        else:
            assert_sum_close(rb, want[2], tb, kb)


def test_layouts_are_copied_once(rng):
    x, w, b, geometry = _args(ODD, rng, np.float64)
    y = R.conv2d_forward(x, w, b, **geometry)
    g = random_array(rng, y.shape, np.float64)
    xf, wf, gf = np.asfortranarray(x), np.asfortranarray(w), np.asfortranarray(g)
    assert_sum_close(F.conv2d_forward(xf, wf, b[::-1].copy()[::-1], **geometry), y, *forward_terms(x, w, b, **geometry))
    _check_backward(F.conv2d_backward(gf, xf, wf, **geometry), R.conv2d_backward(g, x, w, **geometry), g, x, w, geometry)


@pytest.mark.parametrize("case", CASES[-25:], ids=CASE_IDS[-25:])
def test_same_result_with_one_two_and_three_threads(rng, case):
    check_same_bits_on_threads(rng, case)


def check_same_bits_on_threads(rng, case):
    # Bit for bit: the threads split the outputs of every product and pass, never a sum.
    x, w, b, geometry = _args(case, rng, np.float32)
    g = random_array(rng, R.conv2d_forward(x, w, b, **geometry).shape, np.float32)
    results = []
    for n in (1, 2, 3):
        with num_threads(n):
            results.append([F.conv2d_forward(x, w, b, **geometry), *F.conv2d_backward(g, x, w, **geometry)])
    for one, *others in zip(*results):
        for other in others:
            np.testing.assert_array_equal(one, other)


X, W = np.zeros((2, 4, 5, 5)), np.zeros((6, 2, 3, 3))


@pytest.mark.parametrize("impl", [F, R], ids=["cpp", "reference"])
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: m.conv2d_forward(X, W), r"\[conv2d_forward\] x has 4 channels, weight \(6, 2, 3, 3\) with groups=1 expects 2"),
        (lambda m: m.conv2d_forward(X, np.zeros((6, 1, 3, 3)), groups=4), r"\[conv2d_forward\] out_channels 6 is not divisible by groups=4"),
        (lambda m: m.conv2d_forward(X, W, groups=0), r"\[conv2d_forward\] groups must be a positive int, got 0"),
        (lambda m: m.conv2d_forward(X, W, groups=2.0), r"\[conv2d_forward\] groups must be a positive int, got 2.0"),
        (lambda m: m.conv2d_forward(X[0], W, groups=2), r"\[conv2d_forward\] x must be \(N, C, H, W\), got \(4, 5, 5\)"),
        (lambda m: m.conv2d_forward(X, W[0], groups=2),
         r"\[conv2d_forward\] weight must be \(out_channels, in_channels/groups, kh, kw\), got \(2, 3, 3\)"),
        (lambda m: m.conv2d_forward(X, W, np.zeros(4), groups=2), r"\[conv2d_forward\] bias must be \(6,\), got \(4,\)"),
        (lambda m: m.conv2d_forward(X, np.zeros((2, 4, 7, 7))),
         r"\[conv2d_forward\] the \(dilated\) kernel \(7, 7\) is larger than the padded input \(5, 5\)"),
        (lambda m: m.conv2d_forward(X, np.zeros((2, 4, 3, 3)), dilation=3),
         r"\[conv2d_forward\] the \(dilated\) kernel \(7, 7\) is larger than the padded input \(5, 5\)"),
        (lambda m: m.conv2d_forward(X, W, stride=0, groups=2), r"\[conv2d_forward\] stride must be >= 1, got 0"),
        (lambda m: m.conv2d_backward(np.zeros((2, 6, 5, 5)), X, W, groups=2),
         r"\[conv2d_backward\] grad_out must be \(2, 6, 3, 3\), got \(2, 6, 5, 5\)"),
        (lambda m: m.conv2d_backward(np.zeros((2, 6, 3, 3)), X, W, groups=3), r"\[conv2d_backward\] x has 4 channels"),
        (lambda m: m.conv2d_backward(np.zeros((2, 6, 3, 3)), X, W, groups=2, need_bias_grad=False,
                                     grad_bias_out=np.zeros(6)),
         r"\[conv2d_backward\] grad_bias_out is given but need_bias_grad is False"),
    ],
)
def test_bad_arguments_as_the_reference(impl, call, match):
    with pytest.raises(ValueError, match=match):
        call(impl)


G = np.zeros((2, 6, 3, 3))


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: F.conv2d_forward(X.astype(np.float32), W, groups=2), TypeError,
         r"\[conv2d_forward\] weight must be float32 like the other inputs, got float64"),
        (lambda: F.conv2d_forward(X, W, np.zeros(6, np.float32), groups=2), TypeError, r"\[conv2d_forward\] bias must be float64"),
        (lambda: F.conv2d_forward(X.astype(np.int64), W, groups=2), TypeError, r"\[conv2d_forward\] x must be float32 or float64, got int64"),
        (lambda: F.conv2d_forward(X.tolist(), W, groups=2), TypeError, r"\[conv2d_forward\] x must be a numpy.ndarray, got list"),
        (lambda: F.conv2d_forward(X, None, groups=2), TypeError, r"\[conv2d_forward\] weight must be a numpy.ndarray, got NoneType"),
        (lambda: F.conv2d_forward(X, W, groups=True), ValueError, r"\[conv2d_forward\] groups must be a positive int, got True"),
        (lambda: F.conv2d_forward(X, W, padding="same", groups=2), TypeError,
         r"\[conv2d_forward\] padding must be an int or a pair of ints, got 'same'"),
        (lambda: F.conv2d_forward(np.zeros((0, 4, 5, 5)), W, groups=2), ValueError, r"\[conv2d_forward\] x is empty"),
        (lambda: F.conv2d_forward(X, np.zeros((0, 2, 3, 3)), groups=2), ValueError, r"\[conv2d_forward\] weight is empty"),
        (lambda: F.conv2d_backward(G.astype(np.float32), X, W, groups=2), TypeError, r"\[conv2d_backward\] grad_out must be float64"),
        (lambda: F.conv2d_backward(G, X, W, groups=2, need_input_grad=1), TypeError,
         r"\[conv2d_backward\] need_input_grad must be a bool, got int"),
        (lambda: F.conv2d_backward(G, X, W, groups=2, grad_weight_out=np.zeros((6, 2, 3, 2))), ValueError,
         r"\[conv2d_backward\] grad_weight_out must have shape \(6, 2, 3, 3\), got \(6, 2, 3, 2\)"),
        (lambda: F.conv2d_backward(G, X, W, groups=2, grad_weight_out=np.zeros((6, 2, 3, 3), np.float32)), TypeError,
         r"\[conv2d_backward\] grad_weight_out must be float64"),
        (lambda: F.conv2d_backward(G, X, W, groups=2, grad_weight_out=np.zeros((3, 6, 2, 3)).transpose(1, 2, 3, 0)),
         ValueError, r"\[conv2d_backward\] grad_weight_out is updated in place and must be C-contiguous"),
        (lambda: F.conv2d_backward(G, X, W, groups=2, grad_weight_out=W), ValueError,
         r"\[conv2d_backward\] grad_weight_out must not share memory with an input"),
        (lambda: F.conv2d_backward(G, X, W, groups=2, grad_bias_out=np.zeros(5)), ValueError,
         r"\[conv2d_backward\] grad_bias_out must have shape \(6,\), got \(5,\)"),
    ],
)
def test_bad_arguments_at_the_boundary(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
