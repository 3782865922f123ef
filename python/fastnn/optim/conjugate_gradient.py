"""Nonlinear conjugate gradient (optim/conjugate_gradient.h) with a step(closure) interface."""

import numpy as np

from .._config import _C
from .second_order import SecondOrderOptimizer

__all__ = ["ConjugateGradient"]


class ConjugateGradient(SecondOrderOptimizer):
    """Nonlinear CG (N&W 5.2): Polak-Ribiere+ ("pr+") or Fletcher-Reeves ("fr") directions with a
    strong-Wolfe line search (c2 = 0.1), restarted every `restart` iterations (default: the number
    of parameters) or when successive gradients lose orthogonality. The direction carries over
    from one step to the next.

    Args:
        params: the model's parameters (one group).
        lr: scale of the first trial step of the first iteration (later ones follow N&W 3.60).
        max_iter, max_eval: iterations and evaluations per step.
        tolerance_grad, tolerance_change: stop tests (max |g|; change of the loss or the step).
        formula: "pr+" or "fr".  restart: iterations between restarts (0: n).
        weight_decay: adds weight_decay / 2 |w|^2 over the weights to the loss.
    """

    _hyper = {"lr": ("real", 0.0), "max_iter": ("int", 1), "max_eval": ("int", 1), "tolerance_grad": ("real", 0.0),
              "tolerance_change": ("real", 0.0), "formula": ("choice", None), "restart": ("int", 0),
              "weight_decay": ("real", 0.0)}
    _choices = {"formula": ("pr+", "fr")}
    _method = "cg"

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 formula="pr+", restart=0, weight_decay=0.0):
        if max_eval is None and isinstance(max_iter, int) and not isinstance(max_iter, bool):
            max_eval = max_iter * 5 // 4 + 1  # the first evaluation and, per iteration, the line search
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, formula=formula, restart=restart,
                                      weight_decay=weight_decay))

    def _state_layout(self, n, dtype):
        return {"d_prev": ((n,), None), "g_prev": ((n,), None), "scalars": ((4,), np.float64)}

    def _run(self, objective, x, g, group, state, callback=None):
        options = {k: group[k] for k in ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change",
                                         "formula", "restart")}
        options.update(c2=0.1, callback=callback)
        return _C.descent_minimize("cg", objective, x, g, state, options)
