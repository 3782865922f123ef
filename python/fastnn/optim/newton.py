"""Newton's method with the exact Hessian and Levenberg-Marquardt damping (optim/newton.h)."""

import numpy as np

from .._config import _C
from .second_order import SecondOrderOptimizer, hessian_callback

__all__ = ["Newton"]

_MAX_PARAMETERS = 20000


class Newton(SecondOrderOptimizer):
    """Newton's method: d solves (H + lambda I) d = -g by Cholesky; lambda grows x10 from `damping`
    while H + lambda I is not positive definite, and a gradient step is taken when it never is.
    The full step is tried first (a convex quadratic is solved in one iteration), then a
    strong-Wolfe line search.

    Args:
        params: the model's parameters (one group, small models: H is n x n).
        hess: hess() -> (n, n) Hessian at the current parameters. None: in ``fit(model, X, y,
            optimizer=Newton(...))``, the exact Hessian from n products H e_j of net/curvature.h
            (the R-operator); with ``step(closure)`` or a layer written in Python, central
            differences of two gradients per parameter (2n closure calls per iteration).
        lr: first trial step (1: the Newton step).
        damping: the smallest lambda.
        max_iter, max_eval, tolerance_grad, tolerance_change, weight_decay: as for LBFGS
            (with weight_decay and an explicit hess, hess must include the penalty's wd I).
    """

    _hyper = {"lr": ("real", 0.0), "max_iter": ("int", 1), "max_eval": ("int", 1), "tolerance_grad": ("real", 0.0),
              "tolerance_change": ("real", 0.0), "damping": ("real", 0.0), "weight_decay": ("real", 0.0)}

    def __init__(self, params, hess=None, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, damping=0.0, weight_decay=0.0):
        if max_eval is None and isinstance(max_iter, int) and not isinstance(max_iter, bool):
            max_eval = max_iter * 5 // 4 + 1  # the first evaluation and, per iteration, the line search
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, damping=damping, weight_decay=weight_decay))
        n = self.buffer.params.size
        if n > _MAX_PARAMETERS:
            raise ValueError(f"Newton: the model has {n} parameters; the dense Hessian is too large "
                             f"(at most {_MAX_PARAMETERS}); use HessianFree")
        self.hess = hess
        hessian_callback(hess, n, "Newton")  # checks it is callable

    def _state_layout(self, n, dtype):
        return {"H": ((n * n,), None), "scalars": ((2,), np.float64)}

    def _run(self, objective, x, g, group, state, callback=None):
        options = {k: group[k] for k in ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change",
                                         "damping")}
        options["callback"] = callback
        fill = hessian_callback(self.hess, x.size, "Newton")
        return _C.descent_minimize("newton", objective, x, g, state, options, fill)
