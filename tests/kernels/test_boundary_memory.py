"""Memory at the NumPy/C++ boundary: a C-order copy that cannot be allocated is a MemoryError
naming the op (pybind11's ensure() returned a null handle, and 43 of 44 kernels read through it);
out= must not overlap an input, measured by the bytes a strided view really spans; read-only
inputs are read, never refused."""

import re

import numpy as np
import pytest

from fastnn import functional as F
from fastnn._config import _C
from tests.isolation import attempts

# Every kernel with an input that must be copied to C order (a broadcast view of 2**31 + 7 rows:
# 32 GiB as float32). The child may map only 8 GiB, so the copy fails at once on any machine.
HUGE_INPUTS = """
N = 2**31 + 7
def big(*shape, dtype=np.float32):
    return np.broadcast_to(np.ones((1,) + shape, dtype), (N,) + shape)
x = big(4)
x64 = big(4, dtype=np.float64)
labels = np.broadcast_to(np.zeros(1, np.int64), (N,))
w4 = np.ones(4, np.float32)
c4 = np.ones(4, np.float32)
w34 = np.ones((3, 4), np.float32)
attempt("sigmoid_forward", lambda: F.sigmoid_forward(x))
attempt("sigmoid_backward", lambda: F.sigmoid_backward(x, x))
attempt("tanh_forward", lambda: F.tanh_forward(x))
attempt("tanh_backward", lambda: F.tanh_backward(x, x))
attempt("relu_forward", lambda: F.relu_forward(x))
attempt("relu_forward float64", lambda: F.relu_forward(x64))
attempt("relu_backward", lambda: F.relu_backward(x, x))
attempt("leaky_relu_forward", lambda: F.leaky_relu_forward(x))
attempt("leaky_relu_backward", lambda: F.leaky_relu_backward(x, x))
attempt("elu_forward", lambda: F.elu_forward(x))
attempt("elu_backward", lambda: F.elu_backward(x, x))
attempt("selu_forward", lambda: F.selu_forward(x))
attempt("selu_backward", lambda: F.selu_backward(x, x))
attempt("prelu_forward", lambda: F.prelu_forward(x, w4))
attempt("prelu_backward", lambda: F.prelu_backward(x, x, w4))
attempt("rrelu_forward", lambda: F.rrelu_forward(x))
attempt("rrelu_backward", lambda: F.rrelu_backward(x, x))
attempt("softmax_forward", lambda: F.softmax_forward(x))
attempt("softmax_backward", lambda: F.softmax_backward(x, x))
attempt("log_softmax_forward", lambda: F.log_softmax_forward(x))
attempt("log_softmax_backward", lambda: F.log_softmax_backward(x, x))
attempt("maxout_forward", lambda: F.maxout_forward(x, 2))
attempt("maxout_backward", lambda: F.maxout_backward(x, big(4, dtype=np.int64), 2))
attempt("cross_entropy_forward", lambda: F.cross_entropy_forward(x, labels))
attempt("cross_entropy_backward", lambda: F.cross_entropy_backward(x, labels))
attempt("cross_entropy_forward_backward", lambda: F.cross_entropy_forward_backward(x, labels))
attempt("cross_entropy_forward probs", lambda: F.cross_entropy_forward(x, x))
attempt("binary_cross_entropy_with_logits_forward", lambda: F.binary_cross_entropy_with_logits_forward(x, x))
attempt("binary_cross_entropy_with_logits_backward", lambda: F.binary_cross_entropy_with_logits_backward(x, x))
attempt("binary_cross_entropy_with_logits_forward_backward", lambda: F.binary_cross_entropy_with_logits_forward_backward(x, x))
attempt("mse_forward", lambda: F.mse_forward(x, x))
attempt("mse_backward", lambda: F.mse_backward(x, x))
attempt("mse_forward_backward", lambda: F.mse_forward_backward(x, x))
attempt("batch_norm_forward", lambda: F.batch_norm_forward(x, c4, c4, None, None, True))
attempt("batch_norm_backward", lambda: F.batch_norm_backward(x, x, c4, c4, c4))
attempt("batch_norm_affine", lambda: F.batch_norm_affine(x, c4, c4))
attempt("batch_norm_relu_forward", lambda: F.batch_norm_relu_forward(x, c4, c4, None, None, True))
attempt("batch_norm_relu_backward", lambda: F.batch_norm_relu_backward(x, x, c4, c4, c4, big(4, dtype=np.uint8)))
attempt("dropout_forward", lambda: F.dropout_forward(x))
attempt("dropout_backward", lambda: F.dropout_backward(x, big(4, dtype=bool), 0.5))
attempt("matmul", lambda: F.matmul(x, np.ones((4, 2), np.float32)))
attempt("matmul b", lambda: F.matmul(np.ones((2, 4), np.float32), x.T))
attempt("bmm", lambda: F.bmm(big(1, 4), big(4, 1)))
attempt("linear_forward", lambda: F.linear_forward(x, w34))
attempt("linear_backward", lambda: F.linear_backward(big(3), x, w34))
attempt("first_nonfinite", lambda: F.first_nonfinite(x))
model = nn.Sequential(nn.Linear(4, 2))
attempt("predict", lambda: _C.predict(model._layer, x, 16))
attempt("evaluate", lambda: _C.evaluate(model._layer, x, labels, "cross_entropy", "mean", 16))
"""


def test_uncopyable_inputs_raise_memory_error_naming_the_op():
    out = attempts(HUGE_INPUTS, address_space_limit=8 << 30)
    assert len(out) == HUGE_INPUTS.count("attempt("), sorted(out)
    for label, result in out.items():
        op = label.split(" ")[0]
        assert re.fullmatch(rf"MemoryError: \[{op}\] \w[\w ]* needs a C-contiguous copy of shape \(\d+(, \d+)*\) "
                            r"\(\d+\.\d GiB\), which could not be allocated", result), (label, result)
        assert "2147483655" in result


def test_outputs_that_cannot_be_allocated_raise_memory_error():
    out = attempts("""
a, b = np.ones((2**16, 1), np.float32), np.ones((1, 2**16), np.float32)
attempt("matmul", lambda: F.matmul(a, b))
attempt("bmm", lambda: F.bmm(a[None], b[None]))
attempt("linear_forward", lambda: F.linear_forward(a, np.ones((2**16, 1), np.float32)))
model = nn.Sequential(nn.Linear(1, 2**16))
attempt("predict", lambda: fastnn.predict(model, a, batch_size=16))
attempt("small ones still work", lambda: F.matmul(a[:4], b[:, :4]))
""", address_space_limit=8 << 30)
    assert out.pop("small ones still work") == "no error"
    assert len(out) == 4, out
    for label, result in out.items():
        assert re.fullmatch(r"MemoryError: cannot allocate an output array of shape \((65536|1), 65536(, 65536)?\) "
                            r"float32 \(16\.0 GiB\)", result), (label, result)


def test_the_copy_still_works_when_it_fits():
    """The same conversions, where the copy can be made, give the contiguous input's result."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    strided = np.zeros((12, 4), np.float32)
    strided[::2] = x
    np.testing.assert_array_equal(F.relu_forward(strided[::2]), F.relu_forward(x))
    labels = np.array([0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(F.cross_entropy_forward(strided[::2], np.repeat(labels, 2)[::2]),
                                  F.cross_entropy_forward(x, labels))
    mask = np.ones((6, 8), bool)[:, ::2]
    np.testing.assert_array_equal(F.dropout_backward(strided[::2], mask, 0.5), F.dropout_backward(x, mask.copy(), 0.5))


# --- matmul(out=) overlap ---------------------------------------------------------------------


def _overlap_cases():
    """(a, b, out) where out lies in memory a strided input spans (not within its first nbytes)."""
    cases = {}
    buf = np.zeros(100, np.float32)
    big = buf.reshape(10, 10)
    b = np.ones((4, 3), np.float32)
    # a: the first 4 columns of every row (spans 376 bytes, nbytes 160); out: rows 5-7 of buf.
    cases["column slice"] = (big[:, :4], b, buf[50:80].reshape(10, 3))
    # a: a transposed column slice (3, 10), strides (4, 40); out inside its span.
    buf2 = np.zeros(100, np.float32)
    cases["transposed"] = (buf2.reshape(10, 10)[:, :3].T, np.ones((10, 2), np.float32), buf2[40:46].reshape(3, 2))
    # a: rows in reverse (negative stride): data() points at the last row, the array lies below it.
    buf3 = np.zeros(100, np.float32)
    cases["reversed rows"] = (buf3.reshape(10, 10)[::-1, :4], b, buf3[:30].reshape(10, 3))
    # a: every other row; out from row 4 on.
    buf4 = np.zeros(200, np.float32)
    cases["row step"] = (buf4.reshape(20, 10)[::2, :4], b, buf4[40:70].reshape(10, 3))
    # b: a transposed column slice (4, 10); out from row 5 on.
    buf5 = np.zeros(100, np.float32)
    cases["b transposed"] = (np.ones((2, 4), np.float32), buf5.reshape(10, 10)[:, :4].T, buf5[50:70].reshape(2, 10))
    # both negative strides
    buf6 = np.zeros(100, np.float32)
    cases["both axes reversed"] = (buf6.reshape(10, 10)[::-1, ::-1][:, :4], b, buf6[60:90].reshape(10, 3))
    return cases


OVERLAP = _overlap_cases()


@pytest.mark.parametrize("case", OVERLAP)
def test_matmul_out_overlapping_a_strided_input_is_refused(case):
    a, b, out = OVERLAP[case]
    assert np.shares_memory(out, a) or np.shares_memory(out, b)
    with pytest.raises(ValueError, match=r"\[matmul\] out must not share memory with an input"):
        F.matmul(a, b, out=out)


def test_matmul_out_next_to_a_strided_input_is_accepted():
    """Just past the last byte a strided input spans: no overlap, the product is written."""
    buf = np.zeros(200, np.float32)
    a = buf[:100].reshape(10, 10)[:, :4]  # spans elements 0..93
    a[...] = np.arange(40, dtype=np.float32).reshape(10, 4)
    b = np.ones((4, 3), np.float32)
    out = buf[94:124].reshape(10, 3)
    assert not np.shares_memory(out, a)
    F.matmul(a, b, out=out)
    np.testing.assert_array_equal(out, np.asarray(a) @ b)
    rev = buf[:100].reshape(10, 10)[::-1, :4]  # reversed rows: spans the same elements 0..93
    F.matmul(rev, b, out=out)
    np.testing.assert_array_equal(out, np.asarray(rev) @ b)


def test_linear_backward_refuses_accumulators_inside_a_strided_input():
    buf = np.zeros(400, np.float32)
    x = buf.reshape(20, 20)[:, :4]  # (20, 4), read in place, spanning elements 0..383
    gw = buf[100:112].reshape(3, 4)
    assert np.shares_memory(gw, x)
    with pytest.raises(ValueError, match=r"\[linear_backward\] grad_weight_out must not share memory with an input"):
        F.linear_backward(np.ones((20, 3), np.float32), x, np.ones((3, 4), np.float32), grad_weight_out=gw)


# --- read-only inputs -------------------------------------------------------------------------


def _read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_kernels_read_read_only_inputs():
    rng = np.random.default_rng(0)
    x = _read_only(rng.standard_normal((8, 4)).astype(np.float32))
    w = _read_only(rng.standard_normal((3, 4)).astype(np.float32))
    c = _read_only(np.ones(4, np.float32))
    np.testing.assert_array_equal(F.relu_forward(x), np.maximum(x, 0))
    F.relu_backward(x, x)
    F.softmax_forward(x)
    F.matmul(x, w.T)
    F.bmm(_read_only(x.reshape(2, 4, 4)), _read_only(x.reshape(2, 4, 4)))
    F.linear_forward(x, w, _read_only(np.zeros(3, np.float32)))
    F.linear_backward(_read_only(np.ones((8, 3), np.float32)), x, w)
    F.cross_entropy_forward_backward(x, _read_only(np.array([0, 1, 2, 3] * 2)))
    F.mse_forward(x, x)
    F.batch_norm_forward(x, c, c, None, None, True)
    F.dropout_forward(x)
    F.maxout_forward(x, 2)
    # updated in place: refused clearly, never written
    rm = _read_only(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"\[batch_norm_forward\] running_mean is updated in place and must be writeable"):
        F.batch_norm_forward(x, c, c, rm, np.ones(4, np.float32), True)


def test_optimizer_kernels_read_read_only_grads():
    params = np.zeros(6, np.float32)
    grads = _read_only(np.arange(6, dtype=np.float32))
    segments = np.array([[0, 6, 1]], np.int64)
    _C.sgd_step(params, grads, segments, None, False, lr=0.5)
    np.testing.assert_array_equal(params, -0.5 * np.arange(6, dtype=np.float32))
    with pytest.raises(ValueError, match=r"params is updated in place and must be writeable"):
        _C.sgd_step(_read_only(params), np.ones(6, np.float32), segments, None, False, lr=0.5)


# --- sizes and index tables -------------------------------------------------------------------


@pytest.mark.parametrize("in_f, out_f", [(2**32, 2**32), (2**40, 2**30), (2**62, 2)])
def test_linear_parameter_count_must_fit(in_f, out_f):
    """in * out wrapped around int64 (2**32 * 2**32 gave 0 weights and a NumPy reshape error)."""
    with pytest.raises(ValueError, match=rf"\[Linear\] in_features \* out_features = {in_f} \* {out_f} weights is too many"):
        _C.Linear_float32(in_f, out_f)


def test_maxout_backward_output_size_must_fit():
    with pytest.raises(ValueError, match=r"\[maxout_backward\] pieces = 4611686018427387904 is too large for grad_out"):
        F.maxout_backward(np.ones((2, 2), np.float32), np.zeros((2, 2), np.int64), 2**62)


def test_train_epoch_validates_clip_segments():
    """The clip segments index the flat gradient: rows outside it segfaulted."""
    out = attempts("""
model = nn.Sequential(nn.Linear(4, 2))
X, y = np.ones((5, 4), np.float32), np.zeros(5, np.int64)
def run(segments, grads, clip_norm=1.0, clip_value=0.0):
    return _C.train_epoch(model._layer, X, y, "cross_entropy", "mean", grads, [], 2, True, 0, 0, 0, clip_norm,
                          clip_value, np.array(segments, np.int64))
attempt("too long", lambda: run([[0, 10**9, 1]], model.flat_grad()))
attempt("negative offset", lambda: run([[-10**6, 10, 1]], model.flat_grad(), 0.0, 1.0))
attempt("no gradient buffer", lambda: run([[0, 10, 1]], None))
attempt("wrong columns", lambda: run([[0, 10]], model.flat_grad()))
attempt("valid", lambda: run([[0, 8, 3, 4], [8, 2, 1, 0]], model.flat_grad()))
""")
    assert out["too long"] == "ValueError: [train_epoch] segments row 0: [offset 0, size 1000000000] is outside the " \
                              "buffer of 10 elements", out
    assert out["negative offset"].startswith("ValueError: [train_epoch] segments row 0: [offset -1000000, size 10]"), out
    assert out["no gradient buffer"].endswith("is outside the buffer of 0 elements"), out
    assert out["wrong columns"].startswith("ValueError: [train_epoch] segments must have shape (k, 3) or (k, 4)"), out
    assert out["valid"] == "no error", out
