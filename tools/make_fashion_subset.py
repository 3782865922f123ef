#!/usr/bin/env python3
"""Regenerate fastnn's bundled Fashion-MNIST subset from the full data set.

    python tools/make_fashion_subset.py [SOURCE_DIR]     # default /usr/share/datasets/fashion-mnist

Takes the first 500 training and the first 100 test images of each class, in file order (no
randomness, so the output depends only on the input), and writes them as gzip IDX files with a
fixed header to python/fastnn/datasets/data/fashion-mnist/ (identical bytes on every run with
the same zlib).
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _module(name):
    """Import python/fastnn/datasets/<name>.py by file: the fastnn package needs the compiled core."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "python" / "fastnn" / "datasets" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


idx = _module("idx")

PER_CLASS = {"train": 500, "t10k": 100}
OUT = ROOT / "python" / "fastnn" / "datasets" / "data" / "fashion-mnist"
SIZE_LIMIT = 4 * 1024 * 1024


def first_per_class(labels, k):
    """Indices of the first k occurrences of each label, in increasing order."""
    picked = [np.flatnonzero(labels == c)[:k] for c in range(10)]
    if any(len(p) < k for p in picked):
        raise SystemExit(f"fewer than {k} examples of some class")
    return np.sort(np.concatenate(picked))


def main(source):
    source = Path(source)
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for split, k in PER_CLASS.items():
        images = idx.load_idx(source / f"{split}-images-idx3-ubyte.gz")
        labels = idx.load_idx(source / f"{split}-labels-idx1-ubyte.gz")
        keep = first_per_class(labels, k)
        for kind, array in (("images-idx3", images[keep]), ("labels-idx1", labels[keep])):
            path = OUT / f"{split}-{kind}-ubyte.gz"
            idx.save_idx(path, array)
            size = path.stat().st_size
            total += size
            print(f"{path.relative_to(ROOT)}: {array.shape} {array.dtype}, {size} bytes")
    print(f"total {total} bytes ({total / 2**20:.2f} MiB)")
    if total >= SIZE_LIMIT:
        raise SystemExit(f"bundled subset is {total} bytes, over the {SIZE_LIMIT}-byte limit")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
