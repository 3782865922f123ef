"""NumPy references of the first-order optimizer steps, gradient clipping and max-norm.

Executable specification of cpp/include/fastnn/optim/*.h. Written per parameter, like
PyTorch's ``_single_tensor_<name>`` functions (torch/optim/*.py), which they follow operation by
operation: each step function takes lists of parameter arrays (updated in place), their
gradients and one state dict per parameter (torch's ``optimizer.state[p]``), plus
``decay``: one bool per parameter saying whether weight decay, L1 and max-norm apply to it.
Frozen parameters are simply not passed (PyTorch skips parameters without a gradient).
Arithmetic stays in the arrays' dtype (Python floats are weak scalars in NumPy 2).
"""

import math

import numpy as np

__all__ = [
    "regularized_gradient",
    "renorm_rows",
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "clip_grad_norm_",
    "clip_grad_value_",
]


def regularized_gradient(param, grad, decays, *, lr=0.0, weight_decay=0.0, l1=0.0, maximize=False,
                         decoupled_weight_decay=False):
    """The gradient the optimizer's rule sees: g = ±grad + weight_decay·θ + l1·sign(θ).

    The decay terms apply only when `decays`. With decoupled weight decay (AdamW) θ is shrunk in
    place instead, θ ← θ·(1 − lr·weight_decay), and nothing is added to g.
    """
    g = -grad if maximize else grad
    if decays and weight_decay != 0:
        if decoupled_weight_decay:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param
    if decays and l1 != 0:
        g = g + l1 * np.sign(param)
    return g


def renorm_rows(param, max_norm):
    """Max-norm: each row w of param (shape[1:] flattened) with ‖w‖₂ > c becomes w·c/(‖w‖₂ + 1e-7).

    As ``torch.renorm(param, 2, 0, max_norm)``; parameters with ndim < 2 are left alone. In place.
    """
    if param.ndim < 2:
        return
    rows = param.reshape(param.shape[0], -1)
    norms = np.sqrt((rows * rows).sum(axis=1))
    for i, norm in enumerate(norms):
        if norm > max_norm:
            rows[i] *= max_norm / (norm + param.dtype.type(1e-7))


def _finish(param, decays, max_norm):
    if max_norm is not None and decays:
        renorm_rows(param, max_norm)


def sgd(params, grads, states, decay, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        maximize=False, l1=0.0, max_norm=None):
    """One SGD step (torch.optim.SGD): b ← g first, then μb + (1−τ)g;  θ ← θ − lr·(g + μb | b | g)."""
    for param, grad, state, decays in zip(params, grads, states, decay):
        g = regularized_gradient(param, grad, decays, weight_decay=weight_decay, l1=l1, maximize=maximize)
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = g.copy()
                state["momentum_buffer"] = buf
            else:
                buf *= momentum
                buf += (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        param += -lr * g
        _finish(param, decays, max_norm)


def adagrad(params, grads, states, decay, *, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
            eps=1e-10, maximize=False, l1=0.0, max_norm=None):
    """One Adagrad step (torch.optim.Adagrad): s ← s + g²;  θ ← θ − lr/(1 + (t−1)·lr_decay) · g/(√s + eps)."""
    for param, grad, state, decays in zip(params, grads, states, decay):
        if "sum" not in state:
            state["sum"] = np.full_like(param, initial_accumulator_value)
            state["step"] = 0
        state["step"] += 1
        g = regularized_gradient(param, grad, decays, weight_decay=weight_decay, l1=l1, maximize=maximize)
        clr = lr / (1 + (state["step"] - 1) * lr_decay)
        state["sum"] += g * g
        std = np.sqrt(state["sum"]) + eps
        param += -clr * (g / std)
        _finish(param, decays, max_norm)


def _lerp(start, end, weight):
    """torch.lerp: start + w·(end − start), computed from the nearer end (aten/src/ATen/native/Lerp.h)."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


def rmsprop(params, grads, states, decay, *, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
            centered=False, maximize=False, l1=0.0, max_norm=None):
    """One RMSprop step (torch.optim.RMSprop): v ← αv + (1−α)g²;  θ ← θ − lr·g/(√(v − a²) + eps) (a: centered)."""
    for param, grad, state, decays in zip(params, grads, states, decay):
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(param)
            state["grad_avg"] = np.zeros_like(param)
            state["momentum_buffer"] = np.zeros_like(param)
        g = regularized_gradient(param, grad, decays, weight_decay=weight_decay, l1=l1, maximize=maximize)
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * g * g
        if centered:
            state["grad_avg"][...] = _lerp(state["grad_avg"], g, 1 - alpha)
            avg = np.sqrt(square_avg - state["grad_avg"] * state["grad_avg"]) + eps
        else:
            avg = np.sqrt(square_avg) + eps
        if momentum > 0:
            buf = state["momentum_buffer"]
            buf *= momentum
            buf += g / avg
            param += -lr * buf
        else:
            param += -lr * (g / avg)
        _finish(param, decays, max_norm)


def adam(params, grads, states, decay, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
         maximize=False, l1=0.0, max_norm=None, decoupled_weight_decay=False):
    """One Adam / AdamW step (torch.optim.Adam):

    m ← lerp(m, g, 1−β1);  v ← β2v + (1−β2)g²;  (amsgrad: v̂ ← max(v̂, v))
    θ ← θ − lr/(1−β1ᵗ) · m/(√v/√(1−β2ᵗ) + eps)
    """
    beta1, beta2 = betas
    for param, grad, state, decays in zip(params, grads, states, decay):
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        g = regularized_gradient(param, grad, decays, lr=lr, weight_decay=weight_decay, l1=l1, maximize=maximize,
                                 decoupled_weight_decay=decoupled_weight_decay)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg[...] = _lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * g * g
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        step_size = lr / bias_correction1
        if amsgrad:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            denom = np.sqrt(state["max_exp_avg_sq"]) / bias_correction2_sqrt + eps
        else:
            denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
        param += -step_size * (exp_avg / denom)
        _finish(param, decays, max_norm)


def clip_grad_norm_(grads, max_norm, norm_type=2.0):
    """total = ‖(‖g₁‖_p, ‖g₂‖_p, …)‖_p;  g ← g·min(1, max_norm/(total + 1e-6)) in place. Returns total."""
    norm_type = float(norm_type)
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        total = max(float(np.abs(g).max()) if g.size else 0.0 for g in grads)
    else:
        total = sum(float((np.abs(g.astype(np.float64)) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= coef
    return total


def clip_grad_value_(grads, clip_value):
    """g ← clamp(g, −clip_value, clip_value) in place."""
    for g in grads:
        np.clip(g, -clip_value, clip_value, out=g)
