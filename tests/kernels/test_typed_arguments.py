"""The few kernel arguments that the bindings declare as bool/float/int are checked in Python by
their declared type (fastnn._validate.check_binding_arguments): an error naming the argument, never
pybind11's "incompatible function arguments" dump, and None is not read as False."""

import numpy as np
import pytest

from fastnn import functional as F

X = np.ones((4, 3), np.float32)
C = np.ones(3, np.float32)


def bn_forward(**kw):
    args = dict(x=X, weight=C, bias=C * 0, running_mean=C * 0, running_var=C.copy(), training=True)
    args.update(kw)
    return F.batch_norm_forward(**args)


@pytest.mark.parametrize("call, message", [
    (lambda: bn_forward(training="yes"), "[batch_norm_forward] training must be True or False, got 'yes'"),
    (lambda: bn_forward(training=None), "[batch_norm_forward] training must be True or False, got None"),
    (lambda: bn_forward(momentum=None), "[batch_norm_forward] momentum must be a real number, got None"),
    (lambda: bn_forward(eps="1e-5"), "[batch_norm_forward] eps must be a real number, got '1e-5'"),
    (lambda: F.batch_norm_forward(X, C, C * 0, C * 0, C.copy(), "yes"),
     "[batch_norm_forward] training must be True or False, got 'yes'"),
    (lambda: F.dropout_forward(X, 0.5, 0, 0, None), "[dropout_forward] training must be True or False, got None"),
    (lambda: F.batch_norm_fold(C, C, C, C, eps=None), "[batch_norm_fold] eps must be a real number, got None"),
])
def test_a_wrong_type_names_the_argument(call, message):
    with pytest.raises(TypeError) as e:
        call()
    assert str(e.value) == message
    assert "incompatible function arguments" not in str(e.value)


def test_right_types_still_work_positionally_by_keyword_and_as_numpy_scalars():
    y1 = bn_forward(training=True, momentum=0.1, eps=1e-5)[0]
    y2 = F.batch_norm_forward(X, C, C * 0, C * 0, C.copy(), np.bool_(True), np.float32(0.1), np.float64(1e-5))[0]
    np.testing.assert_array_equal(y1, y2)
    y, mask = F.dropout_forward(X, 0.5, 0, 0, False)
    np.testing.assert_array_equal(y, X)  # eval mode: identity


def test_the_compiled_module_names_typed_arguments_too():
    from fastnn._config import _C

    with pytest.raises(TypeError, match=r"^\[Flatten\.forward\] training must be True or False, got None$"):
        _C.Flatten_float32(1, -1).forward(X, None)
    with pytest.raises(TypeError, match=r"^\[Linear\] out_features must be an integer that fits 64 bits, got 'a'$"):
        _C.Linear_float32(2, "a", True, "none", 0.01)
    with pytest.raises(TypeError, match=r"^\[clip_grad_norm_\] max_norm must be a real number, got None$"):
        _C.clip_grad_norm_(X.reshape(-1), None, None)
    with pytest.raises(ValueError, match=r"^\[predict\] batch_size must be an integer that fits 64 bits"):
        _C.predict(None, X, 2**64)
