"""Shared fixtures of the optimizer tests: a small model in one flat buffer, the option sets
worth testing, and drivers that run fastnn, the NumPy reference and torch.optim side by side."""

import numpy as np

from fastnn import optim
from fastnn.nn.parameter import pack
from fastnn.reference import optim as R

# A model covering: sizes 1, 7, 31/32/33, 129; a tensor over one block (1024) and one work item
# (16384); rows longer than a block; a no-decay bias; a frozen parameter; a 4-D conv weight.
SHAPES = [(7, 5), (7,), (3, 2, 2, 2), (33,), (129, 33), (31,), (32, 1), (1,), (2, 1500), (17000,)]
NAMES = ["fc1.weight", "fc1.bias", "conv.weight", "frozen", "fc2.weight", "fc2.bias", "col", "scalar", "wide", "big"]
DECAY = [True, False, True, True, True, False, True, False, True, True]
FROZEN = {3}


def make_model(dtype, seed=0, shapes=SHAPES, decay=DECAY, frozen=FROZEN, scale=1.0):
    """(buffer, params) with random values; parameters in `frozen` have requires_grad=False."""
    buf, params = pack(shapes, dtype, names=NAMES[: len(shapes)] if len(shapes) <= len(NAMES) else None, decay=decay)
    buf.params[:] = np.random.default_rng(seed).normal(scale=scale, size=buf.params.size)
    for i in frozen:
        params[i].requires_grad = False
    return buf, params


def random_grads(rng, buf):
    buf.grads[:] = rng.normal(size=buf.grads.size)


# (fastnn class, reference function, torch class name, options) for every combination that matters.
SGD_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.5, weight_decay=0.1),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True),
    dict(lr=0.1, maximize=True),
]
ADAGRAD_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5),
    dict(lr=0.1, weight_decay=0.1, eps=1e-6),
    dict(lr=0.1, weight_decay=0.1, maximize=True),
]
RMSPROP_OPTIONS = [
    dict(lr=0.01),
    dict(lr=0.01, centered=True),
    dict(lr=0.01, momentum=0.9),
    dict(lr=0.01, centered=True, momentum=0.9, weight_decay=0.1),
    dict(lr=0.01, alpha=0.3, centered=True),  # 1 - alpha > 0.5: the other branch of torch.lerp
    dict(lr=0.01, weight_decay=0.1, maximize=True),
]
ADAM_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.1, amsgrad=True),
    dict(lr=0.1, weight_decay=0.1),
    dict(lr=0.1, weight_decay=0.1, amsgrad=True, maximize=True),
    dict(lr=0.1, betas=(0.3, 0.9), eps=1e-3),  # 1 - beta1 > 0.5: the other branch of torch.lerp
]
ADAMW_OPTIONS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.1, amsgrad=True),
    dict(lr=0.1, weight_decay=0.3, maximize=True),
]
# fastnn-only options (L1 and max-norm), checked against the reference and torch with the penalty added by hand.
PENALTY_OPTIONS = [dict(l1=0.05), dict(max_norm=0.8), dict(l1=0.02, max_norm=1.5, weight_decay=0.05)]

ALL = (
    [("SGD", o) for o in SGD_OPTIONS]
    + [("Adagrad", o) for o in ADAGRAD_OPTIONS]
    + [("RMSprop", o) for o in RMSPROP_OPTIONS]
    + [("Adam", o) for o in ADAM_OPTIONS]
    + [("AdamW", o) for o in ADAMW_OPTIONS]
)
BASE = {"SGD": dict(lr=0.1, momentum=0.9), "Adagrad": dict(lr=0.1), "RMSprop": dict(lr=0.01, centered=True, momentum=0.5),
        "Adam": dict(lr=0.1, amsgrad=True), "AdamW": dict(lr=0.1)}
WITH_PENALTIES = [(name, {**BASE[name], **pen}) for name in BASE for pen in PENALTY_OPTIONS]


def case_id(case):
    name, opts = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in opts.items()) + ")"


def reference_step(name, params, grads, states, decay, opts):
    """One step of the NumPy reference for optimizer `name` with fastnn's options."""
    if name == "SGD":
        R.sgd(params, grads, states, decay, **opts)
    elif name == "Adagrad":
        R.adagrad(params, grads, states, decay, **opts)
    elif name == "RMSprop":
        R.rmsprop(params, grads, states, decay, **opts)
    elif name == "Adam":
        R.adam(params, grads, states, decay, **opts)
    elif name == "AdamW":
        R.adam(params, grads, states, decay, **{"weight_decay": 1e-2, **opts}, decoupled_weight_decay=True)
    else:
        raise ValueError(name)


def run_fastnn(name, opts, dtype, steps, seed=1, model=None):
    """Final parameter values after `steps` steps of fastnn.optim.<name> on random gradients."""
    buf, params = model or make_model(dtype)
    opt = getattr(optim, name)(params, **opts)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        random_grads(rng, buf)
        opt.step()
    return buf, params, opt


def run_reference(name, opts, dtype, steps, seed=1):
    """The same trajectory with the per-parameter NumPy reference (frozen parameters not passed)."""
    buf, params = make_model(dtype)
    trainable = [i for i, p in enumerate(params) if p.requires_grad]
    values = [params[i].numpy() for i in trainable]
    decay = [params[i].weight_decay for i in trainable]
    states = [{} for _ in trainable]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        random_grads(rng, buf)
        reference_step(name, values, [params[i].grad.copy() for i in trainable], states, decay, opts)
    out = [p.numpy() for p in params]
    for i, v in zip(trainable, values):
        out[i] = v
    return out


def run_torch(name, opts, dtype, steps, seed=1):
    """The same trajectory with torch.optim.<name>: DECAY and no-decay parameters in two groups
    (weight decay 0 for the second), frozen ones excluded; L1 added to the gradient and max-norm
    applied with torch.renorm by hand."""
    import torch

    buf, params = make_model(dtype)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tensors = [torch.tensor(p.numpy(), dtype=tdtype, requires_grad=p.requires_grad) for p in params]
    opts = dict(opts)
    l1, max_norm = opts.pop("l1", 0.0), opts.pop("max_norm", None)
    decay = [t for t, p in zip(tensors, params) if p.requires_grad and p.weight_decay]
    no_decay = [t for t, p in zip(tensors, params) if p.requires_grad and not p.weight_decay]
    opt = getattr(torch.optim, name)([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], **opts)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        random_grads(rng, buf)
        for t, p in zip(tensors, params):
            if p.requires_grad:
                t.grad = torch.tensor(p.grad.copy(), dtype=tdtype)
                if l1 and p.weight_decay:
                    t.grad += l1 * torch.sign(t.detach()) * (-1 if opts.get("maximize") else 1)
        opt.step()
        if max_norm is not None:
            with torch.no_grad():
                for t, p in zip(tensors, params):
                    if p.requires_grad and p.weight_decay and t.ndim >= 2:
                        t.copy_(torch.renorm(t, 2, 0, max_norm))
    return [t.detach().numpy() for t in tensors]
