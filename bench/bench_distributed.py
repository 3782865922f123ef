"""Data-parallel training on this machine (issue 13): 2 ranks x 1 thread against 1 process x 2 threads.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/bench_distributed.py \
        --model mlp-l,cnn --rounds 2 --scaling          # everything issue 13 reports, in one run
    ... --model cnn --epochs 3 --rounds 2 --train-size 20000
    ... --model densenet --train-size 1280 --rounds 2   # DenseNet-BC k=12 (6,6,6): ~0.7 s a batch idle

For each model, each round runs, one after the other (interleaved, so that the machine's load
drifts alike):
  local   1 process, 2 threads, fit(batch_size=128)
  ranks   mpirun -np 2 (its default binding: a core each), fit(batch_size=64,
          distributed=DataParallel()): the same global batch of 128; 1 thread per rank
          (DataParallel's share of the cores); Open MPI yields the core while it waits (fastnn's default)
  spin    the same with OMPI_MCA_mpi_yield_when_idle=0: Open MPI's own default (busy polling)
  hook    mpirun -np 1 --bind-to none, 2 threads: epochs through fit's C++ loop alternately without
          and with DataParallel's gradient hook (the sync, the numpy weighting, mpi4py's allreduce,
          nothing to exchange), in one process: the paired difference per batch is the hook's
          cost; its hook-less epochs against `local` are what running as an MPI process costs
and prints the median epoch time of each (the epochs after the first), the ratios, the time per
batch spent in the sync and the gradient allreduce (the communication share of a step, rank 0;
it includes waiting for the slower rank), and, when mpicc exists, the same allreduces from C
(bench/mpi_allreduce.c: what MPI linked into the C++ module would pay per batch) against mpi4py.
`--scaling` then runs distributed_model.py --measure (this machine's step times of mlp-l, the CNN
and DenseNet, and docs/distributed.md's N = 2..64 tables). `--json FILE` keeps the raw rows.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def child(args):
    """One run: prints one JSON line."""
    import numpy as np

    import fastnn
    from fastnn.__main__ import build_model
    from fastnn.train import LambdaCallback

    fastnn.set_num_threads(args.threads)
    image = args.model in ("cnn", "resnet", "densenet")
    (X, y), _ = fastnn.datasets.fashion_mnist(flatten=not image)
    X, y = X[:args.train_size], y[:args.train_size]
    fastnn.manual_seed(0)
    model = build_model(args.model)
    dist, comm_time = None, [0.0, 0.0]
    if args.distributed:
        import fastnn.distributed as d
        from fastnn.distributed.channel import Channel

        def timed(fn, slot):
            def call(self, *a, **k):
                t = time.perf_counter()
                try:
                    return fn(self, *a, **k)
                finally:
                    comm_time[slot] += time.perf_counter() - t
            return call
        Channel.sync = timed(Channel.sync, 0)
        Channel.allreduce_ = timed(Channel.allreduce_, 1)
        d.init()
        dist = d.DataParallel()
    epochs, marks = [], []
    cb = LambdaCallback(on_epoch_begin=lambda e, logs: marks.append((time.perf_counter(), list(comm_time))),
                        on_epoch_end=lambda e, logs: epochs.append(
                            (time.perf_counter() - marks[-1][0], [c - m for c, m in zip(comm_time, marks[-1][1])])))
    world = dist.size if dist else 1
    batch = args.global_batch // world
    fastnn.fit(model, X, y, optimizer="adam", epochs=args.epochs, batch_size=batch, seed=0, verbose=0,
               callbacks=[cb], distributed=dist)
    if dist is None or dist.rank == 0:
        batches = -(-len(X) // args.global_batch)
        print("ROW " + json.dumps({"epochs": [e[0] for e in epochs], "sync": [e[1][0] for e in epochs],
                                   "allreduce": [e[1][1] for e in epochs], "batches": batches,
                                   "params": int(model.flat_parameters().size), "samples": len(X)}), flush=True)


def hook_ab(args):
    """In one MPI process: epochs of fit's C++ loop alternately without and with DataParallel's
    gradient hook; prints one JSON line of both series (seconds per epoch)."""
    import numpy as np

    import fastnn
    import fastnn.distributed as d
    from fastnn.__main__ import build_model
    from fastnn._config import _C
    from fastnn.distributed.data_parallel import _GradientAverage

    fastnn.set_num_threads(args.threads)
    image = args.model in ("cnn", "resnet", "densenet")
    (X, y), _ = fastnn.datasets.fashion_mnist(flatten=not image)
    X, y = np.ascontiguousarray(X[:args.train_size]), np.ascontiguousarray(y[:args.train_size])
    fastnn.manual_seed(0)
    model = build_model(args.model)
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    grads = model.flat_grad()
    d.init()
    channel = d.DataParallel(threads=args.threads).channel
    times = {"without": [], "with": []}
    batch = args.global_batch
    # a warm-up epoch, then pairs in ABBA order (without, with, with, without, ...), so that a drift
    # of the machine's load over the run weighs on both alike
    kinds = ["with"] + [k for p in range(args.epochs) for k in (("without", "with"), ("with", "without"))[p % 2]]
    for e, kind in enumerate(kinds):
        extra = {"grad_hook": _GradientAverage(channel, grads, True)} if kind == "with" else {}
        model.train()
        t = time.perf_counter()
        _C.train_epoch(model._layer, X, y, "cross_entropy", "mean", grads, opt._deferred_steps(), batch, True, 0, e,
                       e * -(-len(X) // batch), 0.0, 0.0, None, **extra)
        if e:
            times[kind].append(time.perf_counter() - t)
    print("ROW " + json.dumps(times), flush=True)


def hook_loop(params, repeats):
    """The gradient hook's communication alone, as fit runs it per batch (the sync through
    Iallreduce + MPI_Test, the weighting, the in-place Allreduce), from Python: median microseconds."""
    import numpy as np

    import fastnn.distributed as d

    d.init()
    channel = d.DataParallel().channel
    grads = (np.arange(params) % 97).astype(np.float32) * 1e-3
    times = []
    for r in range(repeats + 10):
        channel.comm.Barrier()
        t = time.perf_counter()
        channel.sync("bench", [64, 1.0, 0, 0, 0, 0])
        grads *= np.float32(0.5)
        channel.allreduce_(grads, "bench")
        if r >= 10:
            times.append(time.perf_counter() - t)
    if channel.rank == 0:
        print(f"{statistics.median(times) * 1e6:.1f} us per batch", flush=True)


def run(args, model, kind):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT]))
    me = [sys.executable, os.path.abspath(__file__), "--model", model, "--epochs", str(args.epochs),
          "--train-size", str(args.train_size), "--global-batch", str(args.global_batch)]
    if kind == "local":
        cmd = me + ["--child", "--threads", "2"]
    elif kind in ("ranks", "spin"):
        cmd = ["mpirun", "-np", "2"] + me + ["--child", "--threads", "1", "--distributed"]
        env["OMPI_MCA_mpi_yield_when_idle"] = "1" if kind == "ranks" else "0"
    else:
        cmd = ["mpirun", "-np", "1", "--bind-to", "none"] + me + ["--hook-ab", "--threads", "2"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW ")))


def callback_overhead(batches=20000, repeats=5):
    """Microseconds per batch that calling a Python gradient hook from the C++ loop adds (the GIL
    taken, 7 arguments converted, a float returned): a tiny model, batch 1, with a no-op hook against
    none, paired runs in this process."""
    import numpy as np

    import fastnn
    from fastnn._config import _C

    fastnn.set_num_threads(1)
    model = fastnn.nn.Sequential(fastnn.nn.Linear(4, 3))
    X = np.random.default_rng(0).standard_normal((batches, 4)).astype(np.float32)
    y = np.arange(batches) % 3
    args = (model._layer, X, y, "cross_entropy", "mean", model.flat_grad(), [], 1, False, 0, 0, 0)
    hook = lambda batch, count, loss, *sums: loss  # noqa: E731
    diffs = []
    for _ in range(repeats):
        t = time.perf_counter()
        _C.train_epoch(*args)
        bare = time.perf_counter() - t
        t = time.perf_counter()
        _C.train_epoch(*args, grad_hook=hook)
        diffs.append((time.perf_counter() - t - bare) / batches * 1e6)
    return statistics.median(diffs)


def allreduce_paths(params, rounds=3, repeats=300):
    """[(C us, Python us)] per batch of the same sync + weighting + gradient allreduce, from C
    (bench/mpi_allreduce.c: MPI linked into C++) and through mpi4py (hook_loop), 2 ranks,
    alternating; None without mpicc."""
    if shutil.which("mpicc") is None:
        return None
    # both paths wait alike: Open MPI yielding the core (fastnn.distributed's default)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_mpi_yield_when_idle="1", PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT]))
    mpirun = ["mpirun", "-np", "2"]
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "allreduce")
        subprocess.run(["mpicc", "-O2", "-o", exe, os.path.join(HERE, "mpi_allreduce.c")], check=True)
        for _ in range(rounds):
            c = subprocess.run(mpirun + [exe, str(params), str(repeats)], env=env, capture_output=True, text=True,
                               check=True).stdout
            py = subprocess.run(mpirun + [sys.executable, os.path.abspath(__file__), "--hook-loop", str(params),
                                          str(repeats)], env=env, capture_output=True, text=True, check=True).stdout
            pairs.append((float(c.split()[0]), float(py.split()[0])))
    return pairs


def epoch_time(row):
    """A run's median epoch time, without its first epoch when there are others."""
    return statistics.median(row["epochs"][1:] or row["epochs"])


def report(args, model, rows):
    """Prints one model's figures; returns its summary."""
    later = {k: [e for r in rows[k] for e in r["epochs"][1:]] or [e for r in rows[k] for e in r["epochs"]]
             for k in ("local", "ranks", "spin")}
    med = {k: statistics.median(v) for k, v in later.items()}
    first = rows["ranks"][0]
    batches = first["batches"]
    per_batch = {k: med[k] / batches * 1e6 for k in med}

    def comm(kind, key):
        return statistics.median(s for r in rows[kind] for s in r[key][1:] or r[key]) / batches * 1e6
    share = {k: (comm(k, "sync"), comm(k, "allreduce")) for k in ("ranks", "spin")}
    pairs = [(a, b) for r in rows["hook"] for a, b in zip(r["with"], r["without"])]
    hook_us = statistics.median((a - b) / batches * 1e6 for a, b in pairs)
    hook_ratio = statistics.median(a / b for a, b in pairs)
    without = statistics.median(b for r in rows["hook"] for b in r["without"])
    paths = allreduce_paths(first["params"])
    print(f"\n{model}: {first['params']:,} parameters ({first['params'] * 4 / 1e6:.2f} MB float32), "
          f"{first['samples']} samples, global batch {args.global_batch}, {batches} batches/epoch, "
          f"{args.rounds} rounds; load {os.getloadavg()[0]:.2f}")
    print(f"  1 process x 2 threads       {med['local']:.3f} s/epoch  ({per_batch['local']:.0f} us/batch)")
    for kind, label in (("ranks", "2 ranks x 1 thread (yield)"), ("spin", "2 ranks x 1 thread (spin) ")):
        sync, allreduce = share[kind]
        rounds = ", ".join(f"{epoch_time(a) / epoch_time(b):.2f}" for a, b in zip(rows[kind], rows["local"]))
        print(f"  {label}  {med[kind]:.3f} s/epoch  ({per_batch[kind]:.0f} us/batch)  / local = "
              f"{med[kind] / med['local']:.3f} (rounds {rounds}); sync {sync:.0f} + allreduce {allreduce:.0f} us "
              f"= {(sync + allreduce) / per_batch[kind] * 100:.1f}% of a step")
    print(f"  yield / spin = {med['ranks'] / med['spin']:.3f} (per round "
          + ", ".join(f"{epoch_time(a) / epoch_time(b):.2f}" for a, b in zip(rows["ranks"], rows["spin"])) + ")")
    print(f"  gradient hook, 1 rank, nothing to exchange (paired epochs in one process, {len(pairs)} pairs): "
          f"{hook_us:+.0f} us/batch, with / without = {hook_ratio:.3f}")
    print(f"  an MPI process (mpirun -np 1 --bind-to none) without the hook / local fit = {without / med['local']:.3f}")
    summary = {"model": model, "params": first["params"], "batches": batches, "median_s": med,
               "sync_us": {k: v[0] for k, v in share.items()}, "allreduce_us": {k: v[1] for k, v in share.items()},
               "hook_us": hook_us, "hook_ratio": hook_ratio, "allreduce_paths": paths}
    if paths:
        c_us, py_us = (statistics.median(p[i] for p in paths) for i in (0, 1))
        print(f"  sync + weighting + gradient allreduce alone, 2 ranks, per batch: from C (MPI linked in) "
              f"{c_us:.0f} us, through mpi4py (fit's path) {py_us:.0f} us: Python / C = "
              f"{statistics.median(p[1] / p[0] for p in paths):.2f} ({len(paths)} alternating pairs)")
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mlp-l",
                    help="a model of python -m fastnn (mlp-l, cnn, densenet, ...), or several: mlp-l,cnn")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=60000)
    ap.add_argument("--global-batch", type=int, default=128)
    ap.add_argument("--scaling", action="store_true", help="then distributed_model.py --measure")
    ap.add_argument("--json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hook-ab", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hook-loop", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.hook_ab:
        return hook_ab(args)
    if args.hook_loop:
        return hook_loop(*args.hook_loop)
    print(f"load at the start {os.getloadavg()[0]:.2f}; calling a no-op Python hook from the C++ loop: "
          f"{callback_overhead():.2f} us per batch", flush=True)
    out = []
    for model in args.model.split(","):
        rows = {"local": [], "ranks": [], "spin": [], "hook": []}
        for _ in range(args.rounds):
            for kind in rows:
                rows[kind].append(run(args, model, kind))
        out.append({"rows": rows, **report(args, model, rows)})
    if args.scaling:
        env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        print(flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, "distributed_model.py"), "--measure"], env=env, check=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"models": out, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    main()
