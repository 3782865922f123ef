"""An optimizer follows its parameters when they are repacked into another flat buffer.

``model.double()``, a new ``Sequential`` around the model and a slice ``model[2:]`` move the
parameters (the Parameter objects survive). The trajectory after the move must be the one of a
model that never moved, trained the same steps with the same optimizer state.
"""

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim

OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.1)),
]
IDS = [name for name, _ in OPTIMIZERS]


def data(dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal((32, 6)).astype(dtype), rng.integers(0, 3, 32)


def make_model(dtype=np.float32):
    fastnn.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 8, dtype=dtype), nn.BatchNorm1d(8, dtype=dtype), nn.ReLU(),
                         nn.Linear(8, 3, dtype=dtype))


def steps(model, opt, n, dtype=np.float32):
    X, y = data(dtype)
    return [fastnn.train_step(model, X, y, "cross_entropy", opt, seed=0, step=i) for i in range(n)]


def manual_steps(model, opt, n, dtype=np.float32):
    """model(x), loss, model.backward, opt.step(): the path that does not go through train_step."""
    X, y = data(dtype)
    loss = nn.CrossEntropyLoss()
    model.train()
    out = []
    for _ in range(n):
        opt.zero_grad()
        out.append(loss(model(X), y))
        model.backward(loss.backward())
        opt.step()
    return out


def trained(name, opts, n=3):
    model = make_model()
    opt = getattr(optim, name)(model.parameters(), **opts)
    steps(model, opt, n)
    return model, opt


@pytest.mark.parametrize("name,opts", OPTIMIZERS, ids=IDS)
@pytest.mark.parametrize("move", ["wrap_after", "wrap_before", "slice"])
@pytest.mark.parametrize("run", [steps, manual_steps], ids=["train_step", "step"])
def test_trajectory_after_repack_equals_unmoved(name, opts, move, run):
    moved, opt = trained(name, opts)
    reference, ref_opt = trained(name, opts)
    buffer = moved[0].weight.buffer
    if move == "wrap_after":
        keep = nn.Sequential(moved, nn.Linear(3, 2))
    elif move == "wrap_before":  # the model's parameters land at a nonzero offset of a larger buffer
        keep = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), moved)
    else:
        keep = moved[3:]
    assert moved[3].weight.buffer is not buffer  # they did move
    got = run(moved, opt, 4)
    expected = run(reference, ref_opt, 4)
    assert got == expected
    for (key, a), b in zip(moved.state_dict().items(), reference.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert keep is not None


@pytest.mark.parametrize("name,opts", OPTIMIZERS, ids=IDS)
def test_double_converts_the_state_and_continues(name, opts):
    moved, opt = trained(name, opts)
    # the reference: a float64 model built with the same values and the same state, never converted
    reference = make_model(np.float64)
    reference.load_state_dict(moved.state_dict())
    ref_opt = getattr(optim, name)(reference.parameters(), **opts)
    saved = opt.state_dict()
    saved["state"] = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in saved["state"].items()}
    ref_opt.load_state_dict(saved)

    moved.double()
    assert opt.buffer.dtype == np.float64 and opt.buffer is moved[0].weight.buffer
    got = steps(moved, opt, 4, np.float64)
    expected = steps(reference, ref_opt, 4, np.float64)
    assert got == expected
    for key in opt.state:
        assert opt.state[key].dtype == ref_opt.state[key].dtype
        np.testing.assert_array_equal(opt.state[key], ref_opt.state[key], err_msg=key)
    np.testing.assert_array_equal(moved.flat_parameters(), reference.flat_parameters())


def test_state_moves_with_each_parameter():
    """An optimizer of some parameters only (fine-tuning the last layer): its slice of the state
    follows them to their new offsets."""
    model = make_model()
    last = list(model[3].parameters())
    opt = optim.Adam(last, lr=0.1)
    steps(model, opt, 2)
    before = {id(p): opt.state["exp_avg"][p.offset : p.offset + p.size].copy() for p in last}
    nn.Sequential(nn.Linear(2, 6), model)  # model[3] now sits further into a larger buffer
    for p in last:
        np.testing.assert_array_equal(opt.buffer.params[p.offset : p.offset + p.size], p.data.reshape(-1))
        np.testing.assert_array_equal(opt.state["exp_avg"][p.offset : p.offset + p.size], before[id(p)])
    assert opt.state["exp_avg"].size == opt.buffer.params.size


def test_fit_after_slice_trains_the_model():
    """The slice took the last layer's parameters into its own buffer; fit used to refuse the
    optimizer ("does not hold this model's parameters")."""
    X, y = data()
    model = make_model()
    opt = optim.Adam(model.parameters(), lr=0.05)
    model[2:]
    before = model.flat_parameters().copy()
    history = fastnn.fit(model, X, y, optimizer=opt, epochs=3, batch_size=8, verbose=0, seed=0)
    assert history["loss"][-1] < history["loss"][0]
    assert not np.array_equal(model.flat_parameters(), before)
    assert opt.buffer is model[0].weight.buffer


def test_fit_after_double_keeps_the_named_optimizer_state():
    X, y = data()
    model = make_model()
    fastnn.fit(model, X, y, optimizer="adam", epochs=1, batch_size=8, verbose=0, seed=0)
    opt = model._fit_optimizer[1]
    steps_before = int(opt.state["step"][0])
    model.double()
    fastnn.fit(model, X, y, optimizer="adam", epochs=1, batch_size=8, verbose=0, seed=0)
    assert model._fit_optimizer[1] is opt and opt.state["exp_avg"].dtype == np.float64
    assert int(opt.state["step"][0]) == steps_before + 4


def test_parameters_of_different_dtypes_are_a_clear_error():
    model, opt = trained("Adam", dict(lr=0.01))
    model[3:].double()  # only the last layer converted: one optimizer cannot step both
    with pytest.raises(TypeError, match=r"Adam: its parameters now have different dtypes \['float32', 'float64'\]"):
        opt.step()


@pytest.mark.parametrize("fn", ["fit", "train_step"])
def test_optimizer_of_another_model_is_refused(fn):
    X, y = data()
    model, other = make_model(), make_model()
    opt = optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=fn + r": the optimizer does not hold this model's parameters: it holds Parameter\('weight'"):
        if fn == "fit":
            fastnn.fit(model, X, y, optimizer=opt, verbose=0)
        else:
            fastnn.train_step(model, X, y, "cross_entropy", opt)
    # an optimizer of the whole model refused for a part of it
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="train_step: the optimizer does not hold this model's parameters"):
        fastnn.train_step(model[3:], np.ones((4, 8), np.float32), np.zeros(4, np.int64), "cross_entropy", opt)


def test_no_move_costs_no_relayout():
    model, opt = trained("Adam", dict(lr=0.01))
    state = opt.state["exp_avg"]
    steps(model, opt, 2)
    nn.Linear(3, 3).double()  # another model's repack: this optimizer checks and keeps its arrays
    steps(model, opt, 1)
    assert opt.state["exp_avg"] is state


def test_a_python_parameter_converts_and_is_followed():
    """model.float() on a model with a Parameter(array) owned by a module written in Python used to
    fail (repack: parameters have different dtypes); its optimizer state follows it too."""
    from tests.nn.test_python_parameters import _model

    model = _model(np.float64)
    opt = optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((32, model[0].in_features)), rng.integers(0, 2, 32)
    fastnn.train_step(model, X, y, "cross_entropy", opt)
    scale = model[2].scale.numpy()
    model.float()
    assert model[2].scale.dtype == np.float32 and model.dtype == np.float32
    np.testing.assert_array_equal(model[2].scale.numpy(), scale.astype(np.float32))
    assert opt.buffer is model[2].scale.buffer and opt.state["exp_avg"].dtype == np.float32
    fastnn.train_step(model, X.astype(np.float32), y, "cross_entropy", opt)
    assert not np.array_equal(model[2].scale.numpy(), scale.astype(np.float32))


def test_save_after_a_wrap_stores_the_model_layout(tmp_path):
    """The optimizer followed the model into a larger buffer; the file still holds its state in
    the layout load rebuilds (the model's own buffer)."""
    model, opt = trained("Adam", dict(lr=0.01))
    nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), model)
    manual_steps(model, opt, 2)
    path = tmp_path / "m.fnn"
    fastnn.save(path, model, opt)
    loaded, loaded_opt, _ = fastnn.load(path, with_optimizer=True)
    for key in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(loaded_opt.state[key], opt.state[key])
    assert loaded_opt.state["exp_avg"].size == sum(p.size for p in model.parameters())
