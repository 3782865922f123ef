"""fit(augment=...): the C++ loop augments each training minibatch exactly as augmenting the data
up front with (fit's seed, the batch's global step) would; validation data is never augmented;
a transform that changes nothing gives the run without augment; bad arguments are clear errors."""

import numpy as np
import pytest

import fastnn
from fastnn import augment as A
from fastnn import nn, optim
from tests.train.cases import assert_state_equal, metrics, state_differs

SHAPE = (1, 6, 6)
PIPELINE = [A.RandomShift(1), A.RandomHorizontalFlip(), A.RandomRotation(15), A.RandomErasing(p=0.5)]


def data(n=48, dtype=np.float64, flat=True, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n,) + SHAPE).astype(dtype)
    y = (X[:, 0, :3].sum(axis=(1, 2)) > X[:, 0, 3:].sum(axis=(1, 2))).astype(np.int64)
    return (X.reshape(n, -1) if flat else X), y


def model(dtype=np.float64, conv=False):
    fastnn.manual_seed(0)
    if conv:
        return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, dtype=dtype), nn.ReLU(), nn.Flatten(),
                             nn.Linear(3 * 36, 2, dtype=dtype))
    return nn.Sequential(nn.Linear(36, 8, dtype=dtype), nn.Tanh(), nn.Linear(8, 2, dtype=dtype))


def fit(m, X, y, **kw):
    kw.setdefault("epochs", 2)
    return fastnn.fit(m, X, y, optimizer=optim.SGD(m.parameters(), lr=0.1), verbose=0, seed=5, **kw)


@pytest.mark.parametrize("conv", [False, True])
def test_augments_each_batch_with_the_fit_seed_and_global_step(conv):
    X, y = data(flat=not conv)
    batch, epochs = 16, 2
    aug = A.Compose(PIPELINE, shape=SHAPE)
    m = model(conv=conv)
    fit(m, X, y, batch_size=batch, shuffle=False, epochs=epochs, augment=aug)
    # the same training on data augmented up front, batch by batch: step = epoch * batches + b
    ref = model(conv=conv)
    opt = optim.SGD(ref.parameters(), lr=0.1)
    batches = len(X) // batch
    for epoch in range(epochs):
        for b in range(batches):
            step = epoch * batches + b
            xb = aug(X[b * batch:(b + 1) * batch], seed=5, step=step)
            fastnn.train_step(ref, xb, y[b * batch:(b + 1) * batch], nn.CrossEntropyLoss(), opt, seed=5, step=step)
    assert_state_equal(m, ref)


def test_differs_from_fit_without_augment_and_repeats():
    X, y = data()
    aug = A.Compose(PIPELINE, shape=SHAPE)
    plain, a, b = model(), model(), model()
    fit(plain, X, y)
    ha, hb = fit(a, X, y, augment=aug), fit(b, X, y, augment=aug)
    assert state_differs(plain.state_dict(), a.state_dict())
    assert_state_equal(a, b)  # same seed: the same images, the same run
    assert metrics(ha) == metrics(hb)


def test_a_transform_that_changes_nothing_is_the_plain_run():
    X, y = data()
    plain, noop = model(), model()
    fit(plain, X, y, batch_size=10)
    fit(noop, X, y, batch_size=10, augment=A.Compose([A.RandomHorizontalFlip(p=0.0), A.RandomShift(0)], shape=SHAPE))
    assert_state_equal(plain, noop)


def test_validation_data_is_not_augmented():
    X, y = data()
    Xv, yv = data(20, seed=1)
    m = model()
    history = fit(m, X, y, epochs=1, validation_data=(Xv, yv), augment=A.Compose(PIPELINE, shape=SHAPE))
    assert fastnn.evaluate(m, Xv, yv)["loss"] == pytest.approx(history["val_loss"][0], rel=1e-12)


def test_single_transform_and_image_data_float32():
    X, y = data(dtype=np.float32, flat=False)
    m = model(np.float32, conv=True)
    history = fit(m, X, y, augment=A.RandomShift(1))  # a bare transform; (N, C, H, W) needs no shape
    assert np.isfinite(history["loss"]).all()


def test_bad_augment_arguments():
    X, y = data()
    with pytest.raises(TypeError, match="augment must be a fastnn.augment transform"):
        fit(model(), X, y, augment=[A.RandomShift(1)])
    with pytest.raises(ValueError, match=r"shape=\(C, H, W\) for flat data"):
        fit(model(), X, y, augment=A.Compose([A.RandomShift(1)]))
    with pytest.raises(ValueError, match="do not hold images"):
        fit(model(), X, y, augment=A.Compose([A.RandomShift(1)], shape=(1, 5, 5)))
    with pytest.raises(ValueError, match=r"changes the images' shape from \(1, 6, 6\) to \(1, 4, 4\)"):
        fit(model(), X, y, augment=A.Compose([A.RandomCrop(4)], shape=SHAPE))
    m = model()
    before = m.state_dict()
    with pytest.raises(ValueError):
        fit(m, X, y, augment=A.Compose([A.RandomCrop(4)], shape=SHAPE))
    assert_state_equal(m.state_dict(), before)  # refused before any training
