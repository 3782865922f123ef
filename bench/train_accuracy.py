"""Train mlp-s (5 epochs) and mlp-l (10 epochs) on Fashion-MNIST with fastnn and PyTorch; print
seconds per epoch (median of the epochs after the first), the final test accuracy, and the ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/train_accuracy.py
    ... bench/train_accuracy.py --sklearn          # also scikit-learn MLPClassifier on mlp-l
    ... bench/train_accuracy.py --only mlp-s --epochs-s 3

The models, optimizers and loops are those of bench_train.py (fastnn: one fit(epochs=N) call, each
epoch timed from the previous epoch's end by a callback; with -v, fit() one epoch per call, which
adds fit's per-call NaN/inf scan of X, ~5 ms; torch: randperm + index tensors; "torch-fused": the
same with Adam(fused=True)). Each epoch is timed with the same clock for every implementation;
test accuracy is evaluated outside the timing. BENCH.md's speed targets are against the fastest peer.
"""

import os
import sys

THREADS = int(os.environ.get("FASTNN_BENCH_THREADS", "2"))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy/torch start
    os.environ[_var] = str(THREADS)

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from conftest import THREADS as _T, torch  # noqa: E402,F401  (pins fastnn/torch/BLAS threads)
from bench_train import MLPClassifier, TRAINERS  # noqa: E402

# BENCH.md targets: ratio peer/fastnn per epoch, and test accuracy after the given epochs
TARGETS = {
    "mlp-s": {"torch": 8.0, "accuracy": 0.86},
    "mlp-l": {"torch": 2.5, "sklearn": 3.0, "accuracy": 0.88},
}


def train(impl, arch, epochs, data, verbose):
    X, y, Xt, yt = data
    train_epoch, accuracy = TRAINERS[impl](arch, X, y, Xt, yt)
    seconds, accs = [], []
    if hasattr(train_epoch, "epochs") and not verbose:  # fastnn: one fit(epochs=N) call
        seconds = train_epoch.epochs(epochs)
        later = seconds[1:] or seconds
        return {"epochs": epochs, "sec": statistics.median(later), "first": seconds[0], "acc": accuracy(),
                "all": seconds}
    for e in range(epochs):
        t0 = time.perf_counter()
        train_epoch()
        seconds.append(time.perf_counter() - t0)
        if verbose or e == epochs - 1:
            accs.append(accuracy())
            if verbose:
                print(f"  {arch} {impl} epoch {e + 1}: {seconds[-1]:.3f} s, test accuracy {accs[-1]:.4f}", flush=True)
    later = seconds[1:] or seconds
    return {"epochs": epochs, "sec": statistics.median(later), "first": seconds[0], "acc": accs[-1],
            "all": seconds}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["mlp-s", "mlp-l"], action="append", help="run only this workload")
    ap.add_argument("--epochs-s", type=int, default=5)
    ap.add_argument("--epochs-l", type=int, default=10)
    ap.add_argument("--sklearn", action="store_true", help="also scikit-learn MLPClassifier on mlp-l")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every epoch")
    args = ap.parse_args(argv)

    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist()
    data = (X, y, Xt, yt)
    info = fastnn.build_info()
    print(f"threads {THREADS}; fastnn {fastnn.__version__} isa={info['isa']}; "
          f"torch {torch.__version__ if torch else 'not installed'}; "
          f"data {fastnn.datasets.fashion_mnist_source()} ({len(X)} train / {len(Xt)} test)")
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            print(f"  {pool['internal_api']} {pool.get('version')} {pool.get('architecture')} "
                  f"threads={pool['num_threads']}")
    except ImportError:
        pass

    runs = []
    for arch, epochs in (("mlp-s", args.epochs_s), ("mlp-l", args.epochs_l)):
        if args.only and arch not in args.only:
            continue
        impls = ["fastnn"]
        if torch is not None:
            impls += ["torch", "torch-fused"]
        else:
            print(f"{arch}: torch not installed, skipped")
        if arch == "mlp-l" and args.sklearn:
            if MLPClassifier is None:
                print("mlp-l: scikit-learn not installed, skipped")
            else:
                impls.append("sklearn")
        results = {}
        for impl in impls:
            print(f"{arch} {impl}: {epochs} epochs ...", flush=True)
            results[impl] = train(impl, arch, epochs, data, args.verbose)
        runs.append((arch, results))

    print()
    print("| workload | impl | epochs | s/epoch (median after 1st) | 1st epoch s | test accuracy | "
          "ratio peer/fastnn | target |")
    print("|---|---|---|---|---|---|---|---|")
    for arch, results in runs:
        base = results["fastnn"]["sec"]
        for impl, r in results.items():
            if impl == "fastnn":
                ratio = "–"
                target = f"acc ≥ {TARGETS[arch]['accuracy']}" if arch == "mlp-l" else \
                    f"acc ≈ {TARGETS[arch]['accuracy']} (torch's)"
            else:
                ratio = f"{r['sec'] / base:.2f}×"
                key = impl.split("-")[0]
                target = f"≥ {TARGETS[arch][key]}×" if key in TARGETS[arch] else ""
            print(f"| {arch} | {impl} | {r['epochs']} | {r['sec']:.3f} | {r['first']:.3f} | {r['acc']:.4f} | "
                  f"{ratio} | {target} |")
    print("\nper-epoch seconds:")
    for arch, results in runs:
        for impl, r in results.items():
            print(f"  {arch} {impl}: " + " ".join(f"{s:.3f}" for s in r["all"]))


if __name__ == "__main__":
    main()
