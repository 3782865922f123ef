"""How many fastnn threads each rank runs: ranks that share a node's cores split them.

`mpirun -np 2` on a 2-core machine binds each rank to its own core, and OpenMP then starts one
thread per rank (its affinity mask). Launched without binding (`mpirun --bind-to none`, `srun`
without `--cpu-bind`), every rank sees all the cores and would start that many threads: 2 ranks x
2 threads on 2 cores ran an mlp-l epoch 2.2x slower than 2 x 1 (bench_distributed.py, load 12).
DataParallel() therefore compares the ranks' masks in one sync: ranks on one node with the same
mask share its CPUs, and each runs at most (CPUs in the mask) // (ranks sharing it) threads.
"""

import hashlib
import os
import socket

from .._config import get_num_threads, set_num_threads


def _exact_id(text):
    """A 48-bit id of `text`, exact in a float64 sync value."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "little")


def _affinity():
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: all the CPUs
        return list(range(os.cpu_count() or 1))


def fair_share(rows, me, threads):
    """The threads rank `me` should run: rows[r] = (node id, mask id, CPUs in the mask) of rank r;
    `threads` what it runs now. Never raises the count, only lowers it to the rank's share."""
    node, mask, cpus = rows[me]
    sharing = sum(1 for r in rows if r[0] == node and r[1] == mask)
    return max(1, min(int(threads), int(cpus) // sharing))


def share_cores(channel, threads):
    """Sets this rank's fastnn threads: `threads` if given, else its fair share (fair_share) of the
    cores it shares with the other ranks of its node. Returns the count."""
    cpus = _affinity()
    row = (_exact_id(socket.gethostname()), _exact_id(",".join(map(str, cpus))), len(cpus))
    rows = [tuple(int(v) for v in r[:3]) for r in channel.sync("DataParallel (sharing the cores)", row)]
    n = int(threads) if threads is not None else fair_share(rows, channel.rank, get_num_threads())
    if n != get_num_threads():
        set_num_threads(n)
    return n
