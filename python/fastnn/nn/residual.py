"""Residual: out = body(x) + shortcut(x), ResNet's addition shortcut (identity when shortcut is None)."""

from ._layer_module import make_layer
from .container import Container


class Residual(Container):
    """``Residual(body, shortcut=None)(x) == body(x) + shortcut(x)``; the identity when shortcut is None.

    Children "body" and "shortcut" (state_dict names ``body.0.weight``, ``shortcut.weight``, ...);
    both get the output's gradient in backward and the input gradient is the sum of theirs. The
    two paths must give one shape: otherwise a ValueError names both shapes.
    """

    def __init__(self, body, shortcut=None):
        named = [("body", body)] + ([("shortcut", shortcut)] if shortcut is not None else [])
        super().__init__(named, lambda dt, layers: make_layer("Residual", dt, *layers))
        if shortcut is None:
            object.__setattr__(self, "shortcut", None)

    @classmethod
    def _from_children(cls, config, named, dtype):
        children = dict(named)
        if "body" not in children or set(children) - {"body", "shortcut"}:
            raise ValueError(f"Residual children must be 'body' and optionally 'shortcut', got {sorted(children)}")
        return cls(children["body"], children.get("shortcut"))
