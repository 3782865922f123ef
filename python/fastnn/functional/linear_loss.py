"""linear_loss: a linear model's loss over a data set and its gradient in one pass over x
(kernels/linear_loss.h; reference/linear_loss.py is the specification)."""

import numpy as np

from .._config import _C


def linear_loss_max_outputs(dtype):
    """The most outputs linear_loss_forward_backward takes for `dtype`: four SIMD registers of
    them, so it depends on the instruction set of the module loaded (64 float32 / 32 float64 with
    AVX-512, 32 / 16 with AVX2, 16 / 8 with SSE2)."""
    return _C.linear_loss_max_outputs(np.dtype(dtype).name)


def linear_loss_forward_backward(x, y, weight, bias, loss="cross_entropy", reduction="mean"):
    """(loss, dW, db, correct) of z = x W^T + b: the loss (mean or sum), its gradient with respect to
    the weight (out, in) and the bias (out,) (None without one), and the correct predictions.

    Args:
        x: (N, in) float32/float64. y: (N,) integer labels (cross-entropy) or (N, out) targets.
        weight: (out, in), out <= linear_loss_max_outputs(dtype); bias: (out,) or None.
        loss: "cross_entropy", "bce_with_logits" or "mse".
    """
    return _C.linear_loss_forward_backward(x, y, weight, bias, loss, reduction)
