"""fit / evaluate / predict / train_step need a model whose output keeps the batch as its first
dimension, with one shape per sample: a model ending in Flatten(0) made predict overflow its
result (heap corruption) and the loss read labels past the batch. Crash cases run in a subprocess."""

import re

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from tests.isolation import attempts

SETUP = """
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 16)).astype(np.float32)
y = rng.integers(0, 8, 64)
model = nn.Sequential(nn.Linear(16, 8), nn.Flatten(0))
"""

NOT_BATCH_FIRST = r"the model's output for a batch of {n} samples? has shape \({m},\): its first dimension must be the batch"


def test_flatten0_model_is_refused_by_every_entry_point():
    out = attempts(SETUP + """
attempt("predict", lambda: fastnn.predict(model, X, batch_size=16))
attempt("evaluate", lambda: fastnn.evaluate(model, X, y))
attempt("fit", lambda: fastnn.fit(model, X, y, verbose=0))
attempt("train_step", lambda: fastnn.train_step(model, X, y, "cross_entropy", optim.SGD(model.parameters(), lr=0.1)))
""")
    for entry in ("predict", "evaluate", "fit", "train_step"):  # they probe the model with one sample first
        assert re.fullmatch(r"ValueError: X has shape \(64, 16\): \[predict\] " + NOT_BATCH_FIRST.format(n=1, m=8),
                            out[entry]), (entry, out[entry])


def test_the_cpp_loops_check_the_output_themselves():
    """The same checks in train_epoch, evaluate and predict, without fit's one-sample probe first."""
    out = attempts(SETUP + """
grads = model.flat_grad()
steps = optim.SGD(model.parameters(), lr=0.1)._deferred_steps()
attempt("predict", lambda: _C.predict(model._layer, X, 16))
attempt("evaluate", lambda: _C.evaluate(model._layer, X, y, "cross_entropy", "mean", 16))
attempt("train", lambda: _C.train_epoch(model._layer, X, y, "cross_entropy", "mean", grads, steps, 16, True, 0, 0, 0))
attempt("mse", lambda: _C.evaluate(model._layer, X, np.zeros((64, 8), np.float32), "mse", "mean", 16))
""")
    assert out["predict"] == "ValueError: [predict] " + "the model's output for a batch of 16 samples has shape (128,): " \
                                                        "its first dimension must be the batch", out
    for entry, op in (("evaluate", "evaluate"), ("train", "train"), ("mse", "evaluate")):
        assert re.fullmatch(r"ValueError: \[" + op + r"\] " + NOT_BATCH_FIRST.format(n=16, m=128), out[entry]), out[entry]


# A Python module whose output width depends on the batch size: (n, 2) for batches of 16, (n, 3) for 8.
CHANGING = """
class Widening(nn.Module):
    def forward(self, x):
        self.x = x
        return np.repeat(x[:, :1], 1 + len(x) % 3, axis=1)
    def backward(self, g):
        return np.zeros_like(self.x)

rng = np.random.default_rng(0)
X = rng.standard_normal((40, 4)).astype(np.float32)
y = rng.integers(0, 2, 40)
model = nn.Sequential(nn.Linear(4, 4), Widening())
"""


def test_output_shape_must_not_change_between_batches():
    out = attempts(CHANGING + """
attempt("predict", lambda: fastnn.predict(model, X, batch_size=16))
attempt("evaluate", lambda: fastnn.evaluate(model, X, y, batch_size=16))
attempt("fit", lambda: fastnn.fit(model, X, y, batch_size=16, shuffle=False, verbose=0))
attempt("predict one batch", lambda: fastnn.predict(model, X[:16], batch_size=16).shape)
""")
    changed = r"the model's output has shape \(8, 3\) for a batch of 8, but \(16, 2\) for the first batch: its shape " \
              r"per sample must not change between batches"
    for entry, op in (("predict", "predict"), ("evaluate", "evaluate"), ("fit", "train")):
        assert re.fullmatch(r"ValueError: \[" + op + r"\] " + changed, out[entry]), (entry, out[entry])
    assert out["predict one batch"] == "no error", out


def test_batch_size_beyond_the_data_is_one_batch():
    """batch_size near 2**63 overflowed the batch count (d.n + batch_size - 1): no batch ran."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    results = []
    for bs in (20, 2**62, 2**63 - 1):
        fastnn.manual_seed(3)
        model = nn.Sequential(nn.Linear(4, 3))
        opt = optim.SGD(model.parameters(), lr=0.5)
        hist = fastnn.fit(model, X, y, optimizer=opt, batch_size=bs, epochs=2, shuffle=False, verbose=0, seed=0)
        results.append((model.flat_parameters().copy(), hist.history["loss"]))
        assert np.isfinite(hist.history["loss"]).all()
    for params, loss in results[1:]:
        np.testing.assert_array_equal(params, results[0][0])
        assert loss == results[0][1]
    fastnn.manual_seed(3)
    assert not np.array_equal(results[0][0], nn.Sequential(nn.Linear(4, 3)).flat_parameters())  # it trained


@pytest.mark.parametrize("batch_size", [1, 7, 63, 64, 65, 2**62])
def test_predict_matches_one_forward_for_any_batch_size(batch_size):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 6)).astype(np.float32)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    model.eval()
    np.testing.assert_allclose(fastnn.predict(model, X, batch_size=batch_size), model(X), rtol=1e-6, atol=1e-6)


def test_one_dimensional_batch_first_output_is_accepted():
    """(N, 1) -> Flatten(0) -> (N,): still batch first, one value per sample (a regression output)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((32, 4)).astype(np.float32)
    t = rng.standard_normal((32, 1)).astype(np.float32)
    model = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))
    assert fastnn.predict(model, X, batch_size=5).shape == (32,)
    assert np.isfinite(fastnn.evaluate(model, X, t, loss="mse")["loss"])
    fastnn.fit(model, X, t, loss="mse", batch_size=5, verbose=0)
