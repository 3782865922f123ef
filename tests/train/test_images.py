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


def _small_cnn(seed=0, dtype=np.float32):
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 6 * 6, 10)).to(dtype)


def test_a_cnn_through_fit_is_its_batches_through_train_step():
    """fit's C++ epoch loop (unshuffled) takes the same steps as train_step on the consecutive batches,
    and evaluate / predict give what the model gives in eval mode."""
    X, y, Xt, yt = _images(200, 50)
    a, b = _small_cnn(), _small_cnn()
    oa, ob = optim.Adam(a.parameters(), lr=1e-2), optim.Adam(b.parameters(), lr=1e-2)
    h = fastnn.fit(a, X, y, optimizer=oa, epochs=1, batch_size=48, shuffle=False, seed=0, verbose=0)
    losses = [fastnn.train_step(b, X[i:i + 48], y[i:i + 48], "cross_entropy", ob, seed=0, step=k)
              for k, i in enumerate(range(0, len(X), 48))]
    assert_state_equal(a, b)
    assert h["loss"][0] == pytest.approx(np.average(losses, weights=[min(48, len(X) - i) for i in range(0, len(X), 48)]),
                                         rel=1e-12)
    out = b.eval()(Xt)
    np.testing.assert_array_equal(fastnn.predict(a, Xt, batch_size=50), out)
    ev = fastnn.evaluate(a, Xt, yt, batch_size=50)
    assert ev["accuracy"] == np.mean(out.argmax(1) == yt)


def test_a_cnn_learns_with_validation_split():
    X, y, _, _ = _images(600, 1)
    model = _small_cnn()
    h = fastnn.fit(model, X, y, optimizer=optim.Adam(model.parameters(), lr=1e-2), epochs=3, batch_size=32,
                   validation_split=0.25, seed=0, verbose=0)
    assert h["loss"][2] < h["loss"][0] and h["val_accuracy"][2] > 0.5


def test_a_cnn_refuses_images_of_the_wrong_channels_or_size():
    model = _small_cnn()
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"X has shape \(4, 3, 28, 28\): \[Conv2d\] .*\(1, 3, 28, 28\)"):
        fastnn.fit(model, np.zeros((4, 3, 28, 28), np.float32), y, verbose=0)
    with pytest.raises(ValueError, match=r"X has shape \(4, 784\): \[Conv2d\]"):
        fastnn.predict(model, np.zeros((4, 784), np.float32))
    with pytest.raises(ValueError, match=r"X has shape \(4, 1, 20, 20\): \[Linear\] expected input \(N, 216\)"):
        fastnn.evaluate(model, np.zeros((4, 1, 20, 20), np.float32), y)
