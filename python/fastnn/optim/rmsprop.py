"""RMSprop (optionally centered, with momentum): one fused pass over the flat buffers."""

from .._config import _C
from .optimizer import Optimizer, _check_range

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    """RMSprop (Hinton, lecture 6e; centered: Graves 2013; torch.optim.RMSprop).

    Per element of every trainable parameter:

        g = ∇J (−∇J if maximize) + weight_decay·θ + l1·sign(θ)      (decay terms: every parameter of the group)
        v ← α·v + (1 − α)·g²
        centered: a ← a + (1 − α)·(g − a),  d = √(v − a²) + eps;   else d = √v + eps
        momentum > 0: b ← μ·b + g/d,  θ ← θ − lr·b;   else θ ← θ − lr·g/d
        then max-norm (see :class:`SGD`)

    Args:
        params: Parameters of one model, or a list of parameter-group dicts.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant α (default 0.99).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty added to the gradient of every parameter of the group (default 0).
        momentum: momentum factor μ (default 0).
        centered: normalize by the estimated variance of the gradient instead of its second moment.
        maximize, l1, max_norm: as in :class:`SGD`.

    State: ``square_avg``, ``grad_avg`` (centered), ``momentum_buffer`` (momentum > 0), all flat;
    ``step`` (per group).
    """

    _flat_state = ("square_avg", "grad_avg", "momentum_buffer")
    _required_after_step = ("square_avg",)
    _nonnegative_state = ("square_avg",)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False, *,
                 maximize=False, l1=0.0, max_norm=None):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        centered=centered, maximize=maximize, l1=l1, max_norm=max_norm)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        _check_range(group["eps"], "epsilon value")
        _check_range(group["momentum"], "momentum value")
        _check_range(group["alpha"], "alpha value")

    def _step_group(self, index, group, segments, step, defer=False):
        return _C.rmsprop_step(self.buffer.params, self.buffer.grads, segments, self._flat("square_avg"),
                        self._flat("grad_avg") if group["centered"] else None,
                        self._flat("momentum_buffer") if group["momentum"] > 0 else None,
                        group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"],
                        group["centered"], group["maximize"], group["l1"], group["max_norm"], defer)  # positional: faster
