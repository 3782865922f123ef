"""Times the prototype of run.sh: conv (3x3, pad 1) -> folded BN -> ReLU -> 2x2/2 max pool, the pool
as a second pass over the full output vs inside the conv's pass (per image, from L2). Process
(CPU) time and wall time per call, min and median of 8 alternated rounds of 5 calls."""
import sys, time, numpy as np, fastnn
from fastnn._config import _C
th = int(sys.argv[1]); fastnn.set_num_threads(th)
rng = np.random.default_rng(0)
for name, shape, O in (("block1 128x1x28x28->32", (128, 1, 28, 28), 32), ("block2 128x32x14x14->64", (128, 32, 14, 14), 64)):
    x = rng.standard_normal(shape, dtype=np.float32)
    w = (rng.standard_normal((O, shape[1], 3, 3)) / np.sqrt(9 * shape[1])).astype(np.float32)
    sc = rng.uniform(0.5, 1.5, O).astype(np.float32); sh = rng.standard_normal(O).astype(np.float32)
    res = {True: [], False: []}
    for r in range(8):
        for fuse in (False, True):
            c, t = time.process_time(), time.perf_counter()
            _C._proto_conv_pool2(x, w, sc, sh, 1, fuse, 5)
            res[fuse].append(((time.process_time() - c) / 5 * 1e3, (time.perf_counter() - t) / 5 * 1e3))
    for fuse in (False, True):
        cpu = sorted(a for a, _ in res[fuse]); wall = sorted(b for _, b in res[fuse])
        what = "pool in the pass " if fuse else "pool as 2nd pass"
        print(f"{name} {what} {th}t: cpu min {cpu[0]:.2f} med {cpu[4]:.2f} ms, "
              f"wall min {wall[0]:.2f} med {wall[4]:.2f} ms")
