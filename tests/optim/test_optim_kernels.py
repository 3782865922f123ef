"""The fused step kernels called directly (fastnn._C.*_step): segment tables with 3 or 4 columns,
argument checking with clear messages."""

import numpy as np
import pytest

from fastnn._config import _C
from fastnn.reference import optim as R
from tests.conftest import DTYPES, assert_close


def flat(n, dtype, seed=0):
    return np.random.default_rng(seed).normal(size=n).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_three_column_table_and_skipped_segments(dtype):
    """FlatBuffer.segments() output works directly; rows without TRAINABLE and gaps are untouched."""
    n = 40
    p, g = flat(n, dtype), flat(n, dtype, 1)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    segs = np.array([[0, 10, 3], [10, 5, 1], [15, 5, 2], [25, 15, 3]], np.int64)  # [20, 25) is in no segment
    expected = p.copy()
    states = [{}, {}, {}]
    views = [expected[0:10], expected[10:15], expected[25:40]]
    R.adam(views, [g[0:10], g[10:15], g[25:40]], states, [True, False, True], lr=0.1, weight_decay=0.1)
    _C.adam_step(p, g, segs, m, v, None, step=1, lr=0.1, weight_decay=0.1)
    assert_close(p, expected, scale=4)
    np.testing.assert_array_equal(m[15:25], 0)


def test_empty_segment_table_and_empty_segments_do_nothing():
    p, g = flat(8, np.float64), flat(8, np.float64, 1)
    before = p.copy()
    _C.sgd_step(p, g, np.zeros((0, 4), np.int64), None, first_step=True, lr=0.1)
    _C.sgd_step(p, g, np.array([[3, 0, 3, 0]], np.int64), None, first_step=True, lr=0.1)
    np.testing.assert_array_equal(p, before)
    assert _C.clip_grad_norm_(g, np.zeros((0, 3), np.int64), 1.0) == 0.0


def test_max_norm_row_length_is_respected():
    w = np.ones(12, np.float64)
    segs = np.array([[0, 12, 3, 4]], np.int64)  # three rows of four: norm 2 each
    _C.max_norm_(w, segs, 1.0)
    np.testing.assert_allclose(w, 0.5 / (1 + 0.5e-7), rtol=1e-12)


def call_adam(p=None, g=None, segs=None, m=None, v=None, vmax=None, **kw):
    n = 10
    p = np.zeros(n, np.float32) if p is None else p
    args = dict(step=1, lr=0.1)
    args.update(kw)
    return _C.adam_step(p, np.zeros(n, np.float32) if g is None else g,
                        np.array([[0, n, 3, 0]], np.int64) if segs is None else segs,
                        np.zeros(n, np.float32) if m is None else m,
                        np.zeros(n, np.float32) if v is None else v, vmax, **args)


ro = np.zeros(10, np.float32)
ro.flags.writeable = False
shared = np.zeros(10, np.float32)

BAD = [
    (dict(p=np.zeros(10, np.int32)), TypeError, r"\[adam_step\] params must be float32 or float64, got int32"),
    (dict(p=[0.0] * 10), TypeError, r"\[adam_step\] params must be a numpy.ndarray, got list"),
    (dict(g=np.zeros(10, np.float64)), TypeError, r"\[adam_step\] grads must be float32 like params, got float64"),
    (dict(g=np.zeros(9, np.float32)), ValueError, r"\[adam_step\] grads must have 10 elements like params, got 9"),
    (dict(m=np.zeros((2, 5), np.float32)), ValueError, r"\[adam_step\] exp_avg must be 1-D \(a flat buffer\), got shape \(2, 5\)"),
    (dict(v=np.zeros(20, np.float32)[::2]), ValueError, r"\[adam_step\] exp_avg_sq must be C-contiguous"),
    (dict(p=np.zeros(0, np.float32), g=np.zeros(0, np.float32)), ValueError, r"\[adam_step\] params is empty"),
    (dict(p=ro), ValueError, r"\[adam_step\] params is updated in place and must be writeable"),
    (dict(p=shared, m=shared), ValueError, r"\[adam_step\] exp_avg shares memory with params"),
    (dict(amsgrad=True), ValueError, r"\[adam_step\] max_exp_avg_sq is required when amsgrad"),
    (dict(segs=np.array([[0, 10, 3]], np.int32)), TypeError, r"\[adam_step\] segments must be int64, got int32"),
    (dict(segs=np.array([[0, 10]], np.int64)), ValueError, r"\[adam_step\] segments must have shape \(k, 3\) or \(k, 4\)"),
    (dict(segs=np.array([[5, 6, 3]], np.int64)), ValueError, r"segments row 0: \[offset 5, size 6\] is outside the buffer of 10"),
    (dict(segs=np.array([[-1, 2, 3]], np.int64)), ValueError, r"segments row 0: \[offset -1, size 2\] is outside"),
    (dict(segs=np.array([[0, 2, 3], [1, 2, 3]], np.int64)), ValueError, r"segments overlap: \[0, 2\) and \[1, 3\)"),
    (dict(segs=np.array([[0, 2, 4]], np.int64)), ValueError, r"segments row 0: flags must be a combination of TRAINABLE=1 and DECAY=2, got 4"),
    (dict(segs=np.array([[0, 10, 3, 3]], np.int64)), ValueError, r"segments row 0: row_len 3 does not divide size 10"),
    (dict(lr=float("nan")), ValueError, r"\[adam_step\] lr must be finite, got nan"),
    (dict(lr=-0.1), ValueError, r"\[adam_step\] lr must be >= 0"),
    (dict(beta1=1.0), ValueError, r"\[adam_step\] beta1 must be in \[0, 1\), got 1"),
    (dict(eps=float("inf")), ValueError, r"\[adam_step\] eps must be finite"),
    (dict(step=0), ValueError, r"\[adam_step\] step must be >= 1"),
    (dict(max_norm=0.0), ValueError, r"\[adam_step\] max_norm must be None or > 0"),
    (dict(l1=-1.0), ValueError, r"\[adam_step\] l1 must be >= 0"),
]


@pytest.mark.parametrize("kw,exc,match", BAD, ids=[m for _, _, m in BAD])
def test_adam_step_bad_input(kw, exc, match):
    with pytest.raises(exc, match=match):
        call_adam(**kw)


def test_other_steps_bad_input():
    p, g, s = np.zeros(4), np.zeros(4), np.zeros(4)
    segs = np.array([[0, 4, 3]], np.int64)
    with pytest.raises(ValueError, match=r"\[sgd_step\] momentum_buffer is required when momentum != 0"):
        _C.sgd_step(p, g, segs, None, first_step=True, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"\[sgd_step\] Nesterov momentum requires a momentum and zero dampening"):
        _C.sgd_step(p, g, segs, s, first_step=True, lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)
    with pytest.raises(ValueError, match=r"\[adagrad_step\] lr_decay must be >= 0"):
        _C.adagrad_step(p, g, segs, s, step=1, lr=0.1, lr_decay=-1.0)
    with pytest.raises(ValueError, match=r"\[rmsprop_step\] grad_avg is required when centered"):
        _C.rmsprop_step(p, g, segs, s, None, None, lr=0.1, centered=True)
    with pytest.raises(ValueError, match=r"\[rmsprop_step\] momentum_buffer is required when momentum > 0"):
        _C.rmsprop_step(p, g, segs, s, None, None, lr=0.1, momentum=0.5)
    with pytest.raises(ValueError, match=r"\[clip_grad_norm_\] norm_type must be > 0 or inf, got 0"):
        _C.clip_grad_norm_(g, segs, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\[clip_grad_norm_\] max_norm must be >= 0"):
        _C.clip_grad_norm_(g, segs, -1.0)
    with pytest.raises(ValueError, match=r"\[clip_grad_value_\] clip_value must be >= 0"):
        _C.clip_grad_value_(g, segs, -1.0)
    with pytest.raises(ValueError, match=r"\[max_norm_\] max_norm must be > 0"):
        _C.max_norm_(p, segs, 0.0)
