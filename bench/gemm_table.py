"""GEMM GFLOP/s of fastnn, numpy and torch on issue 8's shapes, each library in its own process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python:. python bench/gemm_table.py
    ... --quick --dtype float32 --threads 2 --shapes 1024x1024x1024,mlp,bmm --json out.json

For every product (the issue's table, its Aᵀ·B and A·Bᵀ variants, mlp-l's three products per
layer at batch 128, the cnn workload's backward products, bmm 64×128³), float32 and float64, 1 and 2 threads, prints a markdown table of
GFLOP/s (median of the timed samples, after a warm-up), % of the FMA peak when
fastnn.info.fma_peak_gflops exists, and fastnn / peer ratios (above 1: fastnn is faster).

One child process per (library, thread count), so no library's thread pool spins against
another's (BENCH.md). Children get the parent's environment without OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE (this workplace forces OpenBLAS's AVX2 kernel with them; BUILD-NOTES.md §6).
Threads: fastnn.set_num_threads, torch.set_num_threads, numpy's BLAS through threadpoolctl
(or OPENBLAS_NUM_THREADS in its environment when threadpoolctl is missing). Each result is checked
against a float64 product after all timings (so no numpy call runs between two timed ones).
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

LIBS = ["fastnn", "numpy", "torch"]
BASE = "base"  # --base: fastnn imported from another tree (old vs new, in the same interleaved rounds)
DTYPES = ["float32", "float64"]
VARIANT_LABEL = {"NN": "A·B", "TN": "Aᵀ·B", "NT": "A·Bᵀ"}
REMOVED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# (M, K, N, note) of issue 8's table
TABLE = [
    (1024, 1024, 1024, ""),
    (256, 1024, 1024, ""),
    (128, 784, 256, ""),
    (128, 3136, 128, ""),
    (6272, 288, 64, "im2col 3×3 conv 32→64, batch 32"),
    (25088, 9, 32, "im2col 3×3 conv 1→32, batch 32"),
]
# (M, K, N, note): products of few columns, which gemm gives to its narrow kernel
# (kernels/gemm_narrow.h: 8 <= N <= 4 SIMD packets (8 with AVX2), K >= 32, M >= 16, A row-major;
# `python -m fastnn info` prints this build's limits), and shapes just past those limits
NARROW = [
    (3136, 288, 32, "im2col 3×3 conv 32→32, batch 16"),
    (6272, 288, 32, "im2col 3×3 conv 32→32, batch 32"),
    (6272, 288, 16, "im2col 3×3 conv 32→16, batch 32"),
    (12544, 144, 64, "im2col 3×3 conv 16→64, batch 64"),
    (25088, 36, 16, "im2col 3×3 conv 4→16, batch 32"),
    (2048, 4000, 32, "deep: B packed 500 KiB float32"),
    (6272, 288, 8, ""),
]
# (M, K, N, variant, id, note): the 784-32 MLP's first layer at batch 1024 (BENCH.md's H·v model)
MLP_HV = [
    (1024, 784, 64, "NT", "hv-1024x784x64-NT", "H·v's X·[W;V]ᵀ, a 784→64 Linear's x·Wᵀ"),
    (128, 784, 64, "NT", "hv-128x784x64-NT", "a 784→64 Linear's x·Wᵀ, batch 128"),
    (32, 1024, 784, "TN", "hv-32x1024x784-TN", "784→32 weight gradient δᵀX, H·v's R{dW}"),
    (64, 1024, 784, "TN", "hv-64x1024x784-TN", "[δ, R{δ}]ᵀX stacked"),
    (128, 3136, 64, "NN", "narrow-128x3136x64", "deep: B packed 784 KiB float32"),
]
MLP = [784, 512, 256, 10]  # mlp-l's Linear layers
MLP_BATCH = 128


def cases():
    """Every product: dicts with id (what --shapes matches), label, kind, shape and variant.
    variant "TN": A is given as a transposed view (Aᵀ·B), "NT": B is (A·Bᵀ)."""
    out = []
    for m, k, n, note in TABLE:
        for v in ("NN", "TN", "NT"):
            label = f"{m}×{k}×{n} {VARIANT_LABEL[v]}" + (f" ({note})" if note and v == "NN" else "")
            out.append(dict(id=f"{m}x{k}x{n}-{v}", label=label, kind="matmul", batch=1, m=m, k=k, n=n, variant=v))
    for m, k, n, note in NARROW:
        out.append(dict(id=f"narrow-{m}x{k}x{n}", label=f"{m}×{k}×{n} A·B" + (f" ({note})" if note else ""),
                        kind="matmul", batch=1, m=m, k=k, n=n, variant="NN"))
    for m, k, n, v, cid, note in MLP_HV:
        out.append(dict(id=cid, label=f"{m}×{k}×{n} {VARIANT_LABEL[v]} ({note})", kind="matmul", batch=1, m=m, k=k,
                        n=n, variant=v))
    for fan_in, fan_out in zip(MLP, MLP[1:]):
        layer = f"mlp {fan_in}→{fan_out}"
        for short, what, (m, k, n), v in [
            ("fwd", "forward x·Wᵀ", (MLP_BATCH, fan_in, fan_out), "NT"),
            ("dx", "backward g·W", (MLP_BATCH, fan_out, fan_in), "NN"),
            ("dw", "backward gᵀ·x", (fan_out, MLP_BATCH, fan_in), "TN"),
        ]:
            out.append(dict(id=f"mlp-{fan_in}x{fan_out}-{short}", label=f"{layer} {what} ({m}×{k}×{n})",
                            kind="matmul", batch=1, m=m, k=k, n=n, variant=v))
    # the cnn workload's backward products (the forward ones are in TABLE): conv weight gradients
    # g^T cols, the second conv's input gradient g W (before col2im), the 3136 -> 128 Linear's two
    for cid, what, (m, k, n), v in [
        ("cnn-conv1-dw", "conv 1→32 backward gᵀ·cols", (32, 25088, 9), "TN"),
        ("cnn-conv2-dw", "conv 32→64 backward gᵀ·cols", (64, 6272, 288), "TN"),
        ("cnn-conv2-dx", "conv 32→64 backward g·W", (6272, 64, 288), "NN"),
        ("cnn-fc-dx", "linear 3136→128 backward g·W", (128, 128, 3136), "NN"),
        ("cnn-fc-dw", "linear 3136→128 backward gᵀ·x", (128, 128, 3136), "TN"),
    ]:
        out.append(dict(id=cid, label=f"cnn {what} ({m}×{k}×{n})", kind="matmul", batch=1, m=m, k=k, n=n, variant=v))
    out.append(dict(id="bmm-64x128x128x128", label="bmm 64×128³", kind="bmm", batch=64, m=128, k=128, n=128, variant="NN"))
    return out


def select(all_cases, shapes):
    """Cases whose id contains any of the comma-separated tokens (all when shapes is empty)."""
    tokens = [t.strip().lower() for t in (shapes or "").split(",") if t.strip()]
    chosen = [c for c in all_cases if not tokens or any(t in c["id"].lower() for t in tokens)]
    if not chosen:
        raise SystemExit(f"gemm_table: --shapes {shapes!r} matches none of: {', '.join(c['id'] for c in all_cases)}")
    return chosen


def flops(case):
    return 2.0 * case["batch"] * case["m"] * case["k"] * case["n"]


# --- child: one library, one thread count ------------------------------------------------------


def operands(np, rng, case, dtype):
    """(a, b, c): a (B, M, K) / (M, K) and b, stored transposed for the "T" operands, and c."""
    bsz, m, k, n, v = case["batch"], case["m"], case["k"], case["n"], case["variant"]
    lead = (bsz,) if case["kind"] == "bmm" else ()
    swap = lambda x: x.swapaxes(-1, -2)  # noqa: E731

    def make(rows, cols, transposed):
        shape = lead + ((cols, rows) if transposed else (rows, cols))
        x = rng.standard_normal(shape, dtype=dtype)
        return swap(x) if transposed else x

    return make(m, k, v[0] == "T"), make(k, n, v[1] == "T"), np.empty(lead + (m, n), dtype)


def product_fn(lib, mods, case, a, b, c):
    if lib in ("fastnn", BASE):
        F = mods["F"]
        f = F.bmm if case["kind"] == "bmm" else F.matmul
        return lambda: f(a, b, out=c)
    if lib == "numpy":
        np = mods["np"]
        return lambda: np.matmul(a, b, out=c)
    torch = mods["torch"]
    ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)  # views: strides kept
    f = torch.bmm if case["kind"] == "bmm" else torch.matmul
    return lambda: f(ta, tb, out=tc)


def median_seconds(fn, reps, min_sample):
    """Median time of one call over reps samples of >= min_sample seconds each, after warm-up."""
    t0 = time.perf_counter()
    fn()  # first touch, thread pool start
    once = time.perf_counter() - t0
    for _ in range(max(1, int(5 * min_sample / max(once, 1e-9)))):  # warm-up: clocks and caches
        fn()
    t0 = time.perf_counter()
    fn()
    inner = max(1, int(min_sample / max(time.perf_counter() - t0, 1e-9)))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def check(np, a, b, c, k, dtype):
    """Largest |c - a b| over c eps sqrt(k) |a| |b| (tests/conftest.py's bound): <= 1 passes."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    bound = 10 * np.finfo(dtype).eps * np.sqrt(k) * (np.abs(a64) @ np.abs(b64)) + np.finfo(dtype).smallest_normal
    return float(np.max(np.abs(c - a64 @ b64) / bound))


def library_info(lib, mods, threads):
    np = mods["np"]
    if lib in ("fastnn", BASE):
        fastnn = mods["fastnn"]
        info = fastnn.build_info()
        text = f"fastnn {info['version']} ({info['isa']}, {info['cxx_flags'].split()[-1]})"
        text += f" from {os.path.dirname(os.path.dirname(fastnn.__file__))}" if lib == BASE else ""
        backend = getattr(fastnn, "gemm_backend", None) or getattr(mods["C"], "_gemm_backend", None)
        if backend:
            b = dict(backend())
            text += ", GEMM " + " ".join(str(b[key]) for key in ("name", "core") if b.get(key))
        else:
            text += ", GEMM eigen"
        return text
    if lib == "numpy":
        pools = mods.get("blas_info") or []
        blas = "; ".join(f"{p['internal_api']} {p.get('version')} {p.get('architecture')} threads={p['num_threads']}"
                         for p in pools) or f"BLAS threads via OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
        return f"numpy {np.__version__} ({blas})"
    torch = mods["torch"]
    return f"torch {torch.__version__} (threads={torch.get_num_threads()})"


def child(args):
    lib, threads = args.child, args.threads_one
    import numpy as np

    mods = {"np": np}
    if lib in ("fastnn", BASE):
        import fastnn
        from fastnn import functional as F
        from fastnn._config import _C

        fastnn.set_num_threads(threads)
        mods.update(fastnn=fastnn, F=F, C=_C)
    elif lib == "numpy":
        try:
            from threadpoolctl import threadpool_info, threadpool_limits

            mods["limiter"] = threadpool_limits(threads, user_api="blas")  # held for the whole run
            mods["blas_info"] = [p for p in threadpool_info() if p["user_api"] == "blas"]
        except ImportError:  # the parent set OPENBLAS_NUM_THREADS instead
            pass
    else:
        import torch

        torch.set_num_threads(threads)
        mods["torch"] = torch

    # the FMA peak first: after check() below, numpy's spinning BLAS workers held a core (float64 2t read 12 of 40)
    peaks = {}
    if lib in ("fastnn", BASE):
        try:
            from fastnn import info as fastnn_info
        except ImportError:
            fastnn_info = None
        if fastnn_info is not None and hasattr(fastnn_info, "fma_peak_gflops"):
            peaks = {dtype: float(fastnn_info.fma_peak_gflops(dtype=dtype, threads=threads)) for dtype in args.dtypes}
    rng = np.random.default_rng(0)
    reps, min_sample = (3, 0.005) if args.quick else (args.reps, 0.02)
    results, keep = [], []
    for dtype in args.dtypes:
        for case in select(cases(), args.shapes):
            a, b, c = operands(np, rng, case, np.dtype(dtype))
            seconds = median_seconds(product_fn(lib, mods, case, a, b, c), reps, min_sample)
            results.append(dict(id=case["id"], dtype=dtype, seconds=seconds, gflops=flops(case) / seconds / 1e9))
            keep.append((a, b, c, case["k"], dtype))
            print(f"  {lib} {threads}t {dtype} {case['id']}: {results[-1]['gflops']:.1f} GFLOP/s", file=sys.stderr, flush=True)
    if not args.no_check:  # after every timing: numpy's BLAS must not run between fastnn's calls
        for r, (a, b, c, k, dtype) in zip(results, keep):
            r["error_over_bound"] = check(np, a, b, c, k, np.dtype(dtype))
    print(json.dumps(dict(lib=lib, threads=threads, about=library_info(lib, mods, threads), results=results, peaks=peaks)))


# --- parent: run the children, print the table -------------------------------------------------


def child_env(lib, threads, args):
    env = {k: v for k, v in os.environ.items() if k not in REMOVED_ENV}
    if lib == BASE:
        env["PYTHONPATH"] = os.pathsep.join([args.base] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                            if p and os.path.abspath(p) != os.path.abspath("python")])
    env["OMP_NUM_THREADS"] = str(threads)
    if lib == "numpy" and importlib.util.find_spec("threadpoolctl") is None:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env


def run_child(lib, threads, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, "--threads", str(threads),
           "--dtype", ",".join(args.dtypes), "--reps", str(args.reps)]
    cmd += ["--shapes", args.shapes] if args.shapes else []
    cmd += ["--quick"] if args.quick else []
    cmd += ["--no-check"] if args.no_check else []
    print(f"$ {lib}, {threads} thread(s)", file=sys.stderr, flush=True)
    r = subprocess.run(cmd, env=child_env(lib, threads, args), stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print(f"gemm_table: the {lib} child ({threads} threads) exited with {r.returncode}; its columns are –",
              file=sys.stderr)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def median_run(runs):
    """One run whose GFLOP/s are the medians over the rounds (issue 8's table: medians of 3 runs)."""
    first = dict(runs[0], rounds=len(runs))
    by_key = {}
    for run in runs:
        for r in run["results"]:
            by_key.setdefault((r["id"], r["dtype"]), []).append(r)
    first["results"] = [dict(rs[0], gflops=statistics.median(r["gflops"] for r in rs),
                             error_over_bound=max(r.get("error_over_bound", 0) for r in rs)) for rs in by_key.values()]
    return first


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit():
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def cell(gflops, peak):
    if gflops is None:
        return "–"
    text = f"{gflops:.0f}" if gflops >= 10 else f"{gflops:.2g}"
    return f"{text} ({100 * gflops / peak:.0f}%)" if peak else text


def tables(runs, args):
    """Markdown: a header naming the machine and the libraries, then one table per dtype."""
    got = {}  # (lib, threads, dtype, id) -> result
    peaks = {}  # (threads, dtype) -> GFLOP/s
    for run in runs:
        for r in run["results"]:
            got[(run["lib"], run["threads"], r["dtype"], r["id"])] = r
        for dtype, p in run["peaks"].items():
            peaks[(run["threads"], dtype)] = p
    libs = [lib for lib in args.libs if any(run["lib"] == lib for run in runs)]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    reps = "3 short samples (--quick)" if args.quick else f"{args.reps} samples"
    reps += f" (median over {args.rounds} interleaved rounds)" if args.rounds > 1 else ""
    lines = [f"GEMM GFLOP/s, {now}, commit {git_commit()}, {cpu_model()}, {os.cpu_count()} cores; "
             f"median of {reps} after a warm-up, one process per library and thread count, "
             f"without {' and '.join(REMOVED_ENV)}", ""]
    for run in runs:
        lines.append(f"- {run['threads']}t: {run['about']}")
    missing = [lib for lib in args.libs if lib not in libs]
    if missing:
        lines.append(f"- not measured (not installed or failed): {', '.join(missing)}")
    if peaks:
        lines.append("- FMA peak (fastnn.info.fma_peak_gflops): "
                     + ", ".join(f"{d} {t}t {p:.0f}" for (t, d), p in sorted(peaks.items(), key=lambda kv: (kv[0][1], kv[0][0]))))
    else:
        lines.append("- FMA peak: fastnn.info.fma_peak_gflops not available, no % column")
    bad = [f"{lib} {t}t {d} {i} ({r['error_over_bound']:.3g}× the bound)"
           for (lib, t, d, i), r in got.items() if r.get("error_over_bound", 0) > 1]
    if bad:
        lines.append("- **wrong results** (|c - ab| above c·ε·√K·|A||B|): " + "; ".join(bad))
    peers = [lib for lib in libs if lib != "fastnn"]
    paired = getattr(args, "paired", {})  # (threads, dtype, id) -> median over rounds of fastnn / base
    for dtype in args.dtypes:
        cols = [(lib, t) for t in args.threads for lib in libs]
        ratio_cols = [(peer, t) for peer in peers for t in args.threads] if "fastnn" in libs else []
        lines += ["", f"### {dtype}, GFLOP/s" + (" (% of FMA peak)" if peaks else ""), "",
                  "| product (M×K×N) | " + " | ".join(f"{lib} {t}t" for lib, t in cols)
                  + "".join(f" | fastnn / {peer} {t}t" for peer, t in ratio_cols) + " |",
                  "|---" * (1 + len(cols) + len(ratio_cols)) + "|"]
        for case in select(cases(), args.shapes):
            row = [case["label"]]
            for lib, t in cols:
                r = got.get((lib, t, dtype, case["id"]))
                row.append(cell(r and r["gflops"], peaks.get((t, dtype))))
            for peer, t in ratio_cols:
                f, p = got.get(("fastnn", t, dtype, case["id"])), got.get((peer, t, dtype, case["id"]))
                if peer == BASE and (t, dtype, case["id"]) in paired:  # the median of the rounds' ratios
                    row.append(f"{paired[(t, dtype, case['id'])]:.2f}")
                else:
                    row.append(f"{f['gflops'] / p['gflops']:.2f}" if f and p else "–")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 short samples per product instead of --reps")
    p.add_argument("--reps", type=int, default=7, help="timed samples per product (median reported; default 7)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every child this many times, interleaved, and report the median (default 1)")
    p.add_argument("--dtype", default="float32,float64", help="float32, float64 or both (comma-separated)")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    p.add_argument("--shapes", default="", help="only products whose id contains one of these comma-separated "
                   "tokens, e.g. 1024x1024x1024,-TN,mlp,bmm (ids: --list)")
    p.add_argument("--libs", default=",".join(LIBS), help="libraries to run (default fastnn,numpy,torch)")
    p.add_argument("--no-check", action="store_true", help="skip the float64 check of every result")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--base", help="also run fastnn from this python/ directory (another build, e.g. main's) as "
                   "library 'base' in the same interleaved rounds; its ratio column is the median of the "
                   "rounds' fastnn / base ratios")
    p.add_argument("--list", action="store_true", help="print the product ids and exit")
    p.add_argument("--child", choices=LIBS + [BASE], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if not args.dtypes or any(d not in DTYPES for d in args.dtypes):
        p.error(f"--dtype must be float32, float64 or both, got {args.dtype!r}")
    try:
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error(f"--threads must be integers, got {args.threads!r}")
    if not args.threads or min(args.threads) < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    args.libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    if any(lib not in LIBS for lib in args.libs):
        p.error(f"--libs must be among {', '.join(LIBS)}, got {args.libs}")
    if args.base:
        if not os.path.isdir(os.path.join(args.base, "fastnn")):
            p.error(f"--base must be a directory holding the fastnn package, got {args.base!r}")
        args.base = os.path.abspath(args.base)
        args.libs.insert(1, BASE)
    if args.reps < 1 or args.rounds < 1:
        p.error("--reps and --rounds must be >= 1")
    select(cases(), args.shapes)  # an unknown token fails before any child starts
    return args


def main(argv):
    args = parse(argv)
    if args.list:
        print("\n".join(f"{c['id']:<28} {c['label']}" for c in cases()))
        return
    if args.child:
        args.threads_one = args.threads[0]
        return child(args)
    libs = [lib for lib in args.libs if lib in ("fastnn", BASE) or importlib.util.find_spec(lib) is not None]
    for lib in set(args.libs) - set(libs):
        print(f"gemm_table: {lib} is not installed, skipped", file=sys.stderr)
    rounds = {}  # (lib, threads) -> the runs of every round, interleaved so that drift hits all alike
    for _ in range(args.rounds):
        for threads in args.threads:
            for lib in libs:
                run = run_child(lib, threads, args)
                if run:
                    rounds.setdefault((lib, threads), []).append(run)
    args.paired = {}
    for threads in args.threads:  # fastnn / base per round (each round ran both back to back), then the median
        pairs = list(zip(rounds.get(("fastnn", threads), []), rounds.get((BASE, threads), [])))
        ratios = {}
        for new, old in pairs:
            old_by = {(r["dtype"], r["id"]): r["gflops"] for r in old["results"]}
            for r in new["results"]:
                if (r["dtype"], r["id"]) in old_by:
                    ratios.setdefault((threads, r["dtype"], r["id"]), []).append(r["gflops"] / old_by[(r["dtype"], r["id"])])
        args.paired.update({key: statistics.median(v) for key, v in ratios.items()})
    runs = [median_run(rs) for rs in rounds.values()]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(argv=argv, runs=runs), f, indent=1)
    print(tables(runs, args))


if __name__ == "__main__":
    main(sys.argv[1:])
