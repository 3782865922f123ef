"""lbfgs: wrapper of the C++ two-loop recursion (reference/lbfgs.py is the specification)."""

import numpy as np

from .._config import _C


def lbfgs_two_loop(s, y, rho, ring, gamma, q):
    """H q for the L-BFGS inverse-Hessian approximation of a ring-buffered history (N&W Alg. 7.4).

    H_0 = gamma I, updated by each pair from the oldest to the newest:
    H+ = (I - rho s y^T) H (I - rho y s^T) + rho s s^T.

    Args:
        s, y: (m, n) float32 or float64 ring buffers of steps and gradient changes (q's dtype).
        rho: (m,) float64, 1 / (y_i . s_i).
        ring: (2,) int64 [slot of the oldest pair, number of pairs].
        gamma: scale of the initial approximation (y.s / y.y of the newest pair, usually).
        q: (n,) vector.
    Returns:
        (n,) array H q.
    """
    return _C.lbfgs_two_loop(s, y, np.asarray(rho, dtype=np.float64), np.asarray(ring, dtype=np.int64),
                             float(gamma), q)
