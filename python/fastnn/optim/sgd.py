"""Stochastic gradient descent with (Nesterov) momentum: one fused pass over the flat buffers."""

from .._config import _C
from .optimizer import Optimizer, _check_range

__all__ = ["SGD"]


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum or Nesterov momentum (torch.optim.SGD).

    Per element of every trainable parameter, step t:

        g = ∇J (−∇J if maximize) + weight_decay·θ + l1·sign(θ)      (decay terms: every parameter of the group)
        b = g at the first momentum step, else momentum·b + (1 − dampening)·g
        d = g + momentum·b (nesterov) or b (momentum > 0) or g
        θ ← θ − lr·d,  then rows of the matrices rescaled to norm ≤ max_norm

    With ``l1`` and plain SGD this is the seeds' Θ ← Θ − ρ∇J − ρλ·sign(Θ).

    Args:
        params: Parameters of one model, or a list of parameter-group dicts.
        lr: learning rate (default 1e-3, as torch).
        momentum: momentum factor μ (default 0).
        dampening: dampening τ of the momentum (default 0).
        weight_decay: L2 penalty added to the gradient of every parameter of the group (default 0).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening = 0).
        maximize: maximize the objective instead of minimizing it.
        l1: L1 penalty λ, adds λ·sign(θ) to the gradient of the group's parameters (default 0).
        max_norm: if set, after each step every row (a unit's incoming weights, ``prod(shape[1:])``
            values) of every parameter of the group with ndim >= 2 is rescaled to L2 norm <= max_norm
            (``torch.renorm(w, 2, 0, max_norm)``; Keras ``MaxNorm``).

    State: ``momentum_buffer`` (flat, when momentum > 0), ``step`` and
    ``momentum_buffer_initialized`` (per group).
    """

    _flat_state = ("momentum_buffer",)
    _group_state = ("step", "momentum_buffer_initialized")

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, l1=0.0, max_norm=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, l1=l1, max_norm=max_norm)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        _check_range(group["momentum"], "momentum value")
        _check_range(group["dampening"], "dampening value", low=-float("inf"))
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _check_loaded_state(self, state):
        super()._check_loaded_state(state)
        if ((state["momentum_buffer_initialized"] != 0) & (state["momentum_buffer_initialized"] != 1)).any():
            raise ValueError("SGD.load_state_dict: state['momentum_buffer_initialized'] must hold 0 or 1 per group, "
                             f"got {state['momentum_buffer_initialized']}")
        if state["momentum_buffer_initialized"].any() and "momentum_buffer" not in state:
            raise ValueError("SGD.load_state_dict: momentum_buffer_initialized is set but momentum_buffer is missing")

    def _step_group(self, index, group, segments, step, defer=False):
        buffer, first = None, False
        if group["momentum"] != 0:
            buffer = self._flat("momentum_buffer")
            initialized = self.state["momentum_buffer_initialized"]
            first = not initialized[index]
            if not defer:  # a deferred step marks it when it has run (_advance)
                initialized[index] = 1
        # positional: pybind11 takes ~1 us longer per call to match keyword arguments
        return _C.sgd_step(self.buffer.params, self.buffer.grads, segments, buffer, first, group["lr"],
                           group["momentum"], group["dampening"], group["nesterov"], group["weight_decay"],
                           group["maximize"], group["l1"], group["max_norm"], defer)

    def _after_steps(self, index):
        if self.param_groups[index]["momentum"] != 0:
            self.state["momentum_buffer_initialized"][index] = 1
