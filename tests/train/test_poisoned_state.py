"""State that would silently go wrong is refused where it enters: data is checked after the cast to
the model's dtype (float64 1e300 is inf in float32), complex values are refused instead of losing
their imaginary part, and loaded statistics and optimizer state must be possible values."""

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim


def model(dtype=np.float32):
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4, dtype=dtype), nn.BatchNorm1d(4, dtype=dtype), nn.ReLU(), nn.Linear(4, 2, dtype=dtype))


def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, 3)), rng.integers(0, 2, 8)


ENTRIES = {
    "fit": lambda m, X, y: fastnn.fit(m, X, y, epochs=1, verbose=0),
    "evaluate": lambda m, X, y: fastnn.evaluate(m, X, y),
    "predict": lambda m, X, y: fastnn.predict(m, X),
    "train_step": lambda m, X, y: fastnn.train_step(m, X, y, "cross_entropy", optim.SGD(m.parameters(), lr=0.1)),
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_a_value_that_overflows_the_model_dtype_is_refused(entry):
    X, y = data()
    X[5, 2] = 1e300  # finite in float64, inf in the float32 model
    m = model()
    before = m.state_dict()
    with pytest.raises(ValueError, match=r"[Xx]\[5, 2\] = 1e\+300 is too large for the model's dtype float32"):
        ENTRIES[entry](m, X, y)
    for key, value in m.state_dict().items():
        np.testing.assert_array_equal(value, before[key])
    X[5, 2] = 1e300
    assert ENTRIES[entry](model(np.float64), X, y) is not None  # the same data is fine in float64


def test_regression_targets_are_checked_after_the_cast():
    X, _ = data()
    y = np.zeros((8, 2))
    y[3, 1] = -1e300
    with pytest.raises(ValueError, match=r"y\[3, 1\] = -1e\+300 is too large for the model's dtype float32"):
        fastnn.fit(model(), X, y, loss="mse", verbose=0)
    y[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN or infinity \(first at index \(3, 1\)\)"):
        fastnn.fit(model(), X, y, loss="mse", verbose=0)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_complex_data_is_refused(entry):
    X, y = data()
    with pytest.raises(TypeError, match="[Xx] must be a numeric array, got dtype complex128"):
        ENTRIES[entry](model(), X + 1j, y)


def test_complex_targets_and_model_input_are_refused():
    X, _ = data()
    with pytest.raises(TypeError, match="y must be numeric, got complex128"):
        fastnn.fit(model(), X, np.zeros((8, 2)) + 1j, loss="mse", verbose=0)
    with pytest.raises(TypeError, match="x is complex64 but the model is float32"):
        model()(X.astype(np.complex64))


def test_complex_values_never_reach_parameters():
    m = model()
    with pytest.raises(TypeError, match=r"Parameter 'weight': values must be real numbers, got dtype complex128"):
        m[0].weight.data = np.ones((4, 3)) + 1j
    state = m.state_dict()
    state["0.weight"] = state["0.weight"] + 1j
    with pytest.raises(TypeError, match=r"load_state_dict: '0.weight': values must be real numbers, got dtype complex"):
        m.load_state_dict(state)
    with pytest.raises(TypeError, match="float32 or float64, got complex128"):
        nn.Parameter(np.ones(3, complex))


def test_load_state_dict_checks_after_the_cast_and_changes_nothing():
    m = model()
    before = m.state_dict()
    state = {k: v.astype(np.float64) for k, v in before.items()}
    state["3.bias"][1] = 1e39  # > float32 max
    with pytest.raises(ValueError, match=r"'3.bias' contains NaN or infinity \(or values too large for float32\)"):
        m.load_state_dict(state)
    for key, value in m.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_negative_running_var_is_refused():
    m = model()
    state = m.state_dict()
    state["1.running_var"] = np.array([1, 1, -0.5, 1], np.float32)
    with pytest.raises(ValueError, match=r"'1.running_var' has a negative variance \(1.running_var\[2\] = -0.5\)"):
        m.load_state_dict(state)
    np.testing.assert_array_equal(m[1].running_var, 1)


def stepped(cls, **kwargs):
    m = model()
    opt = cls(m.parameters(), **kwargs)
    X, y = data()
    fastnn.train_step(m, X, y, "cross_entropy", opt)
    return m, opt


NONNEGATIVE = [(optim.Adam, dict(amsgrad=True), "exp_avg_sq"), (optim.Adam, dict(amsgrad=True), "max_exp_avg_sq"),
               (optim.RMSprop, {}, "square_avg"), (optim.Adagrad, {}, "sum")]


@pytest.mark.parametrize("cls,kwargs,key", NONNEGATIVE, ids=[f"{c.__name__}-{k}" for c, _, k in NONNEGATIVE])
def test_negative_or_nan_squares_are_refused(cls, kwargs, key):
    _, opt = stepped(cls, **kwargs)
    saved = opt.state_dict()
    saved["state"][key][3] = -1.0
    with pytest.raises(ValueError, match=rf"{cls.__name__}.load_state_dict: state\['{key}'\] must be >= 0 .* at index 3"):
        opt.load_state_dict(saved)
    saved["state"][key][3] = np.nan
    with pytest.raises(ValueError, match=rf"state\['{key}'\] contains NaN or infinity \(first at index 3"):
        opt.load_state_dict(saved)


@pytest.mark.parametrize("cls,key", [(optim.Adam, "exp_avg"), (optim.SGD, "momentum_buffer")])
def test_nonfinite_optimizer_state_is_refused(cls, key):
    _, opt = stepped(cls, lr=0.1, **({"momentum": 0.9} if cls is optim.SGD else {}))
    before = {k: v.copy() for k, v in opt.state.items()}
    saved = opt.state_dict()
    saved["state"][key][0] = np.inf
    with pytest.raises(ValueError, match=rf"state\['{key}'\] contains NaN or infinity"):
        opt.load_state_dict(saved)
    for k, v in opt.state.items():
        np.testing.assert_array_equal(v, before[k])


def test_bad_step_counts_are_refused():
    _, opt = stepped(optim.Adam)
    saved = opt.state_dict()
    saved["state"]["step"] = np.array([-3])
    with pytest.raises(ValueError, match=r"state\['step'\] has negative counts"):
        opt.load_state_dict(saved)
    _, opt = stepped(optim.SGD, lr=0.1, momentum=0.9)
    saved = opt.state_dict()
    saved["state"]["momentum_buffer_initialized"] = np.array([7])
    with pytest.raises(ValueError, match=r"momentum_buffer_initialized'\] must hold 0 or 1"):
        opt.load_state_dict(saved)


def test_a_learning_rate_made_invalid_between_steps_is_refused():
    m, opt = stepped(optim.SGD, lr=0.1)
    X, y = data()
    for bad in (-0.1, float("nan")):
        opt.param_groups[0]["lr"] = bad
        with pytest.raises(ValueError, match=r"SGD.step: param_groups\[0\]: Invalid learning rate"):
            opt.step()
        with pytest.raises(ValueError, match=r"SGD.step: param_groups\[0\]: Invalid learning rate"):
            fastnn.fit(m, X, y, optimizer=opt, verbose=0)


def test_bad_files_are_model_file_errors(tmp_path):
    m, opt = stepped(optim.Adam)
    path = tmp_path / "m.fnn"
    state = m.state_dict()
    m[1].running_var[...] = -1  # bypasses load_state_dict: only load can notice
    fastnn.save(path, m, opt)
    with pytest.raises(fastnn.io.ModelFileError, match="negative variance"):
        fastnn.load(path)
    m.load_state_dict(state)
    opt.state["exp_avg_sq"][0] = -1
    fastnn.save(path, m, opt)
    fastnn.load(path)  # the model alone is fine
    with pytest.raises(fastnn.io.ModelFileError, match=r"state\['exp_avg_sq'\] must be >= 0"):
        fastnn.load(path, with_optimizer=True)


def test_a_read_only_input_is_accepted():
    """It used to raise a bare "array is not writeable" in model(x) and model.backward."""
    m = model()
    m.eval()
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    expected = m(x.copy())
    x.flags.writeable = False
    np.testing.assert_array_equal(m(x), expected)
    np.testing.assert_array_equal(fastnn.predict(m, x), expected)
    g = np.ones((5, 2), np.float32)
    g.flags.writeable = False
    m.train()
    m(x)
    assert m.backward(g).shape == (5, 3)
