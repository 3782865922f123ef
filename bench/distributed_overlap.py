"""Whether overlapping the gradient allreduce with backward (DDP's buckets) would pay (issue 13):
a training step's parts per batch, and the allreduce of the whole flat gradient on 2 ranks.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/distributed_overlap.py \
        --model mlp-l,cnn --rounds 3

For each model, in rounds (so that the machine's load drifts alike over the parts):
  a rank's step   1 thread, batch 64 (a 2-rank run's shard of a global batch of 128): train-mode
                  forward, backward, Adam step, each the median of --repeats
  local step      2 threads, batch 128 (1 process): the same parts
  allreduce       mpirun -np 2 (a core each, Open MPI yielding as fastnn sets it): MPI_Allreduce
                  (sum, in place) of the model's float32 gradient, median after a Barrier
Bucketed overlap can hide at most min(allreduce, backward) of a step, and only if something
other than the rank's own core moves the bytes: on one machine the shared-memory allreduce is
copied by the ranks' cores inside MPI calls, so a progress thread would take the core from backward.
The last lines print both, and where a rank's step differs from the local one.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parts(model_name, threads, batch, repeats, train_step=True):
    """({part: median seconds} of one train-mode step of `batch` Fashion-MNIST samples: forward,
    backward, Adam and (train_step=True) the whole fastnn.train_step, parameter count)."""
    import numpy as np

    import fastnn
    from fastnn.__main__ import build_model

    fastnn.set_num_threads(threads)
    image = model_name in ("cnn", "resnet", "densenet")
    (X, y), _ = fastnn.datasets.fashion_mnist(flatten=not image)
    x = np.ascontiguousarray(X[:batch])
    fastnn.manual_seed(0)
    model = build_model(model_name)
    model.train()
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-4)
    out = model(x)
    g = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype) / out.size
    times = {"forward": [], "backward": [], "adam": [], "train_step": []}
    for r in range(repeats + 2):
        t0 = time.perf_counter()
        model(x)
        t1 = time.perf_counter()
        model.backward(g)
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        opt.zero_grad()
        t4 = time.perf_counter()
        if train_step:
            fastnn.train_step(model, x, y[:batch], "cross_entropy", opt, seed=0, step=r)
        t5 = time.perf_counter()
        if r >= 2:
            for k, v in (("forward", t1 - t0), ("backward", t2 - t1), ("adam", t3 - t2), ("train_step", t5 - t4)):
                times[k].append(v)
    return {k: statistics.median(v) for k, v in times.items()}, int(model.flat_parameters().size)


def allreduce_child(params, repeats):
    import numpy as np

    import fastnn.distributed as d

    comm = d.init()
    d.DataParallel()  # fastnn's settings (threads, Open MPI yielding)
    from mpi4py import MPI

    grads = (np.arange(params) % 97).astype(np.float32) * 1e-3
    times = []
    for r in range(repeats + 5):
        comm.Barrier()
        t = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, grads, MPI.SUM)
        if r >= 5:
            times.append(time.perf_counter() - t)
    if comm.Get_rank() == 0:
        times.sort()  # the fastest tenth: the copies' own cost, when neither rank was descheduled
        print("ROW " + json.dumps({"allreduce": statistics.median(times), "fast": times[len(times) // 10]}),
              flush=True)


def child_env():
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT]))
    return env


def run(cmd):
    out = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, check=True).stdout
    return json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW ")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mlp-l,cnn")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--global-batch", type=int, default=128)
    ap.add_argument("--parts", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--allreduce", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.parts:
        name, threads, batch = args.parts
        times, params = parts(name, int(threads), int(batch), args.repeats)
        print("ROW " + json.dumps({**times, "params": params}), flush=True)
        return
    if args.allreduce:
        return allreduce_child(*args.allreduce)
    me = [sys.executable, os.path.abspath(__file__), "--repeats", str(args.repeats)]
    print(f"load at the start {os.getloadavg()[0]:.2f}")
    for name in args.model.split(","):
        rows = {"rank": [], "local": [], "allreduce": []}
        for _ in range(args.rounds):
            rows["rank"].append(run(me + ["--parts", name, "1", str(args.global_batch // 2)]))
            rows["local"].append(run(me + ["--parts", name, "2", str(args.global_batch)]))
            params = rows["rank"][-1]["params"]
            rows["allreduce"].append(run(["mpirun", "-np", "2"] + me + ["--allreduce", str(params), "200"]))

        def med(kind, key):
            return statistics.median(r[key] for r in rows[kind]) * 1e3
        print(f"\n{name}: {params:,} parameters ({params * 4 / 1e6:.2f} MB float32), {args.rounds} rounds, "
              f"load {os.getloadavg()[0]:.2f}; ms per batch, medians (per round)")
        for kind, label in (("rank", "a rank: 1 thread, batch 64"), ("local", "local: 2 threads, batch 128")):
            cells = "  ".join(f"{k} {med(kind, k):.2f} ({', '.join(f'{r[k] * 1e3:.2f}' for r in rows[kind])})"
                              for k in ("forward", "backward", "adam", "train_step"))
            print(f"  {label:30s} {cells}")
        ar, bwd = med("allreduce", "allreduce"), med("rank", "backward")
        each = ", ".join(f"{r['allreduce'] * 1e3:.2f}" for r in rows["allreduce"])
        print(f"  allreduce of the gradient, 2 ranks: {ar:.2f} ms ({each})")
        print(f"  overlap could hide at most min(allreduce, backward) = {min(ar, bwd):.2f} ms of a rank's "
              f"{med('rank', 'train_step') + ar:.2f} ms step (and only with a core free to move the bytes)")
        # both ranks run at once: ideally a rank's step (1 core, 64 samples) takes the local one's (2 cores, 128)
        fb = {k: med(k, "forward") + med(k, "backward") for k in ("rank", "local")}
        print(f"  a rank's step against the local one: forward+backward {fb['rank']:.2f} vs {fb['local']:.2f} ms, "
              f"Adam {med('rank', 'adam'):.2f} vs {med('local', 'adam'):.2f} ms (every rank steps all the "
              f"parameters on its one core), + the allreduce {ar:.2f} ms")

if __name__ == "__main__":
    main()
