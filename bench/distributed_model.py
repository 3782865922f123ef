"""The step time of data-parallel training on N machines with a ring allreduce (docs/distributed.md).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/distributed_model.py --measure
    PYTHONPATH=python:. python bench/distributed_model.py --step mlp-l=4.2/2.0 --step cnn=42 --step densenet=716

--measure times fit's training step (forward, backward, Adam; the median epoch over its batches) of
128 Fashion-MNIST samples for mlp-l, cnn and densenet (k=12, (6,6,6)) on this machine, 2 threads,
and the backward pass alone (distributed_overlap.py); --step gives those milliseconds instead
(MS/BACKWARD_MS). Parameter counts come from the models themselves.

A ring allreduce of S bytes over N machines sends 2 (N - 1) / N * S bytes per machine in
2 (N - 1) messages (reduce-scatter, then all-gather; Patarasuk & Yuan 2009), so
    t_comm(N) = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * latency  (+ the sync: 2 log2 N latencies)
Two regimes: weak scaling (each machine keeps its batch of 128: compute per step stays t_c) and
strong scaling (one global batch of 128 split N ways: compute t_c / N). Without overlap the
step is t_c + t_comm; overlapping the allreduce with backward in buckets (DDP) hides it behind the
backward pass t_b (measured, or 2/3 of t_c), so the step becomes t_c + max(0, t_comm - t_b), given
a network that moves the bytes while the cores compute.
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


def measure_step_ms(name, batch=128, batches=20, epochs=3):
    """fit's median time per batch of `batch` Fashion-MNIST samples (Adam, 2 threads): epochs of
    `batches` batches after a warm-up epoch, as bench_distributed.py's local run trains (fit's C++
    loop; fastnn.train_step pays per call checks that fit pays once: mlp-l 6.1 against 4.2 ms idle)."""
    import statistics
    import time

    import fastnn
    from fastnn.train import LambdaCallback

    fastnn.set_num_threads(2)
    model = build(name)
    image = name != "mlp-l"
    (X, y), _ = fastnn.datasets.fashion_mnist(flatten=not image)
    X, y = X[:batch * batches], y[:batch * batches]
    opt = fastnn.optim.Adam(model.parameters(), lr=1e-3)
    fastnn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=batch, verbose=0)
    ends = [time.perf_counter()]
    fastnn.fit(model, X, y, optimizer=opt, epochs=epochs, batch_size=batch, verbose=0,
               callbacks=[LambdaCallback(on_epoch_end=lambda e, logs: ends.append(time.perf_counter()))])
    return statistics.median(b - a for a, b in zip(ends, ends[1:])) / batches * 1e3


def measure_backward_ms(name, batch=128):
    """The backward pass's median milliseconds in a step of `batch` samples (2 threads): what an
    overlapped allreduce could hide behind (distributed_overlap.py)."""
    from distributed_overlap import parts

    return parts(name, 2, batch, 5 if name == "densenet" else 15, train_step=False)[0]["backward"] * 1e3


def table(name, step_ms, params, backward_ms=None):
    nbytes = 4 * params
    backward_ms = 2 * step_ms / 3 if backward_ms is None else backward_ms
    print(f"\n{name}: {params:,} parameters = {nbytes / 1e6:.2f} MB of float32 gradient; compute {step_ms:g} ms "
          f"per step of 128 samples on one 2-core machine, of which backward {backward_ms:.3g} ms")
    print("| N | link | t_comm ms | weak: step ms (eff.) | weak + overlap | strong: step ms (speed-up) |")
    print("|---|---|---|---|---|---|")
    tc, tb = step_ms / 1e3, backward_ms / 1e3
    for link, (bw, lat) in LINKS.items():
        for n in NS:
            t = comm_seconds(n, nbytes, bw, lat)
            weak = tc + t
            overlap = tc + max(0.0, t - tb)  # the allreduce hidden behind backward, as far as it lasts
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
    ap.add_argument("--step", action="append", default=[],
                    help="model=MS or model=MS/BACKWARD_MS: milliseconds per 128-sample step (and of its backward "
                         "pass; default 2/3 of the step)")
    ap.add_argument("--measure", action="store_true", help="time the steps of mlp-l, cnn and densenet here")
    args = ap.parse_args()
    steps = []
    for item in args.step:
        name, _, ms = item.partition("=")
        step, _, backward = ms.partition("/")
        steps.append((name, float(step), float(backward) if backward else None))
    if args.measure:
        import os

        batches = {"mlp-l": 100, "cnn": 20, "densenet": 8}
        steps += [(name, measure_step_ms(name, batches=batches[name]), measure_backward_ms(name))
                  for name in ("mlp-l", "cnn", "densenet")]
        print(f"measured at load {os.getloadavg()[0]:.2f}: "
              + ", ".join(f"{n} {ms:.2f} ms (backward {b:.2f})" for n, ms, b in steps))
    if not steps:
        ap.error("give --measure or --step model=ms")
    for name, ms, backward in steps:
        table(name, ms, parameters(name), backward)


if __name__ == "__main__":
    main()
