"""The step time of data-parallel training on N machines with a ring allreduce (docs/distributed.md).

    PYTHONPATH=python:. python bench/distributed_model.py --step mlp-l=4.1 --step cnn=41 --step densenet=160
        (milliseconds of compute per step of 128 samples on one machine, measured by
        bench/bench_distributed.py's "1 process x 2 threads" rows; parameter counts from fastnn.models)

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
    import fastnn
    from fastnn.__main__ import build_model

    return int(build_model(name).flat_parameters().size) if name != "densenet" else int(
        fastnn.models.densenet(12, (6, 6, 6)).flat_parameters().size)


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
    ap.add_argument("--step", action="append", required=True, help="model=milliseconds per 128-sample step")
    args = ap.parse_args()
    for item in args.step:
        name, ms = item.split("=")
        table(name, float(ms), parameters(name))


if __name__ == "__main__":
    main()
