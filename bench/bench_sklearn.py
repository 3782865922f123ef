"""NeuralNetClassifier against scikit-learn's MLPClassifier on the same data: fit time and test
accuracy, paired and alternating (under load the ratio is what counts).

    PYTHONPATH=python:. python bench/bench_sklearn.py [--epochs 10] [--repeats 3] [--threads 2]

Both: one hidden layer of 100 ReLU units, Adam lr 1e-3, batch 128, --epochs epochs (MLPClassifier
max_iter, tol=0 and no early stopping, so both run every epoch), Fashion-MNIST (the bundled 5k/1k
subset when the full set is missing) scaled to [0, 1].
"""

import argparse
import os
import time
import warnings

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before numpy starts its pool

import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

import fastnn  # noqa: E402
from fastnn.sklearn import NeuralNetClassifier  # noqa: E402


def main():
    fastnn.set_num_threads(args.threads)
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist()
    print(f"data: {fastnn.datasets.fashion_mnist_source()} ({len(X)} train, {len(Xt)} test); {args.threads} threads")
    makers = {
        "fastnn": lambda: NeuralNetClassifier(hidden_layer_sizes=(100,), lr=1e-3, epochs=args.epochs, batch_size=128,
                                              random_state=0),
        "sklearn": lambda: MLPClassifier(hidden_layer_sizes=(100,), learning_rate_init=1e-3, max_iter=args.epochs,
                                         batch_size=128, tol=0.0, n_iter_no_change=args.epochs + 1, random_state=0),
    }
    times = {k: [] for k in makers}
    acc = {}
    for r in range(args.repeats):
        for name in (list(makers) if r % 2 == 0 else list(makers)[::-1]):
            est = makers[name]()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(X, y)
            times[name].append(time.perf_counter() - start)
            acc[name] = est.score(Xt, yt)
    for name in makers:
        print(f"{name:>8}: fit {min(times[name]):6.2f} s (best of {['%.2f' % t for t in times[name]]}), "
              f"test accuracy {acc[name]:.4f}")
    print(f"ratio sklearn/fastnn fit time: {min(times['sklearn']) / min(times['fastnn']):.1f}x (paired runs: "
          f"{['%.1f' % (s / f) for s, f in zip(times['sklearn'], times['fastnn'])]})")


if __name__ == "__main__":
    main()
