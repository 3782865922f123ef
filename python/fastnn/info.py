"""What `python -m fastnn info` reports: the CPU, the compiled variant and GEMM kernel in use, the
measured FMA peak, and GEMM speed as a fraction of that peak. About 1-2 s of timing in all."""

import os
import sys
import time

import numpy as np

from ._config import _C, build_info, gemm_backend, get_num_threads
from ._validate import check_int

# The products (M, K, N) the models spend their time in, timed after the square size^3 one: the
# MLP's Linear layer (batch 128, 784 -> 256) and the im2col product of a 3x3 convolution,
# 32 -> 64 channels, batch 32.
GEMM_SHAPES = ((128, 784, 256), (6272, 288, 64))

# The CPU features that decide which variant and kernel run, in /proc/cpuinfo's spelling.
_ISA_FLAGS = ("sse2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_bf16",
              "avx512_fp16", "amx_tile")


def cpu_info(path="/proc/cpuinfo"):
    """{'model', 'vendor', 'family', 'model_number', 'stepping', 'logical_cpus', 'isa_flags'} of
    this machine, from the first processor in /proc/cpuinfo as lscpu reads them (a VM may name
    the CPU only 'AMD EPYC': family and model tell its generation). Fields another system does not
    provide are None; the model then is platform's name for the processor."""
    fields = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the end of the first processor's block
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), " ".join(value.split()))
    except OSError:
        pass
    model = fields.get("model name")
    if not model:
        import platform

        model = platform.processor() or platform.machine() or "unknown"
    flags = set(fields.get("flags", "").split())
    return {"model": model, "vendor": fields.get("vendor_id"), "family": fields.get("cpu family"),
            "model_number": fields.get("model"), "stepping": fields.get("stepping"),
            "logical_cpus": os.cpu_count(), "isa_flags": [f for f in _ISA_FLAGS if f in flags]}


def fma_peak_gflops(dtype="float32", threads=None):
    """GFLOP/s of `threads` threads (default: fastnn's thread count) running independent
    register-only FMA chains in the widest vectors of the loaded module's ISA: the ceiling any
    GEMM of that dtype can reach with this build on this CPU. Takes about 0.1 s."""
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in ("float32", "float64"):
        raise ValueError(f"fma_peak_gflops: dtype must be float32 or float64, got {dtype!r}")
    threads = get_num_threads() if threads is None else check_int(threads, "fma_peak_gflops", "threads", 1, 1024)
    return _C._fma_peak_gflops(name, threads)


def _median_seconds(fn, min_seconds, min_repeats=3, max_repeats=1000):
    """Median time of fn() over at least min_repeats calls and min_seconds, after a warm-up."""
    fn()  # first touch of the output, thread pool start
    times, start = [], time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def gemm_gflops(m, k, n, dtype="float32", library="fastnn", min_seconds=0.1):
    """Median GFLOP/s of an (m, k) @ (k, n) product into a preallocated output, by
    fastnn.functional.matmul or (library='numpy') by numpy.matmul."""
    from . import functional as F

    if library not in ("fastnn", "numpy"):
        raise ValueError(f"gemm_gflops: library must be 'fastnn' or 'numpy', got {library!r}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.empty((m, n), dtype=dtype)
    matmul = F.matmul if library == "fastnn" else np.matmul
    return 2.0 * m * k * n / _median_seconds(lambda: matmul(a, b, out=c), min_seconds) * 1e-9


def info(size=1024, with_numpy=True):
    """The report as a dict: 'cpu', 'build' (fastnn.build_info()), 'gemm_backend', 'threads',
    'fma_peak' (GFLOP/s per dtype at 1 thread and at fastnn's thread count) and 'gemm' (float32
    GFLOP/s of each product at fastnn's thread count, as % of the float32 peak at that count, and
    numpy's GFLOP/s unless with_numpy=False). `size` is the square product's size."""
    size = check_int(size, "info", "size", 1, 8192)
    threads = get_num_threads()
    peaks = [{"dtype": dt, "threads": t, "gflops": fma_peak_gflops(dt, t)}
             for dt in ("float32", "float64") for t in sorted({1, threads})]
    peak = next(p["gflops"] for p in peaks if p["dtype"] == "float32" and p["threads"] == threads)
    gemm = []
    for shape in ((size, size, size),) + GEMM_SHAPES:
        gflops = gemm_gflops(*shape)
        gemm.append({"shape": list(shape), "dtype": "float32", "threads": threads, "gflops": gflops,
                     "percent_of_peak": 100.0 * gflops / peak})
    if with_numpy:  # after every fastnn timing: numpy's OpenBLAS workers spin once it has run
        for row in gemm:
            row["numpy_gflops"] = gemm_gflops(*row["shape"], library="numpy", min_seconds=0.05)
    return {"cpu": cpu_info(), "build": build_info(), "gemm_backend": gemm_backend(), "threads": threads,
            "narrow_gemm": narrow_gemm_limits(), "fma_peak": peaks, "gemm": gemm}


def narrow_gemm_limits():
    """{dtype: {'min_n', 'max_n', 'min_k', 'min_m', 'max_packed_bytes', 'packet'}}: the products
    this build's GEMM gives to its narrow kernel (kernels/gemm_narrow.h); {} if it has none."""
    limits = getattr(_C, "_narrow_gemm_limits", None)
    return limits() if limits else {}


def _narrow_row(limits):
    if not limits:
        return "(none in this build)"
    f32, f64 = limits["float32"], limits["float64"]

    def widths(lim, dtype):
        deep = lim.get("deep_n_from", 0) <= lim.get("deep_n_to", -1)
        return (f"{lim['min_n']}-{lim['max_n']} ({dtype}" +
                (f"; {lim['deep_n_from']}-{lim['deep_n_to']} only at K >= {lim['deep_min_k']})" if deep else ")"))

    return (f"N {widths(f32, 'float32')} / {widths(f64, 'float64')}, "
            f"K >= {f32['min_k']}, M >= {f32['min_m']}, packed B <= {f32['max_packed_bytes'] // 1024} KiB, row-major A")


def _cpu_id(cpu):
    """'AuthenticAMD family 26 model 2 stepping 1, ' (what is known of it)."""
    parts = [cpu["vendor"]] + [f"{k} {cpu[f]}" for k, f in (("family", "family"), ("model", "model_number"),
                                                            ("stepping", "stepping")) if cpu[f] is not None]
    text = " ".join(p for p in parts if p)
    return text + ", " if text else ""


def print_info(report, file=None):
    """Prints info()'s dict (below the build configuration that fastnn.show_config() prints)."""
    out = file or sys.stdout
    cpu, build, backend = report["cpu"], report["build"], report["gemm_backend"]
    rows = [
        ("cpu", f"{cpu['model']} ({_cpu_id(cpu)}{cpu['logical_cpus']} logical CPUs)"),
        ("cpu isa", " ".join(cpu["isa_flags"]) or "(none listed)"),
        ("variant", f"{build['module']} ({build['isa']}, {build['vector_bits']}-bit vectors)"),
        ("gemm", f"{backend['name']}, kernel {backend['core']}" + (f" ({backend['config']})" if backend["config"] else "")),
        ("narrow gemm", _narrow_row(report.get("narrow_gemm", {}))),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}", file=out)
    print("\nFMA peak (register-only loop, this variant's widest FMA), GFLOP/s:", file=out)
    for p in report["fma_peak"]:
        print(f"  {p['dtype']}  {p['threads']} thread{'s' if p['threads'] > 1 else ' '}  {p['gflops']:7.1f}", file=out)
    print(f"\nfloat32 GEMM (fastnn.functional.matmul), {report['threads']} threads, median:", file=out)
    for g in report["gemm"]:
        shape = "x".join(str(d) for d in g["shape"])
        line = f"  {shape:>16}  {g['gflops']:7.1f} GFLOP/s  {g['percent_of_peak']:5.1f}% of peak"
        if "numpy_gflops" in g:
            line += f"   numpy {g['numpy_gflops']:7.1f} GFLOP/s ({g['gflops'] / g['numpy_gflops']:.2f}x)"
        print(line, file=out)
