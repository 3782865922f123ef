"""The step time of data-parallel training on N machines with a ring allreduce (docs/distributed.md).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/distributed_model.py --measure
    PYTHONPATH=python:. python bench/distributed_model.py --step mlp-l=4.1 --step cnn=41 --step densenet=160

--measure times one training step (fastnn.train_step: forward, backward, Adam) of 128 Fashion-MNIST
samples for mlp-l, cnn and densenet (k=12, (6,6,6)) on this machine, 2 threads, median of 20 after
3 warm-ups (a median resists the load of a shared machine better than an epoch's mean);
--step gives those milliseconds instead. Parameter counts come from the models themselves.

A ring allreduce of S bytes over N machines sends 2 (N - 1) / N * S bytes per machine in
2 (N - 1) messages (reduce-scatter, then all-gather; Patarasuk & Yuan 2009), so
    t_comm(N) = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * latency  (+ the sync: 2 log2 N latencies)
Two regimes: weak scaling (each machine keeps its batch of 128: compute per step stays t_c) and
strong scaling (one global batch of 128 split N ways: compute t_c / N). Without overlap the
step is t_c + t_comm; overlapping the allreduce with backward in buckets (DDP) hides up to the
backward's share of the compute (about 2/3), so the step becomes max(t_c, t_c / 3 + t_comm).
"""

import argparse
import math

LINKS = {"10 Gb/s": (10e9 / 8, 20e-6), "100 Gb/s": (100e9 / 8, 3e-6)}  # bytes/s, per-message latency (TCP, RDMA)
NS = (2, 4, 8, 16, 32, 64)


def comm_seconds(n, nbytes, bandwidth, latency):
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency + 2 * math.ceil(math.log2(n)) * latency


def parameters(name):
    return int(build(name).flat_parameters().size)


def build(name):
    import fastnn
    from fastnn.__main__ import build_model

    fastnn.manual_seed(0)
    return fastnn.models.densenet(12, (6, 6, 6)) if name == "densenet" else build_model(name)


def measure_step_ms(name, batch=128, repeats=20):
    import statistics
    import time

    import numpy as np

    import fastnn

    fastnn.set_num_threads(2)
    model = build(name)
    image = name != "mlp-l"
    (X, y), _ = fastnn.datasets.fashion_mnist(flatten=not image)
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for i in range(repeats + 3):
        rows = slice((i * batch) % (len(X) - batch), (i * batch) % (len(X) - batch) + batch)
        t = time.perf_counter()
        fastnn.train_step(model, X[rows], y[rows], "cross_entropy", opt, seed=0, step=i)
        if i >= 3:
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def table(name, step_ms, params):
    nbytes = 4 * params
    print(f"\n{name}: {params:,} parameters = {nbytes / 1e6:.2f} MB of float32 gradient; compute {step_ms:g} ms "
          "per step of 128 samples on one 2-core machine")
    print("| N | link | t_comm ms | weak: step ms (eff.) | weak + overlap | strong: step ms (speed-up) |")
    print("|---|---|---|---|---|---|")
    tc = step_ms / 1e3
    for link, (bw, lat) in LINKS.items():
        for n in NS:
            t = comm_seconds(n, nbytes, bw, lat)
            weak = tc + t
            overlap = max(tc, tc / 3 + t)
            strong = tc / n + t
            print(f"| {n} | {link} | {t * 1e3:.2f} | {weak * 1e3:.2f} ({tc / weak:.0%}) | {overlap * 1e3:.2f} "
                  f"({tc / overlap:.0%}) | {strong * 1e3:.2f} ({tc / strong:.1f}x) |")
        # where communication overtakes compute: weak scaling (t_comm > t_c), strong (t_comm > t_c / N)
        weak_n = next((n for n in range(2, 4097) if comm_seconds(n, nbytes, bw, lat) > tc), None)
        strong_n = next((n for n in range(2, 4097) if comm_seconds(n, nbytes, bw, lat) > tc / n), None)
        print(f"  {link}: communication exceeds compute from N = {weak_n or '> 4096'} (weak scaling), "
              f"N = {strong_n or '> 4096'} (strong scaling of a 128-sample batch); batch b per machine "
              f"instead of 128 keeps t_comm and scales compute by b/128")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", action="append", default=[], help="model=milliseconds per 128-sample step")
    ap.add_argument("--measure", action="store_true", help="time the steps of mlp-l, cnn and densenet here")
    args = ap.parse_args()
    steps = [item.split("=") for item in args.step]
    if args.measure:
        import os

        steps += [(name, measure_step_ms(name)) for name in ("mlp-l", "cnn", "densenet")]
        print(f"measured at load {os.getloadavg()[0]:.2f}: " + ", ".join(f"{n} {ms:.2f} ms" for n, ms in steps))
    if not steps:
        ap.error("give --measure or --step model=ms")
    for name, ms in steps:
        table(name, float(ms), parameters(name))


if __name__ == "__main__":
    main()
