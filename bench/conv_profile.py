"""The cnn's second convolution (128x32x14x14 -> 64, 3x3, pad 1), fastnn vs torch, forward and
forward+backward: CPU time (process time, less disturbed by other processes on a shared machine
than wall time) and wall time per call, best of 5 rounds. Also the target to profile under perf:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python python bench/conv_profile.py --threads 1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=python perf record -g -o /tmp/conv.perf \\
        python bench/conv_profile.py --threads 1 --only "fwd+bwd fastnn" --seconds 4
    perf report -i /tmp/conv.perf --no-children --sort dso,sym   # GEMM (sgemm_*) vs im2col_image_t vs col2im_image_t
"""

import argparse
import os
import time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--only", default=None, help="run only this row, e.g. 'fwd fastnn'")
parser.add_argument("--seconds", type=float, default=0, help="with --only: repeat it this long (for perf)")
args = parser.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from fastnn import functional as F  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

fastnn.set_num_threads(args.threads)
rng = np.random.default_rng(0)
x = rng.standard_normal((128, 32, 14, 14), dtype=np.float32)
w = (rng.standard_normal((64, 32, 3, 3)) / 17).astype(np.float32)
g = rng.standard_normal((128, 64, 14, 14), dtype=np.float32)


def fastnn_fwd():
    F.conv2d_forward(x, w, None, padding=1)


def fastnn_fwd_bwd():
    F.conv2d_forward(x, w, None, padding=1)
    F.conv2d_backward(g, x, w, padding=1, need_bias_grad=False)


rows = {"fwd fastnn": fastnn_fwd, "fwd+bwd fastnn": fastnn_fwd_bwd}
if torch is not None:
    torch.set_num_threads(args.threads)
    tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))
    txr, twr = tx.clone().requires_grad_(), tw.clone().requires_grad_()

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(tx, tw, None, padding=1)

    def torch_fwd_bwd():
        txr.grad = twr.grad = None
        torch.nn.functional.conv2d(txr, twr, None, padding=1).backward(tg)

    rows.update({"fwd torch": torch_fwd, "fwd+bwd torch": torch_fwd_bwd})

print(f"fastnn {fastnn.gemm_backend()['core']}, {args.threads} threads; torch {torch.__version__ if torch else 'absent'}")
for name in sorted(rows):
    if args.only and name != args.only:
        continue
    fn = rows[name]
    for _ in range(3):
        fn()
    if args.seconds:
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            fn()
    cpu, wall = [], []
    for _ in range(5):
        c, t = time.process_time(), time.perf_counter()
        for _ in range(5):
            fn()
        cpu.append((time.process_time() - c) / 5 * 1e3)
        wall.append((time.perf_counter() - t) / 5 * 1e3)
    print(f"{name:16s} cpu {min(cpu):7.2f} ms   wall {min(wall):7.2f} ms")
