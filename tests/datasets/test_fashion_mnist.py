"""fashion_mnist(): search order, array contract, the bundled subset, and the real data set when installed."""

import importlib
import logging
import re

import numpy as np
import pytest

import fastnn
from fastnn.datasets import FASHION_MNIST_CLASSES, fashion_mnist, fashion_mnist_source, load_idx, save_idx

# The module, not the function of the same name that fastnn.datasets exports.
fm = importlib.import_module("fastnn.datasets.fashion_mnist")

SYSTEM = fm.SYSTEM_DIR
BUNDLED = fm.BUNDLED_DIR
have_system = pytest.mark.skipif(not (SYSTEM / "train-images-idx3-ubyte.gz").is_file(), reason=f"no {SYSTEM}")


def write_fake(directory, rng, n_train=20, n_test=10, compress=True):
    """Four small random Fashion-MNIST-shaped IDX files in directory; returns {split: (images, labels)}."""
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if compress else ""
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        save_idx(directory / f"{split}-images-idx3-ubyte{ext}", images)
        save_idx(directory / f"{split}-labels-idx1-ubyte{ext}", labels)
        arrays[split] = images, labels
    return arrays


@pytest.fixture
def nothing_installed(monkeypatch, tmp_path):
    """No $FASTNN_DATA and no system directory, so the search ends at the bundled subset."""
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "no-system-dir")


def test_public_names():
    assert fastnn.datasets.fashion_mnist is fashion_mnist
    assert FASHION_MNIST_CLASSES is fm.CLASSES and len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"


# ---- search order -------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "plain"])
def test_explicit_path_is_read(tmp_path, rng, compress):
    arrays = write_fake(tmp_path / "d", rng, compress=compress)
    assert fashion_mnist_source(tmp_path / "d") == tmp_path / "d"
    assert fashion_mnist_source(str(tmp_path / "d")) == tmp_path / "d"
    (X, y), (Xt, yt) = fashion_mnist(tmp_path / "d", dtype=np.uint8, normalize=False)
    np.testing.assert_array_equal(X, arrays["train"][0].reshape(20, 784))
    np.testing.assert_array_equal(y, arrays["train"][1])
    np.testing.assert_array_equal(Xt, arrays["t10k"][0].reshape(10, 784))
    np.testing.assert_array_equal(yt, arrays["t10k"][1])


def test_explicit_path_may_be_the_parent_of_fashion_mnist(tmp_path, rng):
    write_fake(tmp_path / "fashion-mnist", rng)
    assert fashion_mnist_source(tmp_path) == tmp_path / "fashion-mnist"


@pytest.mark.parametrize("content", ["empty", "partial"])
def test_explicit_path_without_files_raises_not_falls_back(tmp_path, rng, content):
    d = tmp_path / "my data"
    if content == "partial":
        write_fake(d, rng)
        (d / "t10k-labels-idx1-ubyte.gz").unlink()
    else:
        d.mkdir()
    for call in (fashion_mnist_source, fashion_mnist):
        with pytest.raises(FileNotFoundError, match=re.escape(repr(str(d)))):
            call(d)
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        fashion_mnist(tmp_path / "no-such-dir")


def test_fastnn_data_comes_before_the_system_dir(monkeypatch, tmp_path, rng):
    write_fake(tmp_path / "fashion-mnist", rng)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    assert fashion_mnist_source() == tmp_path / "fashion-mnist"
    (X, _), (Xt, _) = fashion_mnist()
    assert X.shape == (20, 784) and Xt.shape == (10, 784)


def test_fastnn_data_without_files_is_skipped(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "no-system-dir")
    assert fashion_mnist_source() == BUNDLED


def test_system_dir_is_used_when_present(monkeypatch, tmp_path, rng):
    write_fake(tmp_path / "system", rng)
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    assert fashion_mnist_source() == tmp_path / "system"


def test_falls_back_to_bundled_and_says_so(nothing_installed, caplog):
    assert fashion_mnist_source() == BUNDLED
    with caplog.at_level(logging.INFO, logger="fastnn.datasets"):
        (X, _), _ = fashion_mnist()
    assert X.shape == (5000, 784)
    assert "bundled subset" in caplog.text and str(BUNDLED) in caplog.text


def test_bundled_is_forced_by_name(monkeypatch, tmp_path, rng):
    write_fake(tmp_path / "fashion-mnist", rng)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    assert fashion_mnist_source("bundled") == BUNDLED


# ---- array contract (on the bundled subset) -------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_raw():
    return fashion_mnist("bundled", dtype=np.uint8, normalize=False)


def test_bundled_subset_contract(bundled_raw):
    (X, y), (Xt, yt) = fashion_mnist("bundled")
    assert X.shape == (5000, 784) and Xt.shape == (1000, 784)
    assert X.dtype == Xt.dtype == np.float32
    assert y.dtype == yt.dtype == np.int64
    assert X.flags.c_contiguous and X.flags.writeable
    assert 0.0 <= X.min() and X.max() <= 1.0 and X.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), [500] * 10)
    np.testing.assert_array_equal(np.bincount(yt), [100] * 10)
    (X8, y8), (Xt8, yt8) = bundled_raw
    np.testing.assert_array_equal(X, X8.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(y, y8)
    np.testing.assert_array_equal(Xt, Xt8.astype(np.float32) / np.float32(255))


def test_options(bundled_raw):
    (X8, y8), (Xt8, _) = bundled_raw
    assert X8.dtype == np.uint8 and X8.shape == (5000, 784)
    (X, y), (Xt, _) = fashion_mnist("bundled", dtype=np.float64, flatten=False)
    assert X.dtype == np.float64 and X.shape == (5000, 1, 28, 28) and Xt.shape == (1000, 1, 28, 28)
    np.testing.assert_array_equal(X.reshape(5000, 784), X8 / 255.0)
    np.testing.assert_array_equal(y, y8)
    (Xr, _), _ = fashion_mnist("bundled", normalize=False, flatten=False)
    assert Xr.dtype == np.float32 and Xr.max() == 255.0
    np.testing.assert_array_equal(Xr.reshape(5000, 784), X8)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_normalize_needs_a_float_dtype(dtype):
    with pytest.raises(ValueError, match="floating dtype"):
        fashion_mnist("bundled", dtype=dtype)


def test_bundled_files_size_and_license():
    files = sorted(p.name for p in BUNDLED.iterdir())
    assert files == [
        "LICENSE",
        "README.md",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]
    assert sum(p.stat().st_size for p in BUNDLED.iterdir()) < 4 * 1024 * 1024
    license_text = (BUNDLED / "LICENSE").read_text()
    assert "Copyright (c) 2017 Zalando SE" in license_text and "Permission is hereby granted" in license_text


# ---- files that are IDX but not Fashion-MNIST -----------------------------------------------------


@pytest.mark.parametrize(
    "name, array, problem",
    [
        ("train-labels-idx1-ubyte.gz", np.full(20, 10, np.uint8), "label 10 is not in 0..9"),
        ("train-labels-idx1-ubyte.gz", np.zeros(19, np.uint8), r"labels of shape \(20,\)"),
        ("train-labels-idx1-ubyte.gz", np.zeros(20, np.int32), "uint8 labels"),
        ("t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 27), np.uint8), r"\(N, 28, 28\)"),
        ("t10k-images-idx3-ubyte.gz", np.zeros((10, 784), np.uint8), r"\(N, 28, 28\)"),
    ],
)
def test_wrong_content_raises_value_error_naming_file(tmp_path, rng, name, array, problem):
    write_fake(tmp_path, rng)
    save_idx(tmp_path / name, array)
    with pytest.raises(ValueError, match=re.escape(name) + ".*" + problem):
        fashion_mnist(tmp_path)


# ---- the real data set (Debian dataset-fashion-mnist) ---------------------------------------------


@pytest.fixture(scope="module")
def real():
    return fashion_mnist(SYSTEM)


@pytest.fixture(scope="module")
def real_raw():
    return {
        split: (load_idx(SYSTEM / f"{split}-images-idx3-ubyte.gz"), load_idx(SYSTEM / f"{split}-labels-idx1-ubyte.gz"))
        for split in ("train", "t10k")
    }


@pytest.mark.slow
@have_system
def test_real_data(real, real_raw):
    (X, y), (Xt, yt) = real
    assert X.shape == (60000, 784) and Xt.shape == (10000, 784)
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0 and Xt.min() == 0.0 and Xt.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), [1000] * 10)
    images, labels = real_raw["train"]
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(X[:100], images[:100].reshape(100, 784) / np.float32(255))
    np.testing.assert_array_equal(y, labels)


@pytest.mark.slow
@have_system
def test_default_search_finds_the_system_dir(monkeypatch):
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    assert fashion_mnist_source() == SYSTEM


@pytest.mark.slow
@have_system
def test_bundled_is_first_per_class_of_the_real_data(bundled_raw, real_raw):
    """The README's claim: the first 500 train / 100 test images of each class, in file order."""
    for (X8, y8), split, k in zip(bundled_raw, ("train", "t10k"), (500, 100)):
        images, labels = real_raw[split]
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(10)]))
        np.testing.assert_array_equal(X8, images[keep].reshape(-1, 784))
        np.testing.assert_array_equal(y8, labels[keep])
