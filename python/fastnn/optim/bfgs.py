"""BFGS with a dense inverse-Hessian approximation (optim/bfgs.h), for small models."""

import numpy as np

from .._config import _C
from .second_order import SecondOrderOptimizer

__all__ = ["BFGS"]

_MAX_PARAMETERS = 20000  # M is n x n: 3.2 GB in float64 at this size


class BFGS(SecondOrderOptimizer):
    """BFGS (N&W Alg. 6.1) keeping the dense inverse-Hessian approximation M (n x n) between
    steps, with a strong-Wolfe line search; pairs with y.s <= 1e-10 are skipped.

    Args:
        params: the model's parameters (one group, at most 20000 values: M has n^2).
        lr: first trial step of each line search (the very first is min(1, 1/|g|_1) * lr).
        max_iter, max_eval, tolerance_grad, tolerance_change, weight_decay: as for LBFGS.
    """

    _hyper = {"lr": ("real", 0.0), "max_iter": ("int", 1), "max_eval": ("int", 1), "tolerance_grad": ("real", 0.0),
              "tolerance_change": ("real", 0.0), "weight_decay": ("real", 0.0)}
    _method = "bfgs"

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 weight_decay=0.0):
        if max_eval is None and isinstance(max_iter, int) and not isinstance(max_iter, bool):
            max_eval = max_iter * 5 // 4 + 1  # the first evaluation and, per iteration, the line search
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, weight_decay=weight_decay))
        n = self.buffer.params.size
        if n > _MAX_PARAMETERS:
            raise ValueError(f"BFGS: the model has {n} parameters; the dense {n}x{n} inverse Hessian is too large "
                             f"(at most {_MAX_PARAMETERS}); use LBFGS")

    def _state_layout(self, n, dtype):
        return {"M": ((n * n,), None), "scalars": ((1,), np.float64)}

    def _run(self, objective, x, g, group, state, callback=None):
        options = {k: group[k] for k in ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change")}
        options["callback"] = callback
        return _C.descent_minimize("bfgs", objective, x, g, state, options)
