"""layer_statistics: what each layer's outputs and gradients look like on one batch, the
vanishing-gradient diagnostic of seed 002 (Glorot & Bengio 2010: with sigmoid units and N(0, 1)
weights the top layers saturate and the gradients shrink toward the input). NumPy only;
``fastnn.plot.activation_histograms`` and ``fastnn.plot.gradient_norms`` draw the result.
"""

import copy
import types

import numpy as np

from .. import _validate as _v
from ..nn import activation as _activation
from ..nn.container import Sequential
from ..nn.module import Module, _imposed
from ..random import seeded
from .claim import exclusive_training
from .checks import as_loss, check_X, check_y

__all__ = ["layer_statistics"]

# The nonlinearities: their outputs are the "activations" of Glorot & Bengio's histograms.
_NONLINEAR = (_activation.Sigmoid, _activation.Tanh, _activation.ReLU, _activation.LeakyReLU, _activation.ELU,
              _activation.SELU, _activation.PReLU, _activation.RReLU, _activation.Maxout)


def _units(module, prefix=""):
    """(name, module) of the layers that run, in order: nested Sequentials are opened, any other
    module (a Linear, a Residual, a Python-written module) is one unit."""
    if not isinstance(module, Sequential):
        return [(prefix or type(module).__name__, module)]
    out = []
    for name, child in module.named_children():
        out += _units(child, f"{prefix}.{name}" if prefix else name)
    return out


def _separate(units):
    """A parameter-free module used in several places (one ReLU object) keeps its input for backward
    in one place only: its later uses run on copies."""
    seen, out = set(), []
    for name, m in units:
        out.append((name, copy.deepcopy(m) if id(m) in seen else m))
        seen.add(id(m))
    return out


def _checked_output(name, m, out, x, dtype):
    """What a layer gives the next one: a non-empty array of the model's dtype, the batch first (the
    contract fit's C++ loop checks of a layer written in Python, checked here for every layer)."""
    where = f"layer_statistics: layer {name!r} ({type(m).__name__})"
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{where}: forward returned {type(out).__name__}, not a numpy.ndarray")
    if out.dtype != dtype:
        raise TypeError(f"{where}: forward returned {out.dtype}, the model is {dtype}")
    if out.ndim < 1 or out.shape[0] != x.shape[0] or out.size == 0:
        raise ValueError(f"{where}: forward returned shape {out.shape} for an input of shape {x.shape}; the output "
                         f"must be non-empty with the batch ({x.shape[0]}) first")
    return out


def _checked_grad(name, m, grad, x):
    """What backward gives the layer before: the gradient of exactly the layer's input."""
    where = f"layer_statistics: layer {name!r} ({type(m).__name__})"
    if not isinstance(grad, np.ndarray) or grad.dtype != x.dtype or grad.shape != x.shape:
        got = f"{grad.dtype} {grad.shape}" if isinstance(grad, np.ndarray) else type(grad).__name__
        raise ValueError(f"{where}: backward returned {got}; it must be the gradient of its input, {x.dtype} {x.shape}")
    return grad


def _states(model):
    """Copies of every running statistic (a training-mode BatchNorm forward updates them)."""
    return [(get, np.array(get())) for m in model.modules() for get in m._states.values()]


@exclusive_training("layer_statistics")
def layer_statistics(model, X, y, loss="cross_entropy", *, training=True, bins=50, samples=2000, seed=0):
    """Runs the layers of `model` one at a time on the batch (X, y): forward in order, the loss,
    then its gradient backward in reverse order, and describes each layer's output and gradients.

    The mean loss of the batch is differentiated, as one training step does (``training=True``:
    dropout draws masks from `seed`, BatchNorm uses the batch statistics; ``training=False``: eval
    mode). The model is left as it was: parameters, gradients, running statistics, modes and the
    global random stream.

    Args:
        model: a fastnn Module; Sequentials (nested ones too) are described layer by layer.
        X: (N, ...) a batch of samples; y: its targets (as for ``fit``).
        loss: a loss name or object, as for ``fit``.
        bins: histogram bins over each output's range; samples: how many output values to keep
            per layer (drawn uniformly, seeded; all when fewer).
    Returns:
        A list with one dict per layer, in run order:
          ``name`` (its ``state_dict`` prefix, e.g. ``"3"``), ``type`` (class name), ``activation``
          (True for a nonlinearity: Sigmoid, Tanh, the ReLU family, ELU, SELU, Maxout), ``output_shape``;
          ``mean``, ``std``, ``min``, ``max`` of its outputs, ``histogram`` = (counts, edges) as
          ``np.histogram(output, bins)``, ``samples`` (output values);
          ``grad_output_norm`` = ‖∂L/∂output‖ (Frobenius, over the batch), ``grad_output_rms``, and
          ``grad_log10_histogram`` = (counts, edges) of log10 |∂L/∂output| over its non-zero entries;
          ``grad_norms`` = {parameter name: ‖∂L/∂p‖} of its own parameters (empty without any) and
          ``weight_grad_norm`` (that of ``weight``, else None).
    """
    fn = "layer_statistics"
    if not isinstance(model, Module):
        raise TypeError(f"{fn}: model must be a fastnn.nn.Module, got {type(model).__name__}")
    training = _v.check_bool(training, fn, "training")
    bins = _v.check_int(bins, fn, "bins", 1)
    samples = _v.check_int(samples, fn, "samples", 0)
    seed = _v.check_seed(seed, fn)
    loss_obj, kernel = as_loss(loss, fn)
    # the data in the model's dtype, as fit converts it (a Python-written model: its parameters' dtype)
    typed = types.SimpleNamespace(dtype=next((p.dtype for p in model.parameters()),
                                             getattr(model, "dtype", np.dtype(np.float32))))
    X = check_X(X, typed)
    units = _separate(_units(model))
    params = list(model.parameters())
    saved_grads = [np.array(p.grad) for p in params]
    saved_states = _states(model)
    before = getattr(_imposed, "mode", None)
    _imposed.mode = training  # every layer in this mode, in this thread only; the modules' own modes stay
    try:
        for p in params:
            p.grad[...] = 0
        with seeded(seed):
            inputs, outputs, h = [], [], X
            for name, m in units:
                inputs.append(h)
                h = _checked_output(name, m, m.forward(h), h, X.dtype)
                outputs.append(np.array(h))  # layers reuse their output buffers
            width = int(np.prod(h.shape[1:]))
            target = check_y(y, kernel, len(X), width, typed)
            loss_obj.forward(h, target)
            grads = [None] * len(units)
            g = loss_obj.backward()
            for i in range(len(units) - 1, -1, -1):
                grads[i] = np.array(g)
                name, m = units[i]
                g = _checked_grad(name, m, m.backward(g), inputs[i])
        records = [_describe(name, m, out, grad, bins, samples, np.random.default_rng([seed, i]))
                   for i, ((name, m), out, grad) in enumerate(zip(units, outputs, grads))]
    finally:
        _imposed.mode = before
        for p, g in zip(params, saved_grads):
            p.grad[...] = g
        for get, value in saved_states:
            get()[...] = value
    return records


def _histogram(values, bins):
    """np.histogram(values, bins), or zero counts over [0, 1] when there are no values."""
    if values.size:
        return np.histogram(values, bins=bins)
    return np.zeros(bins, np.int64), np.linspace(0.0, 1.0, bins + 1)


def _describe(name, module, out, grad, bins, samples, rng):
    values = out.reshape(-1).astype(np.float64)
    g = grad.reshape(-1).astype(np.float64)
    finite = values[np.isfinite(values)]
    counts, edges = _histogram(finite, bins)
    magnitudes = np.abs(g[np.isfinite(g) & (g != 0)])
    log_counts, log_edges = _histogram(np.log10(magnitudes), bins)
    keep = values if values.size <= samples else values[rng.choice(values.size, samples, replace=False)]
    grad_norms = {pname: float(np.linalg.norm(np.asarray(p.grad, np.float64)))
                  for pname, p in module.named_parameters()}
    return {"name": name, "type": type(module).__name__, "activation": isinstance(module, _NONLINEAR),
            "output_shape": tuple(out.shape),
            "mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max()), "histogram": (counts, edges), "samples": keep,
            "grad_output_norm": float(np.linalg.norm(g)), "grad_output_rms": float(np.sqrt(np.mean(g * g))),
            "grad_log10_histogram": (log_counts, log_edges),
            "grad_norms": grad_norms, "weight_grad_norm": grad_norms.get("weight")}
