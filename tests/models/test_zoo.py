"""The model zoo: fastnn.models.mlp (the CLI's MLPs, one definition) and the shipped Fashion-MNIST
weights of mlp and simple_cnn (pretrained=True): they load, fit only the architecture they were
trained for (a ValueError otherwise), and reach the test accuracy their docstrings state."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import models, nn
from fastnn.__main__ import MLPS, build_model
from fastnn.models._pretrained import WEIGHTS_DIR, ZOO

ROOT = Path(__file__).resolve().parents[2]
FULL_DATA = "/usr/share/datasets/fashion-mnist"


def stated_accuracy(builder):
    """The test accuracy the builder's docstring states for its shipped weights."""
    return float(re.search(r"test accuracy (0\.\d{4})", builder.__doc__).group(1))


def test_mlp_is_the_clis_model_and_its_layers_are_documented():
    model = models.mlp()
    assert model.count_params() == 235_914 and "235,914" in models.mlp.__doc__
    assert [type(m).__name__ for m in model] == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2 + ["Linear"]
    assert model[3].p == 0.2
    for name, kwargs in MLPS.items():  # the CLI builds each of its MLPs with models.mlp
        fastnn.manual_seed(5)
        cli = build_model(name)
        fastnn.manual_seed(5)
        ours = models.mlp(**kwargs)
        assert repr(cli) == repr(ours)
        for k, v in ours.state_dict().items():
            np.testing.assert_array_equal(cli.state_dict()[k], v, err_msg=f"{name} {k}")
    assert [type(m).__name__ for m in models.mlp(hidden=())] == ["Linear"]
    assert [type(m).__name__ for m in models.mlp(hidden=(8,), batchnorm=False, dropout=0)] == ["Linear", "ReLU",
                                                                                               "Linear"]
    m = models.mlp(hidden=(8, 4), in_features=5, num_classes=3, dtype=np.float64)
    assert m(np.zeros((2, 5))).shape == (2, 3) and m.dtype == np.float64


@pytest.mark.parametrize("kwargs, error, match", [
    ({"hidden": 256}, TypeError, r"\[mlp\] hidden must be a sequence of layer widths, got int"),
    ({"hidden": (256, 0)}, ValueError, r"mlp.*hidden widths"),
    ({"dropout": 1.0}, ValueError, r"mlp.*dropout"),
    ({"batchnorm": "yes"}, TypeError, r"mlp.*batchnorm"),
    ({"num_classes": 0}, ValueError, r"mlp.*num_classes"),
    ({"pretrained": 1}, TypeError, r"mlp.*pretrained"),
    ({"dtype": np.int32}, TypeError, r"\[mlp\] dtype must be float32 or float64"),
])
def test_mlp_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        models.mlp(**kwargs)


@pytest.mark.parametrize("name", ZOO)
def test_the_shipped_weights_are_small_float32_fastnn_files(name):
    path = WEIGHTS_DIR / f"{name}.fnn"
    assert path.is_file() and path.stat().st_size < 2.5e6
    saved = fastnn.load(path)
    assert saved.dtype == np.float32
    info = models.pretrained_info(name)
    assert info["test_accuracy"] == stated_accuracy(getattr(models, name))
    assert info["train_images"] == 60000 and info["schedule"] == "cosine"
    readme = (ROOT / "README.md").read_text()
    assert f"{info['test_accuracy']:.4f}" in readme  # the README states it too


@pytest.mark.parametrize("name, x_shape", [("mlp", (3, 784)), ("simple_cnn", (3, 1, 28, 28))])
def test_pretrained_loads_the_shipped_weights_in_training_mode(name, x_shape):
    builder = getattr(models, name)
    model = builder(pretrained=True)
    saved = fastnn.load(WEIGHTS_DIR / f"{name}.fnn")
    for k, v in saved.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    assert model.training and all(p.requires_grad for p in model.parameters())
    x = np.random.default_rng(0).uniform(size=x_shape).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), saved.predict(x))
    # another dropout has no weights: the same network in eval mode (fewer children, renumbered)
    other = builder(pretrained=True, dropout=0)
    assert len(other) == len(model) - (2 if name == "mlp" else 1)
    np.testing.assert_array_equal(other.predict(x), saved.predict(x))
    assert not np.array_equal(builder().predict(x), saved.predict(x))  # pretrained=False: a fresh network


@pytest.mark.parametrize("name, kwargs, match", [
    ("mlp", {"num_classes": 5}, r"num_classes=5 \(the weights have 10\)"),
    ("mlp", {"hidden": (256, 64)}, r"hidden=\[256, 64\] \(the weights have \[256, 128\]\)"),
    ("mlp", {"in_features": 100}, r"in_features=100"),
    ("mlp", {"batchnorm": False}, r"batchnorm=False \(the weights have True\)"),
    ("mlp", {"dtype": np.float64}, r"dtype='float64' \(the weights have 'float32'\).*model.double\(\)"),
    ("simple_cnn", {"in_channels": 3}, r"in_channels=3 \(the weights have 1\)"),
    ("simple_cnn", {"num_classes": 5, "input_size": 32},
     r"num_classes=5 \(the weights have 10\), input_size=\[32, 32\] \(the weights have \[28, 28\]\)"),
    ("simple_cnn", {"dtype": np.float64}, r"dtype='float64'"),
])
def test_pretrained_with_another_architecture_is_a_clear_value_error(name, kwargs, match):
    with pytest.raises(ValueError, match=rf"\[{name}\] pretrained=True: the shipped weights do not fit {match}"):
        getattr(models, name)(pretrained=True, **kwargs)


def test_a_pretrained_model_takes_a_new_head():
    model = models.mlp(pretrained=True)
    model[-1] = nn.Linear(128, 5)
    model[:-1].requires_grad_(False).eval()
    X = np.random.default_rng(1).uniform(size=(64, 784)).astype(np.float32)
    y = np.arange(64) % 5
    before = {k: v.copy() for k, v in model.state_dict().items()}
    fastnn.fit(model, X, y, epochs=1, verbose=0)
    changed = [k for k, v in model.state_dict().items() if not np.array_equal(v, before[k])]
    assert changed == ["8.weight", "8.bias"]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FULL_DATA), reason=f"full Fashion-MNIST not installed at {FULL_DATA}")
@pytest.mark.parametrize("name", ZOO)
def test_the_shipped_weights_reach_the_stated_test_accuracy(name):
    builder = getattr(models, name)
    _, (Xt, yt) = fastnn.datasets.fashion_mnist(path=FULL_DATA, flatten=name == "mlp")
    accuracy = fastnn.evaluate(builder(pretrained=True), Xt, yt)["accuracy"]
    assert abs(accuracy - stated_accuracy(builder)) <= 0.002, accuracy
