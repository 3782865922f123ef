"""L-BFGS with torch.optim.LBFGS's interface and iterates; the loop and its state live in C++
(optim/lbfgs.h: a ring buffer of (s, y) pairs and the two-loop recursion on the flat buffers)."""

import numpy as np

from .._config import _C
from .second_order import SecondOrderOptimizer

__all__ = ["LBFGS"]


class LBFGS(SecondOrderOptimizer):
    """L-BFGS (Nocedal & Wright Alg. 7.5), torch.optim.LBFGS's arguments and step(closure).

    ``step(closure)`` runs up to ``max_iter`` iterations and returns the closure's first value
    (the loss before the step). The closure re-evaluates the model: zero the gradients, compute
    the loss, backward, return the loss (``fastnn.fit`` needs none: it evaluates in C++).

    Args:
        params: the model's parameters (one group).
        lr: the step length of every iteration after the first (the first is min(1, 1/|g|_1) * lr),
            or the line search's first trial step.
        max_iter: iterations per step.
        max_eval: loss/gradient evaluations per step, the line search's included (torch counts
            those only approximately, pytorch#91581); default max_iter * 5 // 4.
        tolerance_grad: stop when max |g| <= tolerance_grad.
        tolerance_change: stop when the loss or the step changes less than this.
        history_size: pairs kept (>= 1).
        line_search_fn: None (fixed steps of lr, as torch) or "strong_wolfe".
        weight_decay: adds weight_decay / 2 |w|^2 over the weights (not biases/BatchNorm) to the
            loss (a fastnn extension; torch's LBFGS has none).

    Attributes:
        last_result: StepResult of the last step (status, message, iterations, evaluations, loss).
    """

    _hyper = {"lr": ("real", 0.0), "max_iter": ("int", 1), "max_eval": ("int", 1), "tolerance_grad": ("real", 0.0),
              "tolerance_change": ("real", 0.0), "history_size": ("int", 1), "line_search_fn": ("choice", None),
              "weight_decay": ("real", 0.0)}
    _choices = {"line_search_fn": (None, "strong_wolfe")}

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7, tolerance_change=1e-9,
                 history_size=100, line_search_fn=None, weight_decay=0.0):
        if max_eval is None and isinstance(max_iter, int) and not isinstance(max_iter, bool):
            max_eval = max_iter * 5 // 4 if max_iter >= 1 else max_iter
        super().__init__(params, dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                                      tolerance_change=tolerance_change, history_size=history_size,
                                      line_search_fn=line_search_fn, weight_decay=weight_decay))

    def _state_layout(self, n, dtype):
        m = int(self.param_groups[0]["history_size"])
        return {"s": ((m, n), None), "y": ((m, n), None), "rho": ((m,), np.float64), "ring": ((2,), np.int64),
                "d": ((n,), None), "prev_flat_grad": ((n,), None), "scalars": ((3,), np.float64),
                "counters": ((2,), np.int64)}

    def _ensure_state(self):
        state = super()._ensure_state()
        if state["s"].shape[0] != int(self.param_groups[0]["history_size"]):  # history_size changed: start over
            self._layout_for = None
            state = super()._ensure_state()
        return state

    @property
    def n_iter(self):
        """Iterations made over all steps (torch's state["n_iter"])."""
        return int(self.state["counters"][0]) if self.state else 0

    @property
    def func_evals(self):
        """Evaluations made over all steps (torch's state["func_evals"])."""
        return int(self.state["counters"][1]) if self.state else 0

    def _run(self, objective, x, g, group, state, callback=None):
        options = {k: group[k] for k in ("lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change")}
        options["strong_wolfe"] = group["line_search_fn"] == "strong_wolfe"
        options["callback"] = callback
        return _C.lbfgs_step(objective, x, g, state["s"], state["y"], state["rho"], state["ring"], state["d"],
                             state["prev_flat_grad"], state["scalars"], state["counters"], options)
