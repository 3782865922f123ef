"""The BENCH.md cnn workload, fastnn vs PyTorch in the same run: seconds per epoch (the first epoch
and the median of the later ones), test accuracy after N epochs, eval-mode inference images/s at
batch 1000 (fastnn also with folded BatchNorm), at 1 and 2 threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/bench_cnn.py
    ... bench/bench_cnn.py --epochs 10                     # the ">= 0.92 after 10 epochs" target
    ... bench/bench_cnn.py --threads 2 --only fastnn       # one row
    ... bench/bench_cnn.py --model densenet --epochs 1     # DenseNet-BC k=12 (6,6,6): 176k parameters
    ... bench/bench_cnn.py --json out.json                 # also write the rows as JSON

Each (library, thread count) runs in its own process (this script with --worker), pinned to its
threads before numpy and torch start, so that no library's idle BLAS workers take the cores from
the next (BENCH.md). Model: Conv(1->32,3,p1)-BN2d-ReLU-MaxPool2, Conv(32->64,3,p1)-BN2d-ReLU-MaxPool2,
Flatten, Linear(3136->128)-ReLU-Dropout(0.5), Linear(128->10) (bias-free convs before BN; fastnn:
fastnn.models.simple_cnn, torch: the same nn.Sequential), Adam lr 1e-3, batch 128, the same
shuffled order scheme (a permutation per epoch). Epochs are timed from the previous epoch's end
(fastnn: one fit(epochs=N) call with a callback; torch: a randperm + index loop); test accuracy is
evaluated after the last epoch, outside the timing. Inference: the 10k test images in batches of
1000, eval mode (torch under no_grad), median of 5 passes after a warm-up pass; fastnn's eval mode
runs each conv-BN-ReLU as one pass with BN's folded affine (Sequential's plan), and the model
fold_batchnorm returns is timed too (its own plan).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH = 128
LR = 1e-3
SEED = 0
INFER_BATCH = 1000

# BENCH.md / issue 9 targets, ratio torch / fastnn
TARGETS = {"train": 3.0, "infer": 4.0, "threads": 1.7, "accuracy10": 0.92}


def _pin(threads):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")


def torch_model(torch, name):
    nn = torch.nn
    if name == "densenet":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
        from tests.models.torch_models import densenet  # the same network as fastnn.models.densenet

        return densenet(12, (6, 6, 6))
    layers = []
    for c_in, c_out in ((1, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))


def fastnn_model(fastnn, name):
    return fastnn.models.densenet(12, (6, 6, 6)) if name == "densenet" else fastnn.models.simple_cnn()


def run_fastnn(name, epochs, data):
    import numpy as np

    import fastnn
    from fastnn.train import LambdaCallback

    X, y, Xt, yt = data
    fastnn.manual_seed(SEED)
    model = fastnn_model(fastnn, name)
    opt = fastnn.optim.Adam(model.parameters(), lr=LR)
    ends = [time.perf_counter()]
    fastnn.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=BATCH, seed=SEED, verbose=0,
               callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: ends.append(time.perf_counter()))])
    seconds = list(np.diff(ends))
    acc = fastnn.evaluate(model, Xt, yt)["accuracy"]
    infer = {"eval": _images_per_s(lambda: fastnn.predict(model, Xt, batch_size=INFER_BATCH), len(Xt))}
    folded = None
    try:
        folded = fastnn.nn.fold_batchnorm(model)
    except Exception as e:  # noqa: BLE001  (the table says why there is no folded figure)
        infer["folded_error"] = f"{type(e).__name__}: {e}"
    if folded is not None:
        a, b = fastnn.predict(model, Xt[:INFER_BATCH]), fastnn.predict(folded, Xt[:INFER_BATCH])
        infer["folded_max_diff"] = float(np.abs(a - b).max())
        infer["folded_plan"] = list(folded.execution_plan)
        infer["folded"] = _images_per_s(lambda: fastnn.predict(folded, Xt, batch_size=INFER_BATCH), len(Xt))
    return {"seconds": seconds, "accuracy": acc, "params": int(model.flat_parameters().size), **infer}


def run_torch(name, epochs, data):
    import torch

    X, y, Xt, yt = data
    F = torch.nn.functional
    torch.manual_seed(SEED)
    model = torch_model(torch, name)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    tX, ty, tXt, tyt = (torch.from_numpy(a) for a in (X, y, Xt, yt))
    n = len(tX)
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(tX[idx]), ty[idx]).backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    model.eval()

    def predict():
        with torch.no_grad():
            return torch.cat([model(tXt[i:i + INFER_BATCH]) for i in range(0, len(tXt), INFER_BATCH)])

    acc = (predict().argmax(1) == tyt).float().mean().item()
    return {"seconds": seconds, "accuracy": acc, "params": sum(p.numel() for p in model.parameters()),
            "eval": _images_per_s(predict, len(Xt))}


def _images_per_s(fn, n, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def worker(args):
    _pin(args.threads)
    import fastnn

    fastnn.set_num_threads(args.threads)
    if args.impl == "torch":
        import torch

        torch.set_num_threads(args.threads)
    (X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(flatten=False)
    data = (X, y, Xt, yt)
    run = run_fastnn if args.impl == "fastnn" else run_torch
    result = run(args.model, args.epochs, data)
    result.update(impl=args.impl, threads=args.threads, epochs=args.epochs, model=args.model, train_samples=len(X))
    if args.impl == "fastnn":
        info = fastnn.build_info()
        result["build"] = f"fastnn {fastnn.__version__} isa={info['isa']} gemm={fastnn.gemm_backend().get('name')} {fastnn.gemm_backend().get('core')}"
    else:
        import torch

        result["build"] = f"torch {torch.__version__}"
    print("RESULT " + json.dumps(result, default=float), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5, help="epochs per run (default 5, BENCH.md's accuracy epochs)")
    ap.add_argument("--threads", default="1,2", help="thread counts to run (default 1,2)")
    ap.add_argument("--only", choices=["fastnn", "torch"], action="append", help="run only this library")
    ap.add_argument("--model", choices=["cnn", "densenet"], default="cnn")
    ap.add_argument("--json", default=None, help="write the results to this file")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--impl", default="fastnn", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.threads = int(args.threads)
        return worker(args)

    impls = args.only or ["fastnn", "torch"]
    threads = [int(t) for t in args.threads.split(",")]
    results = []
    for t in threads:
        for impl in impls:
            print(f"{args.model} {impl}, {t} thread{'s' if t > 1 else ''}, {args.epochs} epochs ...", flush=True)
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--impl", impl, "--threads", str(t),
                   "--epochs", str(args.epochs), "--model", args.model]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                if impl == "torch" and "No module named 'torch'" in proc.stderr:
                    print("  torch not installed: skipped")
                    continue
                print(proc.stdout + proc.stderr)
                raise SystemExit(f"{impl} with {t} threads failed")
            r = json.loads(line[len("RESULT "):])
            print(f"  {r['build']}; epochs " + " ".join(f"{s:.2f}" for s in r["seconds"]) + f" s; accuracy "
                  f"{r['accuracy']:.4f}", flush=True)
            results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    report(results, args.model)


def report(results, model):
    def later(r):
        return statistics.median(r["seconds"][1:] or r["seconds"])

    def total(r):
        return sum(r["seconds"])

    if not results:
        return
    r0 = results[0]
    print(f"\n{model}: {r0['train_samples']} training images, batch {BATCH}, Adam {LR}")
    print("| impl | threads | params | 1st epoch s | s/epoch (median after 1st) | all epochs s | test acc "
          "(epochs) | eval img/s @1000 | folded img/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        folded = f"{r['folded']:.0f}" if "folded" in r else r.get("folded_error", "–")[:60]
        print(f"| {r['impl']} | {r['threads']} | {r['params']:,} | {r['seconds'][0]:.2f} | {later(r):.2f} | "
              f"{total(r):.1f} | {r['accuracy']:.4f} ({r['epochs']}) | {r['eval']:.0f} | {folded} |")
    by = {(r["impl"], r["threads"]): r for r in results}
    print("\nratios (torch / fastnn, same thread count; targets from issue 9):")
    for t in sorted({r["threads"] for r in results}):
        f, p = by.get(("fastnn", t)), by.get(("torch", t))
        if f and p:
            folded = f"{f['folded'] / p['eval']:.2f}x" if "folded" in f else "–"
            print(f"  {t} threads: first epoch {p['seconds'][0] / f['seconds'][0]:.2f}x, later epochs "
                  f"{later(p) / later(f):.2f}x, all epochs {total(p) / total(f):.2f}x (target >= {TARGETS['train']}x); "
                  f"inference (target >= {TARGETS['infer']}x): eval mode {f['eval'] / p['eval']:.2f}x (conv-BN-ReLU "
                  f"planned as one pass with BN's folded affine), fold_batchnorm's model {folded}")
    for impl in ("fastnn", "torch"):
        one, two = by.get((impl, 1)), by.get((impl, 2))
        if one and two:
            print(f"  {impl} 2 threads vs 1: epochs {later(one) / later(two):.2f}x"
                  + (f" (target >= {TARGETS['threads']}x)" if impl == "fastnn" else "")
                  + f", inference {two['eval'] / one['eval']:.2f}x")
    for r in results:
        if "folded_max_diff" in r:
            print(f"  fastnn {r['threads']} threads: folded vs unfolded logits max |diff| {r['folded_max_diff']:.2e}; "
                  f"folded plan {r['folded_plan']}")


if __name__ == "__main__":
    sys.exit(main())
