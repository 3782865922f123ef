"""Loss modules: ``loss(output, target)`` returns a float; ``loss.backward()`` the gradient wrt output.

Forward and backward are computed in one C++ pass (the gradient is kept for ``backward``).
"""

import numpy as np

from .. import _validate as _v
from .. import functional as F


class _Loss:
    _kernel = None  # name of the fused forward+backward kernel in fastnn.functional

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self._grad = None

    def __call__(self, output, target):
        return self.forward(output, target)

    def forward(self, output, target):
        loss, self._grad = getattr(F, self._kernel)(output, target, reduction=self.reduction)
        return float(loss)

    def backward(self, grad=1.0):
        """Gradient of the last loss with respect to the model output, times `grad`."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was computed")
        return self._grad if grad == 1.0 else self._grad * np.asarray(grad, dtype=self._grad.dtype)

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (N, C); targets are int labels (N,) or probabilities (N, C)."""

    _kernel = "cross_entropy_forward_backward"


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits: mean(max(z,0) - z*t + log(1 + exp(-|z|)))."""

    _kernel = "binary_cross_entropy_with_logits_forward_backward"


class MSELoss(_Loss):
    """Mean squared error."""

    _kernel = "mse_forward_backward"


def one_hot(labels, num_classes, dtype=np.float32):
    """(N,) integer labels -> (N, num_classes) one-hot rows."""
    num_classes = _v.check_int(num_classes, "one_hot", "num_classes", 1)
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"one_hot: labels must be a 1-D integer array, got {labels.dtype} with shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"one_hot: label {bad} is outside [0, {num_classes})")
    out = np.zeros((labels.size, num_classes), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out
