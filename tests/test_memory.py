"""Memory: fit's peak RSS is the data plus a bounded overhead (no copy of the data set), and
repeated fit/predict calls do not grow the process (no leak). Each measurement runs in a fresh
interpreter, so that nothing else of the test session is counted.

Measured on this machine (2-core AMD EPYC, Python 3.11, glibc malloc), mlp-l (784-512-256-10,
BatchNorm, Dropout 0.5, Adam), batch 128, validation on the test set, after a warm-up fit; fit's
peak RSS over the RSS of the process once it holds the data:
    bundled subset (5000 + 1000 images, data 18.0 MiB): +0.0 MiB
    full Fashion-MNIST (60000 + 10000 images, data 209.9 MiB): +0.1 MiB (loading it leaves the
    process 223.7 MiB larger: the loader's gzip buffers stay in malloc's heap, ~14 MiB)
so fit reads the data where it lies and adds only O(batch) workspaces and the epoch's shuffle
order (8 bytes a sample, 0.5 MiB for 60000). The bound, 8 MiB, is below the size of either data
set, so one copy of X fails the test on the bundled subset too.
200 fit + 200 predict calls after 20 warm-up calls grew RSS by 4 KiB; the bound is 4 MiB, while a
leak of one batch of activations per call (64 x 784 float32 = 200 KB) would add 40 MB.
"""

import json
import subprocess
import sys
import textwrap

import pytest

import fastnn

MIB = 2**20
FIT_OVERHEAD_BOUND = 8 * MIB
LEAK_BOUND = 4 * MIB

MEASURE = """
import gc, json, re, sys
import numpy as np
import fastnn
from fastnn import optim
from fastnn.__main__ import build_model

def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS (Linux >= 4.0)
        f.write("5")
"""


def run_measurement(code, timeout=600):
    p = subprocess.run([sys.executable, "-c", MEASURE + textwrap.dedent(code)], capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


FIT_PEAK = """
source = sys.argv[1] if len(sys.argv) > 1 else None
fastnn.manual_seed(0)
model = build_model("mlp-l")
opt = optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
Xw = rng.random((512, 784), dtype=np.float32); yw = rng.integers(0, 10, 512)
# Warm-up on a few batches: thread pool, layer workspaces, optimizer state, first-touch of the code.
fastnn.fit(model, Xw, yw, optimizer=opt, epochs=1, batch_size=128, validation_data=(Xw, yw), verbose=0)
del Xw, yw
gc.collect()
before = status("VmRSS")
(X, y), (Xt, yt) = fastnn.datasets.fashion_mnist(source)
data = X.nbytes + y.nbytes + Xt.nbytes + yt.nbytes
gc.collect()
loaded = status("VmRSS")  # the data, and what the loader's heap kept (gzip buffers: ~14 MiB for the full set)
reset_peak()
fastnn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=128, validation_data=(Xt, yt), verbose=0)
print(json.dumps({"before": before, "loaded": loaded, "data": data, "peak": status("VmHWM"), "n": len(X)}))
"""


# What the checks must see (so that they can fail): fit copying its data, and a call keeping a
# batch of activations alive.
COPY_THE_DATA = """
_fit = fastnn.fit
fastnn.fit = lambda model, X, y, **kw: _fit(model, np.array(X, copy=True), y, **kw)
"""
KEEP_A_BATCH = """
_kept, _predict = [], fastnn.predict
fastnn.predict = lambda *a, **k: (_kept.append(np.ones(64 * 784, np.float32)), _predict(*a, **k))[1]
"""


def _fit_overhead(source, sabotage=""):
    code = FIT_PEAK.replace("sys.argv[1] if len(sys.argv) > 1 else None", repr(source))
    m = run_measurement(sabotage + code)
    overhead = m["peak"] - m["loaded"]  # what fit adds to a process that holds the data
    print(f"fit peak RSS: {m['n']} images, data {m['data'] / MIB:.1f} MiB, RSS after loading it "
          f"+{(m['loaded'] - m['before']) / MIB:.1f} MiB, fit's peak over that {overhead / MIB:.1f} MiB")
    return overhead, m


def _check_fit_peak(source):
    overhead, m = _fit_overhead(source)
    assert overhead <= FIT_OVERHEAD_BOUND, (
        f"fit's peak RSS is {overhead / MIB:.1f} MiB over the data ({m['data'] / MIB:.1f} MiB); bound "
        f"{FIT_OVERHEAD_BOUND / MIB:.0f} MiB")


def test_fit_peak_rss_is_the_data_plus_a_bounded_overhead_on_the_bundled_subset():
    _check_fit_peak("bundled")


def test_the_fit_peak_check_sees_a_copy_of_the_data():
    overhead, _ = _fit_overhead("bundled", COPY_THE_DATA)
    assert overhead > FIT_OVERHEAD_BOUND


@pytest.mark.slow
def test_fit_peak_rss_is_the_data_plus_a_bounded_overhead_on_the_full_data_set():
    if fastnn.datasets.fashion_mnist_source(None) == fastnn.datasets.fashion_mnist_source("bundled"):
        pytest.skip("the full Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)")
    _check_fit_peak(None)


LEAK = """
fastnn.manual_seed(0)
model = build_model("mlp")
opt = optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(0)
X = rng.random((256, 784), dtype=np.float32); y = rng.integers(0, 10, 256)

def calls(k):
    for i in range(k):
        # two batch sizes, so that workspaces are resized back and forth
        fastnn.fit(model, X, y, optimizer=opt, epochs=1, batch_size=64 if i % 2 else 100, verbose=0)
        fastnn.predict(model, X, batch_size=37 if i % 2 else 256)

calls(20)
gc.collect()
before = status("VmRSS")
calls(200)
gc.collect()
print(json.dumps({"before": before, "after": status("VmRSS")}))
"""


def _growth(sabotage=""):
    m = run_measurement(sabotage + LEAK)
    growth = m["after"] - m["before"]
    print(f"RSS growth over 200 fit + 200 predict calls: {growth / 1024:.0f} KiB")
    return growth


@pytest.mark.slow
def test_rss_stays_flat_over_200_fit_and_predict_calls():
    growth = _growth()
    assert growth < LEAK_BOUND, f"RSS grew by {growth / MIB:.1f} MiB over 200 fit + 200 predict calls"


@pytest.mark.slow
def test_the_leak_check_sees_one_batch_kept_per_call():
    assert _growth(KEEP_A_BATCH) >= LEAK_BOUND
