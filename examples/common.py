"""What the generalization examples share: their command-line flags, the Fashion-MNIST split
(training images, a validation split for model selection, the test set scored once) and the
results table."""

import argparse
import contextlib
import importlib.util
import sys

import numpy as np

import fastnn


def parser(doc, epochs, train_size, pool=False):
    """The flags every example takes; `epochs` and `train_size` are the script's defaults; `pool`:
    the script trains models on the local process pool (--sequential: in this process instead)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0], epilog=doc.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs per model (default {epochs})")
    p.add_argument("--train-size", type=int, default=train_size,
                   help=f"training images, the first N (default {train_size}; 0: all 60000)")
    p.add_argument("--test-size", type=int, default=0, help="test images, the first N (default 0: all)")
    p.add_argument("--data", default=None,
                   help="directory with the Fashion-MNIST IDX files (default: $FASTNN_DATA, the system copy, "
                        "else the bundled subset); 'bundled' forces the subset")
    p.add_argument("--plot", default=None, metavar="FILE", help="write the figure to FILE (needs matplotlib)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="fastnn threads (default: all cores)")
    if pool:
        p.add_argument("--sequential", action="store_true", help="train the models in this process, one at a time")
    return p


@contextlib.contextmanager
def executor(args):
    """fastnn's local process pool (one worker per core, one thread each), shut down at the end; or
    "sequential" with --sequential."""
    if args.sequential:
        yield "sequential"
        return
    pool = fastnn.tune.LocalPool()
    try:
        yield pool
    finally:
        pool.shutdown()


def load(args, val_fraction=0.2):
    """(X_train, y_train), (X_val, y_val), (X_test, y_test): a seeded, stratified validation split of
    the first --train-size training images, and the test set, which model selection never sees."""
    if args.plot and importlib.util.find_spec("matplotlib") is None:  # before training, not after it
        sys.exit("--plot needs matplotlib, which is not installed (pip install matplotlib)")
    if args.threads:
        fastnn.set_num_threads(args.threads)
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(path=args.data)
    if args.train_size:
        X, y = X[:args.train_size], y[:args.train_size]
    if args.test_size:
        Xt, yt = Xt[:args.test_size], yt[:args.test_size]
    train, val = fastnn.train.ValidationSplit(val_fraction, shuffle=True, stratify=True, seed=args.seed).indices(y, len(X))
    print(f"Fashion-MNIST from {fastnn.datasets.fashion_mnist_source(args.data)}: {len(train)} train / {len(val)} "
          f"validation / {len(Xt)} test images, {fastnn.get_num_threads()} threads")
    return (X[train], y[train]), (X[val], y[val]), (Xt, yt)


def table(rows, columns):
    """Prints rows (dicts) under `columns` [(key, header, format)], aligned."""
    cells = [[format(r[k], f) if r.get(k) is not None else "-" for k, _, f in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h, _) in enumerate(columns)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, ((_, h, _), w) in enumerate(zip(columns, widths))))
    for c in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths))))


def figure(args, draw, *data, title, what="figure", **options):
    """With --plot FILE: draw(*data, path=FILE, title=title, **options) (a fastnn.plot function)."""
    if args.plot:
        draw(*data, path=args.plot, title=title, **options)
        print(f"{what} written to {args.plot}")


def accuracy(model, X, y):
    return float(np.mean(fastnn.predict(model, X).argmax(axis=1) == y))
