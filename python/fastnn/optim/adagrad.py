"""Adagrad: per-coordinate learning rates from the sum of squared gradients, one fused pass."""

from .._config import _C
from .optimizer import Optimizer, _check_range

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """Adagrad (Duchi, Hazan & Singer 2011; torch.optim.Adagrad).

    Per element of every trainable parameter, step t = 1, 2, ...:

        g = ∇J (−∇J if maximize) + weight_decay·θ + l1·sign(θ)      (decay terms: every parameter of the group)
        clr = lr / (1 + (t − 1)·lr_decay)
        s ← s + g²                                                   (s starts at initial_accumulator_value)
        θ ← θ − clr·g / (√s + eps),  then max-norm (see :class:`SGD`)

    Args:
        params: Parameters of one model, or a list of parameter-group dicts.
        lr: learning rate (default 1e-2).
        lr_decay: learning-rate decay (default 0).
        weight_decay: L2 penalty added to the gradient of every parameter of the group (default 0).
        initial_accumulator_value: starting value of s (default 0).
        eps: added to √s (default 1e-10).
        maximize, l1, max_norm: as in :class:`SGD`.

    State: ``sum`` (flat), ``step`` (per group).
    """

    _flat_state = ("sum",)
    _required_after_step = ("sum",)
    _nonnegative_state = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *,
                 maximize=False, l1=0.0, max_norm=None):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize, l1=l1,
                        max_norm=max_norm)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        _check_range(group["lr_decay"], "lr_decay value")
        _check_range(group["initial_accumulator_value"], "initial_accumulator_value value")
        _check_range(group["eps"], "epsilon value")

    def _init_group(self, index, group):
        # torch fills the accumulator when the optimizer is created, so do we (group by group).
        state_sum = self._flat("sum")
        for p in group["params"]:
            state_sum[p.offset : p.offset + p.size] = group["initial_accumulator_value"]

    def _step_group(self, index, group, segments, step, defer=False):
        return _C.adagrad_step(self.buffer.params, self.buffer.grads, segments, self._flat("sum"), step,
                        group["lr"], group["lr_decay"], group["eps"], group["weight_decay"], group["maximize"],
                        group["l1"], group["max_norm"], defer)  # positional: faster
