"""Parameters owned by modules written in Python: nn.Parameter(array) as a module attribute
joins the model's flat buffer, state_dict, optimizers and fit."""

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from tests.train.cases import CLASSES, FEATURES, assert_state_equal, blobs


class LearnedScale(nn.Module):
    """y = x * scale (per feature), written in NumPy."""

    def __init__(self, n, dtype=np.float64):
        super().__init__()
        self.scale = nn.Parameter(np.linspace(0.5, 1.5, n).astype(dtype))

    def forward(self, x):
        self.x = x
        return x * self.scale

    def backward(self, g):
        self.scale.grad[...] += (g * self.x).sum(axis=0)
        return g * self.scale


def _model(dtype=np.float64):
    fastnn.manual_seed(2)
    return nn.Sequential(nn.Linear(FEATURES, 8, dtype=dtype), nn.Tanh(), LearnedScale(8, dtype),
                         nn.Linear(8, CLASSES, dtype=dtype))


def test_a_python_parameter_is_part_of_the_model():
    model = _model()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.scale", "3.weight", "3.bias"]
    scale = model[2].scale
    assert scale.buffer is model[0].weight.buffer  # moved into the model's one flat buffer
    assert model.flat_parameters().size == sum(p.size for p in model.parameters())
    np.testing.assert_array_equal(model.state_dict()["2.scale"], np.linspace(0.5, 1.5, 8))
    model.load_state_dict({**model.state_dict(), "2.scale": np.full(8, 2.0)})
    np.testing.assert_array_equal(np.asarray(scale), np.full(8, 2.0))


def test_model_gradient_with_a_python_parameter_matches_finite_differences():
    model = _model()
    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(5, FEATURES)), rng.normal(size=(5, CLASSES))
    model.zero_grad()
    model(x)
    model.backward(g)
    analytic = model.flat_grad().copy()
    theta = model.flat_parameters()
    numeric = np.empty_like(analytic)
    for i in range(theta.size):
        old = theta[i]
        theta[i] = old + 1e-6
        up = float((model(x) * g).sum())
        theta[i] = old - 1e-6
        down = float((model(x) * g).sum())
        theta[i] = old
        numeric[i] = (up - down) / 2e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_fit_trains_a_python_parameter_as_a_hand_written_loop_does():
    X, y = blobs(60, dtype=np.float64)
    a, b = _model(), _model()
    opt_a = optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    opt_b = optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    fastnn.fit(a, X, y, optimizer=opt_a, epochs=2, batch_size=16, shuffle=False, verbose=0)
    loss = nn.CrossEntropyLoss()
    for _ in range(2):
        for start in range(0, 60, 16):
            opt_b.zero_grad()
            loss(b(X[start:start + 16]), y[start:start + 16])
            b.backward(loss.backward())
            opt_b.step()
    assert_state_equal(a, b, exact=False, rtol=1e-10, atol=1e-12)
    assert not np.allclose(np.asarray(a[2].scale), np.linspace(0.5, 1.5, 8))  # it was trained


def test_parameter_from_an_array_checks_its_input():
    with pytest.raises(TypeError, match="float32 or float64, got int64"):
        nn.Parameter(np.arange(3))
    with pytest.raises(TypeError, match="takes no offset or shape"):
        nn.Parameter(np.zeros(3), 0, (3,))

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match="call Module.__init__"):
        Early()


def test_a_python_parameter_must_have_the_model_dtype():
    with pytest.raises(TypeError, match="different dtypes"):
        nn.Sequential(nn.Linear(3, 4), LearnedScale(4, np.float64))


def test_a_python_parameter_gets_weight_decay_by_default():
    """nn.Parameter(array), like torch.nn.Parameter in an optimizer, is decayed unless told otherwise."""
    p = nn.Parameter(np.ones(3))
    assert p.weight_decay is True and p.requires_grad is True
    assert not nn.Parameter(np.ones(3), weight_decay=False).weight_decay
    for decay in (True, False):
        model = _model()
        scale = model[2].scale
        if not decay:
            scale.weight_decay = False
        before = scale.numpy()
        model.zero_grad()  # no gradient: only the weight decay moves it
        optim.SGD(model.parameters(), lr=0.1, weight_decay=0.5).step()
        if decay:
            np.testing.assert_allclose(np.asarray(scale), before * (1 - 0.1 * 0.5), rtol=1e-15)
        else:
            np.testing.assert_array_equal(np.asarray(scale), before)
