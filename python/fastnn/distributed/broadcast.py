"""broadcast_parameters: root's parameters, running statistics and optimizer state on every rank."""

import numpy as np

from ..nn.module import Module
from ..optim import Optimizer


def _numeric_hyperparameters(optimizer):
    """[(group index, key)] of the groups' numeric hyperparameters (lr, betas, ...), in a fixed order."""
    out = []
    for i, group in enumerate(optimizer.param_groups):
        for key in sorted(group):
            value = group[key]
            scalars = value if isinstance(value, tuple) else (value,)
            if key != "params" and scalars and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in scalars):
                out.append((i, key))
    return out


def _describe(model, optimizer):
    """What must agree between the ranks: (label, value) pairs."""
    params = model.flat_parameters()
    states = [get() for _, get in model._named_states()]
    out = [("parameters", params.size), ("parameter dtype bytes", params.dtype.itemsize),
           ("running-statistics values", sum(s.size for s in states))]
    if optimizer is not None:
        arrays = [optimizer.state[k] for k in sorted(optimizer.state)]
        out += [("optimizer state values", sum(a.size for a in arrays)),
                ("optimizer hyperparameters", len(_numeric_hyperparameters(optimizer))),
                ("optimizer groups", len(optimizer.param_groups))]
    return out


def broadcast_parameters(model, optimizer=None, root=0, distributed=None):
    """Copies root's parameters and running statistics (and, given `optimizer`, its state arrays
    and numeric hyperparameters such as lr) to every rank, bit for bit: call it on every rank after
    building the model (fit with DataParallel does it at its start). A model or optimizer that
    differs between the ranks (another parameter count, ...) is a ValueError on every rank naming
    each rank's count.

    Args:
        distributed: the DataParallel whose communicator and timeout to use (default: DataParallel()).
    """
    from .data_parallel import DataParallel, _all_ranks

    plan = DataParallel() if distributed is None else distributed
    if not isinstance(plan, DataParallel):
        raise TypeError(f"broadcast_parameters: distributed must be a DataParallel, got {type(plan).__name__}")

    def run():
        if not isinstance(model, Module):
            raise TypeError(f"broadcast_parameters: model must be a fastnn.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"broadcast_parameters: optimizer must be a fastnn.optim.Optimizer or None, "
                            f"got {type(optimizer).__name__}")
        if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or not 0 <= root < plan.size:
            raise ValueError(f"broadcast_parameters: root must be a rank in [0, {plan.size}), got {root!r}")
        if optimizer is not None:
            optimizer._follow_if_moved()
        described = _describe(model, optimizer)
        table = plan.channel.sync("broadcast_parameters", [v for _, v in described])
        for column, (label, _) in enumerate(described):
            if len(set(table[:, column])) > 1:
                each = ", ".join(f"rank {r}: {int(v)}" for r, v in enumerate(table[:, column]))
                raise _all_ranks(ValueError(f"broadcast_parameters: the ranks' models differ: {label} ({each}); "
                                            "build the same model (and optimizer) on every rank"))
        what = f"broadcast_parameters (from rank {root})"
        arrays = [model.flat_parameters()] + [get() for _, get in model._named_states()]
        if optimizer is not None:
            arrays += [optimizer.state[k] for k in sorted(optimizer.state)]
        for a in arrays:
            if a.size:
                plan.channel.bcast_(a, root, what)
        if optimizer is not None:
            keys = _numeric_hyperparameters(optimizer)
            values = np.array([v for i, k in keys for v in np.atleast_1d(optimizer.param_groups[i][k])], np.float64)
            plan.channel.bcast_(values, root, what)
            at = 0
            for i, k in keys:
                old = optimizer.param_groups[i][k]
                width = len(old) if isinstance(old, tuple) else 1
                got = [type(o)(v) for o, v in zip(old if isinstance(old, tuple) else (old,), values[at:at + width])]
                optimizer.param_groups[i][k] = tuple(got) if isinstance(old, tuple) else got[0]
                at += width

    return plan.run("broadcast_parameters", run)
