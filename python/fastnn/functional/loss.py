"""loss: wrappers of the C++ kernels (reference/loss.py is the specification)."""

from .._config import _C


def cross_entropy_forward(logits, target, reduction="mean"):
    """Softmax cross-entropy of logits against class labels or class probabilities.

    ``loss_i = -sum_c t_ic log_softmax(logits_i)_c`` with the log-sum-exp trick (no overflow for
    large logits); ``t_i`` is one-hot(target[i]) for labels. Accumulated in double.

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels in [0, C), or (N, C) class probabilities (one-hot
            rows, or soft labels; finite) of the logits' dtype.
        reduction: "mean" (divide the sum over rows by N) or "sum".
    Returns:
        The loss as a Python float.
    """
    return _C.cross_entropy_forward(logits, target, reduction)


def cross_entropy_backward(logits, target, grad=1.0, reduction="mean"):
    """Gradient of ``grad * cross_entropy_forward(logits, target)`` with respect to the logits.

    ``grad_logits_i = (softmax(logits_i) * sum_c t_ic - t_i) * grad / N`` (no ``/ N`` for "sum").

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels or (N, C) class probabilities, as in the forward.
        grad: upstream gradient of the loss (a finite float).
        reduction: "mean" or "sum".
    Returns:
        grad_logits: (N, C), dtype of logits.
    """
    return _C.cross_entropy_backward(logits, target, grad, reduction)


def cross_entropy_forward_backward(logits, target, reduction="mean"):
    """Cross-entropy loss and its gradient (upstream gradient 1) in one pass over the logits.

    Same formulas as :func:`cross_entropy_forward` and :func:`cross_entropy_backward`.

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels or (N, C) class probabilities.
        reduction: "mean" or "sum".
    Returns:
        (loss, grad_logits): a Python float and an (N, C) array of the logits' dtype.
    """
    return _C.cross_entropy_forward_backward(logits, target, reduction)


def binary_cross_entropy_with_logits_forward(logits, target, reduction="mean"):
    """Binary cross-entropy on logits, in the stable form.

    ``loss = mean(max(z, 0) - z * t + log(1 + exp(-|z|)))`` over all elements
    (``= -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))``). Accumulated in double.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype as logits, targets in [0, 1].
        reduction: "mean" (divide by the number of elements) or "sum".
    Returns:
        The loss as a Python float.
    """
    return _C.binary_cross_entropy_with_logits_forward(logits, target, reduction)


def binary_cross_entropy_with_logits_backward(logits, target, grad=1.0, reduction="mean"):
    """Gradient of ``grad * binary_cross_entropy_with_logits_forward`` with respect to the logits.

    ``grad_logits = (sigmoid(z) - t) * grad / n`` (no ``/ n`` for "sum"), n = logits.size.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype.
        grad: upstream gradient of the loss (a finite float).
        reduction: "mean" or "sum".
    Returns:
        grad_logits: shape and dtype of logits.
    """
    return _C.binary_cross_entropy_with_logits_backward(logits, target, grad, reduction)


def binary_cross_entropy_with_logits_forward_backward(logits, target, reduction="mean"):
    """Binary cross-entropy with logits and its gradient (upstream gradient 1) in one pass.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype.
        reduction: "mean" or "sum".
    Returns:
        (loss, grad_logits): a Python float and an array shaped like logits.
    """
    return _C.binary_cross_entropy_with_logits_forward_backward(logits, target, reduction)


def mse_forward(input, target, reduction="mean"):
    """Mean squared error.

    ``loss = sum((input - target)**2) / n`` over all n elements (no ``/ n`` for "sum").

    Args:
        input: any shape, float32/float64.
        target: same shape and dtype.
        reduction: "mean" or "sum".
    Returns:
        The loss as a Python float (accumulated in double).
    """
    return _C.mse_forward(input, target, reduction)


def mse_backward(input, target, grad=1.0, reduction="mean"):
    """Gradient of ``grad * mse_forward(input, target)`` with respect to the input.

    ``grad_input = 2 * (input - target) * grad / n`` (no ``/ n`` for "sum").

    Args:
        input: any shape, float32/float64.
        target: same shape and dtype.
        grad: upstream gradient of the loss (a finite float).
        reduction: "mean" or "sum".
    Returns:
        grad_input: shape and dtype of input.
    """
    return _C.mse_backward(input, target, grad, reduction)


def mse_forward_backward(input, target, reduction="mean"):
    """Mean squared error and its gradient (upstream gradient 1) in one pass.

    Args:
        input: any shape, float32/float64.
        target: same shape and dtype.
        reduction: "mean" or "sum".
    Returns:
        (loss, grad_input): a Python float and an array shaped like input.
    """
    return _C.mse_forward_backward(input, target, reduction)
