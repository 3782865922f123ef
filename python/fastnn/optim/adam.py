"""Adam, AMSGrad and AdamW (decoupled weight decay): one fused pass over the flat buffers."""

from .._config import _C
from .optimizer import Optimizer, _check_range

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), optionally AMSGrad (Reddi et al. 2018); torch.optim.Adam.

    Per element of every trainable parameter, step t = 1, 2, ...:

        decoupled_weight_decay: θ ← θ·(1 − lr·weight_decay)            (AdamW)
        g = ∇J (−∇J if maximize) [+ weight_decay·θ if not decoupled] + l1·sign(θ) 
        m ← β1·m + (1 − β1)·g;   v ← β2·v + (1 − β2)·g²;   amsgrad: v̂ ← max(v̂, v) used for v
        θ ← θ − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps),  then max-norm (see :class:`SGD`)

    Args:
        params: Parameters of one model, or a list of parameter-group dicts.
        lr: learning rate (default 1e-3).
        betas: (β1, β2), decay rates of the moment estimates (default (0.9, 0.999)).
        eps: added to the denominator (default 1e-8).
        weight_decay: L2 penalty on every parameter of the group (default 0), added to the gradient unless
            decoupled_weight_decay.
        amsgrad: use the running maximum of v (AMSGrad).
        maximize, l1, max_norm: as in :class:`SGD`.
        decoupled_weight_decay: AdamW's decay (see :class:`AdamW`).

    State: ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad), all flat; ``step`` (per group).
    """

    _flat_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _required_after_step = ("exp_avg", "exp_avg_sq")
    _nonnegative_state = ("exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, l1=0.0, max_norm=None, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, l1=l1, max_norm=max_norm, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        _check_range(group["eps"], "epsilon value")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"Invalid betas: {betas!r} (expected a pair (beta1, beta2))")
        for i, beta in enumerate(betas):
            _check_range(beta, f"beta parameter at index {i}", high=1.0)

    def _step_group(self, index, group, segments, step, defer=False):
        beta1, beta2 = group["betas"]
        # positional: pybind11 takes ~1 us longer per call to match keyword arguments
        return _C.adam_step(self.buffer.params, self.buffer.grads, segments, self._flat("exp_avg"), self._flat("exp_avg_sq"),
                            self._flat("max_exp_avg_sq") if group["amsgrad"] else None, step, group["lr"], beta1, beta2,
                            group["eps"], group["weight_decay"], group["amsgrad"], group["decoupled_weight_decay"],
                            group["maximize"], group["l1"], group["max_norm"], defer)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019; torch.optim.AdamW).

    Each step first shrinks the parameters, θ ← θ·(1 − lr·weight_decay), then takes the
    Adam step without the L2 term in the gradient (see :class:`Adam`). Default weight_decay 1e-2.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, l1=0.0, max_norm=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, l1=l1,
                         max_norm=max_norm, decoupled_weight_decay=True)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # as torch: AdamW is always decoupled
            group["decoupled_weight_decay"] = True
