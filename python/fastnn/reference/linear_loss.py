"""The loss of a linear model z = x W^T + b over a data set and its gradient (softmax, logistic
or linear regression: the objective fit(optimizer=LBFGS) minimizes for a model that is one Linear).

    L = loss(z, y)  (mean or sum),   g = dL/dz,   dL/dW = g^T x,   dL/db = sum over rows of g

loss: "cross_entropy" (y: integer labels (N,) or probabilities (N, out)), "bce_with_logits" or
"mse" (y: (N, out)). Also returns the correct predictions (argmax equal to the label per row for
cross-entropy, the label being the largest probability with probability targets; per element,
logit > 0 equal to target > 0.5, for BCE; 0 for MSE).
"""

import numpy as np

from .loss import binary_cross_entropy_with_logits_forward_backward, cross_entropy_forward_backward, mse_forward_backward

__all__ = ["linear_loss_forward_backward"]

_LOSSES = {"cross_entropy": cross_entropy_forward_backward, "bce_with_logits":
           binary_cross_entropy_with_logits_forward_backward, "mse": mse_forward_backward}


def linear_loss_forward_backward(x, y, weight, bias, loss="cross_entropy", reduction="mean"):
    """(loss, dW (out, in), db (out,) or None, correct) in float64 arithmetic, gradients in x's dtype."""
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
    z = x.astype(np.float64) @ weight.astype(np.float64).T
    if bias is not None:
        z = z + bias
    value, g = _LOSSES[loss](z, y.astype(np.float64) if y.dtype.kind == "f" else y, reduction)
    g = np.asarray(g, np.float64)
    dw = (g.T @ x.astype(np.float64)).astype(x.dtype)
    db = None if bias is None else g.sum(axis=0).astype(x.dtype)
    if loss == "cross_entropy":
        correct = int((z.argmax(axis=1) == (y if y.ndim == 1 else y.argmax(axis=1))).sum())
    elif loss == "bce_with_logits":
        correct = int(((z > 0) == (y > 0.5)).sum())
    else:
        correct = 0
    return float(value), dw, db, correct
