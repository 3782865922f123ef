"""Reference for optim/lbfgs.h: the L-BFGS inverse-Hessian approximation, materialized.

H_0 = gamma I and, for each stored pair (s_k, y_k) from the oldest to the newest (rho_k = 1 / y_k.s_k),
H_{k+1} = (I - rho_k s_k y_k^T) H_k (I - rho_k y_k s_k^T) + rho_k s_k s_k^T  (Nocedal & Wright 7.19).
The two-loop recursion computes H q without forming H; this builds H densely to test it.
"""

import numpy as np

__all__ = ["lbfgs_inverse_hessian", "lbfgs_two_loop"]


def _pairs(s, y, rho, ring):
    """The stored pairs, oldest first: ring = [slot of the oldest, number of pairs]."""
    m = s.shape[0]
    start, count = int(ring[0]), int(ring[1])
    return [((start + k) % m) for k in range(count)]


def lbfgs_inverse_hessian(s, y, rho, ring, gamma):
    """(n, n) inverse-Hessian approximation of the history (float64)."""
    n = s.shape[1]
    h = gamma * np.eye(n)
    eye = np.eye(n)
    for i in _pairs(s, y, rho, ring):
        si, yi = s[i].astype(np.float64), y[i].astype(np.float64)
        v = eye - rho[i] * np.outer(yi, si)
        h = v.T @ h @ v + rho[i] * np.outer(si, si)
    return h


def lbfgs_two_loop(s, y, rho, ring, gamma, q):
    """H q with H = lbfgs_inverse_hessian(...), in q's dtype."""
    return (lbfgs_inverse_hessian(s, y, rho, ring, gamma) @ q.astype(np.float64)).astype(q.dtype)
