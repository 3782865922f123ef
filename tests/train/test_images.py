"""fit / evaluate / predict / train_step on image tensors (N, C, H, W): the C++ epoch loop gathers
whole samples of any shape (shuffling, batches, validation), and a sample shape the model does not
take is a clear error naming the data's shape and the layer's."""

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from tests.train.cases import assert_state_equal, fashion_subset, metrics


def _images(n_train=600, n_test=200):
    X, y, Xt, yt = fashion_subset(n_train, n_test)
    return X.reshape(-1, 1, 28, 28), y, Xt.reshape(-1, 1, 28, 28), yt


def _mlp(flatten, seed=0):
    # 80 hidden units: above the width at which a Linear reads a shuffled batch's rows in place, so
    # both models run the same kernels and must agree exactly. No dropout: its masks are keyed by the
    # layer's position, which the Flatten shifts.
    fastnn.manual_seed(seed)
    layers = [nn.Linear(784, 80), nn.BatchNorm1d(80), nn.ReLU(), nn.Linear(80, 10)]
    return nn.Sequential(*([nn.Flatten()] if flatten else []), *layers)


def test_the_image_layout_of_the_data_set():
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist("bundled", flatten=False)
    (Xf, _), _ = fastnn.datasets.fashion_mnist("bundled")
    assert X.shape == (5000, 1, 28, 28) and Xt.shape == (1000, 1, 28, 28) and X.flags.c_contiguous
    np.testing.assert_array_equal(X.reshape(5000, -1), Xf)


def test_fit_on_images_is_fit_on_their_flattened_rows():
    """Same weights, seed and shuffling: Flatten + MLP on (N, 1, 28, 28) trains exactly as the MLP on
    (N, 784), through validation_split, evaluate, predict and train_step."""
    X, y, Xt, yt = _images()
    runs = []
    for flatten in (True, False):
        model = _mlp(flatten)
        shape = (lambda a: a) if flatten else (lambda a: a.reshape(len(a), -1))
        opt = optim.Adam(model.parameters(), lr=1e-3)
        h = fastnn.fit(model, shape(X), y, optimizer=opt, epochs=2, batch_size=64, validation_split=0.2, seed=3,
                       verbose=0)
        ev = fastnn.evaluate(model, shape(Xt), yt)
        out = fastnn.predict(model, shape(Xt), batch_size=37)
        step = fastnn.train_step(model, shape(X[:16]), y[:16], "cross_entropy", opt, seed=1, step=5)
        runs.append((model, metrics(h), ev, out, step))
    (a, ha, eva, outa, sa), (b, hb, evb, outb, sb) = runs
    assert ha == hb and eva == evb and sa == sb
    assert ha["val_accuracy"][-1] > 0.6  # it learned (chance is 0.1)
    np.testing.assert_array_equal(outa, outb)
    assert outa.shape == (len(Xt), 10)
    assert_state_equal({k.split(".", 1)[1]: v for k, v in a.state_dict().items()},
                       {k.split(".", 1)[1]: v for k, v in b.state_dict().items()})


def test_validation_data_of_images():
    X, y, Xt, yt = _images(300, 100)
    model = _mlp(True)
    h = fastnn.fit(model, X, y, epochs=1, batch_size=32, validation_data=(Xt, yt), seed=0, verbose=0)
    assert h["val_accuracy"][0] == fastnn.evaluate(model, Xt, yt)["accuracy"]


@pytest.mark.parametrize("shape,expected", [
    ((20, 1, 27, 28), r"X has shape \(20, 1, 27, 28\): \[Linear\] expected input \(N, 784\)"),
    ((20, 3, 28, 28), r"X has shape \(20, 3, 28, 28\): \[Linear\] expected input \(N, 784\)"),
])
def test_images_of_the_wrong_size_are_refused(shape, expected):
    model = _mlp(True)
    X = np.zeros(shape, np.float32)
    y = np.zeros(len(X), np.int64)
    with pytest.raises(ValueError, match=expected):
        fastnn.fit(model, X, y, verbose=0)
    with pytest.raises(ValueError, match=expected):
        fastnn.evaluate(model, X, y)
    with pytest.raises(ValueError, match=expected):
        fastnn.predict(model, X)
    with pytest.raises(ValueError, match=expected):
        fastnn.train_step(model, X, y, "cross_entropy", optim.SGD(model.parameters(), lr=0.1))


def test_images_for_a_model_without_flatten_are_refused():
    X, y, Xt, yt = _images(64, 32)
    model = _mlp(False)
    with pytest.raises(ValueError, match=r"X has shape \(64, 1, 28, 28\): \[Linear\] expected input \(N, 784\), "
                                         r"got \(1, 1, 28, 28\)"):
        fastnn.fit(model, X, y, verbose=0)
    flat = _mlp(True)
    with pytest.raises(ValueError, match=r"validation X has shape \(32, 1, 28, 27\)"):
        fastnn.fit(flat, X, y, validation_data=(Xt[..., :27], yt), verbose=0)
