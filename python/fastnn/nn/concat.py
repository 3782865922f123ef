"""Concat: parallel branches on one input, outputs concatenated along dimension 1 (Inception's block)."""

from collections import OrderedDict

from ._layer_module import make_layer
from .container import Container


class Concat(Container):
    """``Concat(a, b)(x)`` is ``a(x)`` and ``b(x)`` concatenated along dimension 1 (the channels of
    (N, C, H, W), the features of (N, F)); children "0", "1", ...

    Every branch sees the same input; backward gives each branch its slice of the gradient and
    the input gradient is the sum of theirs. The branches' outputs must agree in every other
    dimension: otherwise a ValueError names their shapes.
    """

    def __init__(self, *branches):
        if len(branches) == 1 and isinstance(branches[0], (OrderedDict, dict)):
            named = list(branches[0].items())
        else:
            named = [(str(i), m) for i, m in enumerate(branches)]
        if not named:
            raise ValueError("Concat: needs at least one branch")
        super().__init__(named, lambda dt, layers: make_layer("Concat", dt, layers))

    _open = True  # more branches: add_module(str(len(self)), branch)

    @classmethod
    def _from_children(cls, config, named, dtype):
        return cls(OrderedDict(named))

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())
