"""model.summary(): a Keras-like table of the layers, their output shapes and parameter counts."""

import numpy as np

from .concat import Concat
from .container import Sequential
from .module import Module
from .residual import Residual


def count_params(module, trainable=None):
    """Number of parameter values of `module` (a shared parameter counted once); trainable=True:
    only those with requires_grad, False: only the frozen ones."""
    return sum(p.size for p in module.parameters() if trainable is None or p.requires_grad == trainable)


def _output_shape(module, shape, dtype):
    """Output shape of `module` for an input of `shape` (batch first): the C++ layer's promise, a
    Python module's output_shape(), or else a forward pass in eval mode on zeros."""
    layer = module.__dict__.get("_layer")
    promised = None
    if layer is not None:
        promised = tuple(layer.output_shape(list(shape)))
    elif callable(getattr(module, "output_shape", None)):
        promised = tuple(module.output_shape(tuple(shape)))
    if promised is not None and Ellipsis not in promised:
        return tuple(int(d) for d in promised)
    return tuple(module._forward_in_mode(np.zeros(shape, dtype), False).shape)


def _trainable_text(module):
    flags = {p.requires_grad for p in module.parameters()}
    return "" if not flags else "yes" if flags == {True} else "no" if flags == {False} else "partly"


def _rows(module, name, depth, shape, dtype, rows):
    """Appends (indented name (type), output shape, params, trainable) rows for `module` and, for
    Sequential, Residual and Concat, its children; returns its output shape (None without input)."""
    out = _output_shape(module, shape, dtype) if shape is not None else None
    rows.append(("  " * depth + f"{name} ({type(module).__name__})", out, count_params(module), _trainable_text(module)))
    children = list(module.named_children())
    if isinstance(module, Sequential):
        inner = shape
        for child_name, child in children:
            inner = _rows(child, child_name, depth + 1, inner, dtype, rows)
    elif isinstance(module, (Residual, Concat)):  # every branch reads the container's input
        for child_name, child in children:
            _rows(child, child_name, depth + 1, shape, dtype, rows)
    return out


def _shape_text(shape):
    if shape is None:
        return "?"
    return "(" + ", ".join(["None"] + [str(d) for d in shape[1:]]) + ("," if len(shape) == 1 else "") + ")"


def summary(module, input_shape=None, print_fn=print):
    """The table of `module`'s layers: name (type), output shape, parameters, trainable.

    Args:
        module: a fastnn.nn.Module.
        input_shape: one sample's shape without the batch, e.g. ``(784,)`` or ``(1, 28, 28)`` (as
            Keras' input_shape; the batch shows as None). Without it the shapes show as "?".
        print_fn: called with the table; None returns it instead (as a string).
    """
    if not isinstance(module, Module):
        raise TypeError(f"summary: expected a fastnn.nn.Module, got {type(module).__name__}")
    if input_shape is not None:
        if isinstance(input_shape, int):
            input_shape = (input_shape,)
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in input_shape):
            raise ValueError(f"summary: input_shape must be one sample's shape (positive integers, no batch), "
                             f"got {input_shape!r}")
        input_shape = (1,) + tuple(int(d) for d in input_shape)
    dtype = next((p.dtype for p in module.parameters()), np.dtype(getattr(module, "dtype", np.float32)))
    rows = []
    try:
        children = list(module.named_children())
        if isinstance(module, Sequential) and children:
            shape = input_shape
            for name, child in children:
                shape = _rows(child, name, 0, shape, dtype, rows)
        else:
            _rows(module, type(module).__name__.lower(), 0, input_shape, dtype, rows)
    except (ValueError, TypeError) as e:
        raise ValueError(f"summary: the model does not take samples of shape {input_shape[1:]}: {e}") from e
    header = ("Layer (type)", "Output Shape", "Param #", "Trainable")
    table = [header] + [(n, _shape_text(s), f"{c:,}", t) for n, s, c, t in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    line = lambda r: "  ".join(  # noqa: E731
        (r[i].rjust(widths[i]) if i == 2 else r[i].ljust(widths[i])) for i in range(4)).rstrip()
    rule = "=" * len(line(header))
    total, trainable = count_params(module), count_params(module, True)
    text = "\n".join([f"Model: {type(module).__name__} ({module.dtype if hasattr(module, 'dtype') else dtype})", rule,
                      line(header), rule] + [line(r) for r in table[1:]] + [
        rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,} (frozen: requires_grad=False)", rule])
    if print_fn is None:
        return text
    print_fn(text)
    return None
