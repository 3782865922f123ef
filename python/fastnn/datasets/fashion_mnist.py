"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grey images of 10 kinds of clothing.

Where the data comes from (first match wins; see fashion_mnist_source):
    1. the ``path`` argument; ``path="bundled"`` forces the bundled subset
    2. ``$FASTNN_DATA``
    3. /usr/share/datasets/fashion-mnist (Debian package ``dataset-fashion-mnist``)
    4. the subset bundled with fastnn: the first 500 training and first 100 test images of each
       class (5000 + 1000 images, MIT license, data/fashion-mnist/)

A directory qualifies when it holds the four IDX files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
optionally ``.gz``), directly or in a ``fashion-mnist`` subdirectory.
"""

import logging
import os
from pathlib import Path

import numpy as np

from .. import _validate as _v

from .idx import load_idx

__all__ = ["CLASSES", "BUNDLED_DIR", "SYSTEM_DIR", "fashion_mnist", "fashion_mnist_source"]

logger = logging.getLogger(__name__)

# Label i is CLASSES[i] (https://github.com/zalandoresearch/fashion-mnist#labels).
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "fashion-mnist"
BUNDLED = "bundled"


def _file(directory, stem):
    """directory/stem.gz or directory/stem, whichever exists (gz first), else None."""
    for name in (stem + ".gz", stem):
        p = directory / name
        if p.is_file():
            return p
    return None


def _files(directory):
    """{key: path} for the four files in directory, or None if any is missing."""
    found = {key: _file(directory, stem) for key, stem in FILES.items()}
    return None if None in found.values() else found


def _candidates(root):
    root = Path(root)
    return [root, root / "fashion-mnist"]


def fashion_mnist_source(path=None):
    """The directory fashion_mnist(path) reads from, following the search order in the module docstring.

    Args:
        path: None to search, ``"bundled"`` for the bundled subset, or a directory (str or
            os.PathLike) holding the four IDX files directly or in ``fashion-mnist/``.

    Returns:
        pathlib.Path of the directory; ``BUNDLED_DIR`` when the bundled subset is used.

    Raises:
        FileNotFoundError: an explicit path does not hold the files (no silent fallback).
    """
    if path is not None:
        if isinstance(path, str) and path == BUNDLED:
            return BUNDLED_DIR
        for d in _candidates(path):
            if _files(d):
                return d
        names = ", ".join(f"{stem}[.gz]" for stem in FILES.values())
        raise FileNotFoundError(
            f"[fashion_mnist] {os.fspath(path)!r} holds no Fashion-MNIST files "
            f"(looked for {names} there and in its fashion-mnist/ subdirectory)"
        )
    env = os.environ.get("FASTNN_DATA")
    searched = (_candidates(env) if env else []) + [SYSTEM_DIR]
    for d in searched:
        if _files(d):
            return d
    logger.debug("no Fashion-MNIST files in %s", ", ".join(map(str, searched)))
    return BUNDLED_DIR


def _load_split(files, split):
    images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
    images, labels = load_idx(images_path), load_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"[fashion_mnist] {images_path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"[fashion_mnist] {labels_path}: expected uint8 labels of shape {images.shape[:1]}, "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.size and labels.max() >= len(CLASSES):
        raise ValueError(f"[fashion_mnist] {labels_path}: label {labels.max()} is not in 0..{len(CLASSES) - 1}")
    return images, labels


def fashion_mnist(path=None, dtype=np.float32, flatten=True, normalize=True):
    """Load Fashion-MNIST as ((X_train, y_train), (X_test, y_test)), like Keras' load_data().

    Where the files are found is in the module docstring; ``fashion_mnist_source(path)`` tells
    which directory is used, and the choice is logged (INFO) on logger
    ``fastnn.datasets.fashion_mnist``.
    The label of row i is ``y[i]``, its name ``CLASSES[y[i]]``.

    Args:
        path: None (search), ``"bundled"``, or a directory with the four IDX files.
        dtype: dtype of X; a floating dtype when normalize is True (np.uint8 with
            normalize=False gives the raw pixels).
        flatten: X of shape (N, 784) if True, else (N, 1, 28, 28) (channel first, as PyTorch).
        normalize: scale pixels from 0..255 to [0, 1].

    Returns:
        ((X_train, y_train), (X_test, y_test)); y: (N,) int64 in 0..9. Full data set: 60000
        train and 10000 test images; bundled subset: 5000 and 1000.

    Raises:
        FileNotFoundError: an explicit path does not hold the files.
        ValueError: a file is not a valid Fashion-MNIST IDX file, or normalize with a non-float dtype.
    """
    flatten = _v.check_bool(flatten, "fashion_mnist", "flatten")
    normalize = _v.check_bool(normalize, "fashion_mnist", "normalize")
    dtype = np.dtype(dtype)
    if dtype.kind not in "fiu":
        raise TypeError(f"[fashion_mnist] dtype must be a real numeric dtype, got {dtype}")
    if normalize and dtype.kind != "f":
        raise ValueError(f"[fashion_mnist] normalize=True needs a floating dtype, got {dtype}")
    directory = fashion_mnist_source(path)
    if directory == BUNDLED_DIR:
        logger.info("Fashion-MNIST: using the bundled subset in %s (5000 train / 1000 test images)", directory)
    else:
        logger.info("Fashion-MNIST: loading from %s", directory)
    files = _files(directory)
    if files is None:  # only possible for a damaged installation
        raise FileNotFoundError(f"[fashion_mnist] Fashion-MNIST files missing from {directory}")
    out = []
    for split in ("train", "test"):
        images, labels = _load_split(files, split)
        x = images.astype(dtype)
        if normalize:
            np.divide(x, 255, out=x)
        shape = (len(x), 28 * 28) if flatten else (len(x), 1, 28, 28)
        out.append((x.reshape(shape), labels.astype(np.int64)))
    return tuple(out)
