"""A module written in Python inside a Sequential: what its forward and backward return is checked
every call before a C++ layer reads it (type, dtype, emptiness; the batch first; the gradient's
shape), and the container checks every child's output against its output_shape promise.
Cases that crashed the process before (SIGSEGV, SIGFPE, heap corruption) run in a subprocess."""

import inspect
import re

import numpy as np
import pytest

from fastnn import nn
import fastnn
from tests.isolation import attempts

# Fn(fwd, bwd, shape): a Python module whose forward is fwd(x), backward bwd(g, x) and, when
# given, output_shape shape(s).


class Fn(nn.Module):
    def __init__(self, fwd=lambda x: x, bwd=lambda g, x: g, shape=None):
        super().__init__()
        self.fwd, self.bwd = fwd, bwd
        if shape is not None:
            self.output_shape = shape

    def forward(self, x):
        self.x = x
        return self.fwd(x)

    def backward(self, g):
        return self.bwd(g, self.x)


# The same class in the subprocesses, with data.
MODULE = inspect.getsource(Fn) + """
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 16)).astype(np.float32)
y = rng.integers(0, 4, 64)
"""


X = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
y = np.random.default_rng(0).integers(0, 4, 64)

KEEP_BATCH = r"for an input of shape \(\d+, 8\): its output must keep the batch \(\d+\) as its first dimension"

# forward result -> (error type, message in every entry point; the batch is 64 in model(X), 16 in predict...)
FORWARD_CASES = {
    "0-d": ("np.asarray(x.sum(), x.dtype)", "ValueError", r"child 1 \(Fn\) returned shape \(\) " + KEEP_BATCH),
    "no rows": ("x[:0]", "ValueError", r"\[Fn\.forward\] returned an empty array of shape \(0, 8\)"),
    "fewer rows": ("x[:3]", "ValueError", r"child 1 \(Fn\) returned shape \(3, 8\) " + KEEP_BATCH),
    "more rows": ("np.concatenate([x, x])", "ValueError", r"child 1 \(Fn\) returned shape \(\d+, 8\) " + KEEP_BATCH),
    "flattened": ("x.reshape(-1)", "ValueError", r"child 1 \(Fn\) returned shape \(\d+,\) " + KEEP_BATCH),
    "no features": ("x[:, :0]", "ValueError", r"\[Fn\.forward\] returned an empty array of shape \(\d+, 0\)"),
    "float64": ("x.astype(np.float64)", "TypeError", r"\[Fn\.forward\] returned float64, the model is float32"),
    "list": ("x.tolist()", "TypeError", r"\[Fn\.forward\] must return a numpy\.ndarray, got list"),
}


@pytest.mark.parametrize("case", FORWARD_CASES)
def test_forward_result_is_checked_in_every_entry_point(case):
    result, error, message = FORWARD_CASES[case]
    out = attempts(MODULE + f"""
model = nn.Sequential(nn.Linear(16, 8), Fn(lambda x: {result}), nn.Linear(8, 4))
attempt("call", lambda: model(X))
attempt("predict", lambda: fastnn.predict(model, X, batch_size=16))
attempt("evaluate", lambda: fastnn.evaluate(model, X, y, batch_size=16))
attempt("fit", lambda: fastnn.fit(model, X, y, batch_size=16, verbose=0))
attempt("train_step", lambda: fastnn.train_step(model, X, y, "cross_entropy", optim.SGD(model.parameters(), lr=0.1)))
attempt("predict (C++)", lambda: _C.predict(model._layer, X, 16))
""")
    assert len(out) == 6, out
    for entry, text in out.items():
        assert text.startswith(error + ": "), (entry, text)
        assert re.search(message, text), (entry, text)
    if error == "ValueError" and case != "no rows" and case != "no features":  # the exact shapes in model(X)
        assert "for an input of shape (64, 8)" in out["call"] and "batch (64)" in out["call"], out["call"]


# backward result -> message (the input of Fn's forward is (64, 8) in model(X), (16, 8) in fit)
BACKWARD_CASES = {
    "more rows": "np.concatenate([g, g])",
    "fewer rows": "g[:3]",
    "other features": "g[:, :4].copy()",
    "flattened": "g.reshape(-1)",
    "0-d": "np.asarray(g.sum(), g.dtype)",
    "transposed": "np.ascontiguousarray(g.T)",
}


@pytest.mark.parametrize("case", BACKWARD_CASES)
def test_backward_result_must_have_the_input_shape(case):
    out = attempts(MODULE + f"""
model = nn.Sequential(nn.Linear(16, 8), Fn(bwd=lambda g, x: {BACKWARD_CASES[case]}), nn.Linear(8, 4))
out = model(X)
attempt("backward", lambda: model.backward(np.ones_like(out)))
attempt("fit", lambda: fastnn.fit(model, X, y, batch_size=16, verbose=0))
attempt("train_step", lambda: fastnn.train_step(model, X, y, "cross_entropy", optim.SGD(model.parameters(), lr=0.1)))
""")
    for entry, n in (("backward", 64), ("fit", 16), ("train_step", 64)):
        assert out[entry].startswith("ValueError: [Sequential] child 1 (Fn) returned an input gradient of shape "), out
        assert re.search(rf"but its input had shape \({n}, 8\)$", out[entry]), out[entry]


def test_backward_dtype_and_type_are_checked():
    model = nn.Sequential(nn.Linear(16, 8), Fn(bwd=lambda g, x: g.astype(np.float64)), nn.Linear(8, 4))
    out = model(X)
    with pytest.raises(TypeError, match=r"\[Fn\.backward\] returned float64, the model is float32"):
        model.backward(np.ones_like(out))
    model = nn.Sequential(nn.Linear(16, 8), Fn(bwd=lambda g, x: None), nn.Linear(8, 4))
    out = model(X)
    with pytest.raises(TypeError, match=r"\[Fn\.backward\] must return a numpy\.ndarray, got NoneType"):
        model.backward(np.ones_like(out))


def test_a_correct_module_still_trains_and_matches_the_builtin():
    """The checks change nothing for a module that keeps the contract (here: ReLU in NumPy)."""
    relu = Fn(lambda x: np.maximum(x, 0), lambda g, x: g * (x > 0))
    a = nn.Sequential(nn.Linear(16, 8), relu, nn.Linear(8, 4))
    b = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    b.load_state_dict(a.state_dict())
    np.testing.assert_allclose(a(X), b(X), rtol=1e-6, atol=1e-6)
    ga = a.backward(np.ones((64, 4), np.float32))
    gb = b.backward(np.ones((64, 4), np.float32))
    np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-5)
    hist = fastnn.fit(a, X, y, batch_size=16, epochs=2, verbose=0, seed=0)
    assert np.isfinite(hist.history["loss"]).all()


def test_output_shape_of_a_python_module():
    """Without output_shape only the batch is promised; with one, the module's own promise."""
    assert nn.Sequential(nn.Linear(16, 8), Fn())._layer.output_shape((64, 16)) == (64, ...)
    assert nn.Sequential(nn.Linear(16, 8), Fn(), nn.Linear(8, 4))._layer.output_shape((64, 16)) == (...,)
    half = Fn(lambda x: x[:, :4], lambda g, x: np.concatenate([g, 0 * g], axis=1), shape=lambda s: (s[0], s[1] // 2))
    model = nn.Sequential(nn.Linear(16, 8), half, nn.Linear(4, 2))
    assert model._layer.output_shape((64, 16)) == (64, 2)
    assert model(X).shape == (64, 2)
    assert model.backward(np.ones((64, 2), np.float32)).shape == (64, 16)


def test_output_shape_promise_is_checked():
    liar = Fn(shape=lambda s: (s[0], 4))  # promises 4 features, returns its 8
    model = nn.Sequential(nn.Linear(16, 8), liar, nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"\[Sequential\] child 1 \(Fn\) returned shape \(64, 8\) for an input of "
                                         r"shape \(64, 8\), but its output_shape promised \(64, 4\)"):
        model(X)


@pytest.mark.parametrize("promise", ["(5, 8)", "(s[0], 0)", "(s[0], -1)", "(s[0], 2.5)", "'(64, 8)'", "(s[0], True)",
                                     "()", "None"])
def test_output_shape_must_return_positive_ints_keeping_the_batch(promise):
    model = nn.Sequential(nn.Linear(16, 8), Fn(shape=eval(f"lambda s: {promise}")), nn.Linear(8, 2))
    with pytest.raises(ValueError, match=r"\[Fn\.output_shape\] must return a tuple of positive ints starting with the "
                                         r"batch \(64\) for the input shape \(64, 8\), got "):
        model(X)


def test_output_shape_must_be_a_method():
    model = nn.Sequential(nn.Linear(16, 8), Fn(shape=(64, 8)))
    with pytest.raises(TypeError, match=r"\[Fn\.output_shape\] must be a method output_shape\(shape\) -> tuple, got a tuple"):
        model(X)


def test_output_shape_errors_propagate():
    def refuse(s):
        raise ValueError(f"Fn wants 4 features, got {s}")

    model = nn.Sequential(nn.Linear(16, 8), Fn(shape=refuse))
    with pytest.raises(ValueError, match=r"Fn wants 4 features, got \(64, 8\)"):
        model(X)


def test_training_flag_is_restored_when_forward_raises():
    """evaluate forces eval mode on the module for its forward; an exception must not leave it so."""
    def boom(x):
        raise RuntimeError("boom")

    m = Fn(boom)
    model = nn.Sequential(nn.Linear(16, 8), m)
    model.train()
    with pytest.raises(RuntimeError, match="boom"):
        fastnn.evaluate(model, X, y)
    assert m.training is True


def test_backward_after_a_failed_forward_is_refused():
    """A forward that raised leaves the layers half updated (Linear kept the new input's pointer):
    backward must not run on that state (it read out of bounds)."""
    out = attempts("""
lin = nn.Linear(16, 8)
X = np.ones((64, 16), np.float32)
lin(X)
attempt("forward", lambda: lin(np.ones((64, 4), np.float32)))
attempt("backward", lambda: lin.backward(np.ones((64, 8), np.float32)))
seq = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
seq(X)
attempt("seq forward", lambda: seq(np.ones((64, 4), np.float32)))
attempt("seq backward", lambda: seq.backward(np.ones((64, 2), np.float32)))
""")
    assert out["forward"].startswith("ValueError: [Linear] expected input (N, 16), got (64, 4)"), out
    assert out["backward"].startswith("ValueError: [Linear.backward] backward called before forward"), out
    assert out["seq forward"].startswith("ValueError: [Linear] expected input (N, 16)"), out
    assert out["seq backward"].startswith("ValueError: [Sequential.backward] backward called before forward"), out


def test_read_only_inputs_are_accepted():
    """Layers never write their input or the gradient given to backward: read-only arrays work."""
    model = nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 4),
                          Fn(lambda x: x * 2, lambda g, x: g * 2), nn.Flatten(), nn.Softmax(dim=1))
    xr = X.copy()
    xr.flags.writeable = False
    fastnn.manual_seed(1)
    out = model(xr)
    fastnn.manual_seed(1)
    np.testing.assert_array_equal(out, model(X.copy()))
    g = np.ones_like(out)
    g.flags.writeable = False
    gx = model.backward(g)
    assert gx.shape == X.shape
    np.testing.assert_array_equal(xr, X)  # unchanged
    assert fastnn.predict(model, xr).shape == (64, 4)


def test_nested_containers_check_their_own_children():
    bad = Fn(lambda x: x[:3])
    inner = nn.Sequential(nn.Linear(16, 8), bad)
    model = nn.Sequential(inner, nn.Linear(8, 4))
    assert model._layer.output_shape((64, 16)) == (...,)  # nothing is promised after a Python module
    with pytest.raises(ValueError, match=r"\[Sequential\] child 1 \(Fn\) returned shape \(3, 8\) for an input of shape "
                                         r"\(64, 8\): its output must keep the batch \(64\)"):
        model(X)
    good = nn.Sequential(nn.Sequential(nn.Linear(16, 8), Fn(shape=lambda s: s)), nn.Linear(8, 4))
    assert good._layer.output_shape((64, 16)) == (64, 4)
    assert good(X).shape == (64, 4)


def test_raw_layers_with_unbound_parameters_refuse_to_run():
    """fastnn.nn binds every layer's parameters; a raw _C layer that was never bound read them
    through a null pointer."""
    out = attempts("""
x = np.ones((4, 2), np.float32)
attempt("linear", lambda: _C.Linear_float32(2, 1, True, 'none', 0.01).forward(x))
attempt("prelu", lambda: _C.PReLU_float32(2).forward(x))
attempt("seq", lambda: _C.Sequential_float32([_C.Linear_float32(2, 1, True, 'none', 0.01)]).forward(x))
free = _C.Pointwise_float32('ReLU', 0.0)
attempt("relu", lambda: free.forward(x))
""")
    for k in ("linear", "prelu", "seq"):
        assert "ValueError" in out[k] and "parameters have no buffer yet (call bind_params first)" in out[k], out
    assert out["relu"] == "no error", out
