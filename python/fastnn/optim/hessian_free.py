"""Hessian-free (truncated Newton) optimization, Martens 2010 (optim/hessian_free.h)."""

import numpy as np

from .._config import _C
from .second_order import SecondOrderOptimizer, curvature_callback

__all__ = ["HessianFree"]


class HessianFree(SecondOrderOptimizer):
    """Truncated Newton: each iteration solves (B + lambda I) p = -g by CG on curvature-vector
    products B v, warm-started from 0.95 times the last solution, keeps the best of the CG
    iterates saved at i = ceil(1.3^j) (Martens' CG backtracking; earlier iterates are evaluated only
    when the last one achieves less than half the reduction its quadratic model predicts), backtracks
    along it (Armijo), and adapts lambda by the reduction ratio (Levenberg-Marquardt: x3/2 below 1/4,
    x2/3 above 3/4). The model's values come from the CG residuals: an iteration costs its CG
    products and, when the model holds, one evaluation.

    Args:
        params: the model's parameters (one group).
        hvp: hvp(v) -> B v at the current parameters (e.g. ``lambda v: fastnn.gnvp(model, loss, X, y, v)``
            for the positive semi-definite Gauss-Newton product, or ``fastnn.hvp``). None: in
            ``fit(model, X, y, optimizer=HessianFree(...))``, the exact products of
            net/curvature.h over the data set (the R-operator: one forward + R-forward pass and one
            backward pass each, no Python per product); with ``step(closure)`` or a layer written in
            Python, central differences of two gradients per product, evaluated in C++.
        curvature: which exact product fit uses when hvp is None: "gauss_newton" (G v = J^T H_loss J v,
            positive semi-definite, Martens' choice) or "hessian" (H v: Newton-CG).
        damping: the initial lambda (adapted in place: ``state["scalars"][0]``).
        max_iter, max_eval: iterations and loss/gradient evaluations per step (products apart).
        max_cg: CG iterations per Newton iteration.
        tolerance_grad, tolerance_change, weight_decay: as for LBFGS (an explicit hvp must include
            the penalty's wd v).
    """

    _hyper = {"max_iter": ("int", 1), "max_eval": ("int", 1), "max_cg": ("int", 1), "tolerance_grad": ("real", 0.0),
              "tolerance_change": ("real", 0.0), "damping": ("real", 0.0), "weight_decay": ("real", 0.0),
              "lr": ("real", 0.0), "curvature": ("choice", None)}
    _choices = {"curvature": ("gauss_newton", "hessian")}

    def __init__(self, params, hvp=None, damping=1.0, max_iter=10, max_eval=None, max_cg=250, tolerance_grad=1e-7,
                 tolerance_change=1e-9, weight_decay=0.0, curvature="gauss_newton"):
        if max_eval is None and isinstance(max_iter, int) and not isinstance(max_iter, bool):
            max_eval = max(1, max_iter * 10)
        super().__init__(params, dict(max_iter=max_iter, max_eval=max_eval, max_cg=max_cg,
                                      tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                                      damping=damping, weight_decay=weight_decay, lr=1.0, curvature=curvature))
        self.hvp = hvp
        curvature_callback(hvp, self.buffer.params.size, None, "HessianFree")  # checks it is callable

    def _state_layout(self, n, dtype):
        return {"p_prev": ((n,), None), "scalars": ((2,), np.float64)}

    def _init_state(self, state):
        state["scalars"][0] = float(self.param_groups[0]["damping"])

    @property
    def damping(self):
        """The current (adapted) lambda."""
        return float(self.state["scalars"][0]) if self.state else float(self.param_groups[0]["damping"])

    def _run(self, objective, x, g, group, state, callback=None):
        options = {k: group[k] for k in ("max_iter", "max_eval", "max_cg", "tolerance_grad", "tolerance_change",
                                         "curvature")}
        options["callback"] = callback
        product = curvature_callback(self.hvp, x.size, x.dtype, "HessianFree")
        return _C.hessian_free_minimize(objective, x, g, state["p_prev"], state["scalars"], product, options)
