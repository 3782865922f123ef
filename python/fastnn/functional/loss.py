"""loss: wrappers of the C++ kernels (reference/loss.py is the specification).

Every loss has _forward (the loss), _backward (its gradient times an upstream gradient) and
_forward_backward (both in one pass). reduction "none" gives the unreduced losses (float64), and
its backward takes an upstream gradient of their shape (or a scalar)."""

from .._config import _C


def cross_entropy_forward(logits, target, reduction="mean", weight=None, label_smoothing=0.0, ignore_index=-100):
    """Softmax cross-entropy of logits against class labels or class probabilities.

    ``loss_i = -sum_c t_ic log_softmax(logits_i)_c`` with the log-sum-exp trick (no overflow for
    large logits); ``t_i`` is one-hot(target[i]) for labels. Accumulated in double.

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels in [0, C), or (N, C) class probabilities (one-hot
            rows, or soft labels; finite) of the logits' dtype.
        reduction: "mean" (divide the sum over rows by N; with ``weight`` or ignored labels by the
            summed class weight of the labels not ignored, as torch), "sum", or "none" (the (N,)
            float64 losses of the rows).
        weight: None or (C,) class weights (torch's ``weight``): row i's loss is scaled by the
            weight of its class (for probabilities: ``-sum_c w_c t_ic log_softmax_c``).
        label_smoothing: eps in [0, 1]: the target becomes ``(1 - eps) t + eps / C`` (torch's).
        ignore_index: rows whose label equals it have loss 0 and leave the mean (labels only).
    Returns:
        The loss as a Python float (for "none" a float64 array).
    """
    return _C.cross_entropy_forward(logits, target, reduction, weight=weight, label_smoothing=label_smoothing,
                                    ignore_index=ignore_index)


def cross_entropy_backward(logits, target, grad=1.0, reduction="mean", weight=None, label_smoothing=0.0,
                           ignore_index=-100):
    """Gradient of ``grad * cross_entropy_forward(logits, target)`` with respect to the logits.

    ``grad_logits_i = (softmax(logits_i) * sum_c t_ic - t_i) * grad / N`` (no ``/ N`` for "sum").

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels or (N, C) class probabilities, as in the forward.
        grad: upstream gradient of the loss (a finite float); for "none" also an (N,) array.
        reduction, weight, label_smoothing, ignore_index: as in the forward.
    Returns:
        grad_logits: (N, C), dtype of logits.
    """
    return _C.cross_entropy_backward(logits, target, grad, reduction, weight=weight, label_smoothing=label_smoothing,
                                     ignore_index=ignore_index)


def cross_entropy_forward_backward(logits, target, reduction="mean", weight=None, label_smoothing=0.0,
                                   ignore_index=-100):
    """Cross-entropy loss and its gradient (upstream gradient 1) in one pass over the logits.

    Same formulas as :func:`cross_entropy_forward` and :func:`cross_entropy_backward`.

    Args:
        logits: (N, C) float32/float64.
        target: (N,) int64/int32 class labels or (N, C) class probabilities.
        reduction, weight, label_smoothing, ignore_index: as in the forward.
    Returns:
        (loss, grad_logits): the loss as in the forward and an (N, C) array of the logits' dtype.
    """
    return _C.cross_entropy_forward_backward(logits, target, reduction, weight=weight,
                                             label_smoothing=label_smoothing, ignore_index=ignore_index)


def binary_cross_entropy_with_logits_forward(logits, target, reduction="mean", weight=None, pos_weight=None):
    """Binary cross-entropy on logits, in the stable form.

    ``loss = mean(max(z, 0) - z * t + log(1 + exp(-|z|)))`` over all elements
    (``= -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))``). Accumulated in double.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype as logits, targets in [0, 1].
        reduction: "mean" (divide by the number of elements, also with ``weight``), "sum", or
            "none" (the float64 losses of the elements, shaped like logits).
        weight: None or element weights broadcastable to logits (torch's ``weight``).
        pos_weight: None or weights of the positive term, broadcast along the last dimension
            (torch's ``pos_weight``): ``-w (p t log s(z) + (1 - t) log(1 - s(z)))``.
    Returns:
        The loss as a Python float.
    """
    return _C.binary_cross_entropy_with_logits_forward(logits, target, reduction, weight=weight, pos_weight=pos_weight)


def binary_cross_entropy_with_logits_backward(logits, target, grad=1.0, reduction="mean", weight=None, pos_weight=None):
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
    return _C.binary_cross_entropy_with_logits_backward(logits, target, grad, reduction, weight=weight, pos_weight=pos_weight)


def binary_cross_entropy_with_logits_forward_backward(logits, target, reduction="mean", weight=None, pos_weight=None):
    """Binary cross-entropy with logits and its gradient (upstream gradient 1) in one pass.

    Args:
        logits: any shape, float32/float64.
        target: same shape and dtype.
        reduction: "mean" or "sum".
    Returns:
        (loss, grad_logits): a Python float and an array shaped like logits.
    """
    return _C.binary_cross_entropy_with_logits_forward_backward(logits, target, reduction, weight=weight, pos_weight=pos_weight)


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


def nll_forward(input, target, reduction="mean", weight=None, ignore_index=-100):
    """Negative log-likelihood of log-probabilities (torch's nll_loss).

    ``loss = sum_i -w_{y_i} input[i, y_i] / sum_i w_{y_i}`` over the rows whose label is not ignore_index.

    Args:
        input: (N, C) float32/float64 log-probabilities (e.g. a LogSoftmax output).
        target: (N,) int64/int32 class labels.
        reduction: "mean", "sum" or "none"; weight: None or (C,) class weights; ignore_index: as cross-entropy.
    Returns:
        The loss as a Python float (for "none" the (N,) float64 losses).
    """
    return _C.nll_forward(input, target, reduction, weight=weight, ignore_index=ignore_index)


def nll_backward(input, target, grad=1.0, reduction="mean", weight=None, ignore_index=-100):
    """Gradient of ``grad * nll_forward``: ``-w_{y_i} grad / D`` at (i, y_i), 0 elsewhere."""
    return _C.nll_backward(input, target, grad, reduction, weight=weight, ignore_index=ignore_index)


def nll_forward_backward(input, target, reduction="mean", weight=None, ignore_index=-100):
    """(nll_forward, nll_backward with grad = 1) in one pass."""
    return _C.nll_forward_backward(input, target, reduction, weight=weight, ignore_index=ignore_index)


def l1_forward(input, target, reduction="mean"):
    """Mean absolute error: ``sum |input - target| / n`` ("sum": no ``/ n``; "none": the elements' losses)."""
    return _C.l1_forward(input, target, reduction)


def l1_backward(input, target, grad=1.0, reduction="mean"):
    """Gradient of ``grad * l1_forward``: ``sign(input - target) * grad / n`` (0 where they are equal, as torch)."""
    return _C.l1_backward(input, target, grad, reduction)


def l1_forward_backward(input, target, reduction="mean"):
    """(l1_forward, l1_backward with grad = 1) in one pass."""
    return _C.l1_forward_backward(input, target, reduction)


def smooth_l1_forward(input, target, reduction="mean", beta=1.0):
    """torch's smooth_l1_loss: ``u^2 / (2 beta)`` for ``|u| < beta``, else ``|u| - beta / 2`` (u = input - target).

    beta >= 0; beta = 0 is the L1 loss."""
    return _C.smooth_l1_forward(input, target, reduction, beta=beta)


def smooth_l1_backward(input, target, grad=1.0, reduction="mean", beta=1.0):
    """Gradient of ``grad * smooth_l1_forward``: ``u / beta`` inside, ``sign(u)`` outside, times grad / n."""
    return _C.smooth_l1_backward(input, target, grad, reduction, beta=beta)


def smooth_l1_forward_backward(input, target, reduction="mean", beta=1.0):
    """(smooth_l1_forward, smooth_l1_backward with grad = 1) in one pass."""
    return _C.smooth_l1_forward_backward(input, target, reduction, beta=beta)


def huber_forward(input, target, reduction="mean", delta=1.0):
    """torch's huber_loss: ``u^2 / 2`` for ``|u| < delta``, else ``delta (|u| - delta / 2)``; delta > 0."""
    return _C.huber_forward(input, target, reduction, delta=delta)


def huber_backward(input, target, grad=1.0, reduction="mean", delta=1.0):
    """Gradient of ``grad * huber_forward``: ``u`` inside, ``delta sign(u)`` outside, times grad / n."""
    return _C.huber_backward(input, target, grad, reduction, delta=delta)


def huber_forward_backward(input, target, reduction="mean", delta=1.0):
    """(huber_forward, huber_backward with grad = 1) in one pass."""
    return _C.huber_forward_backward(input, target, reduction, delta=delta)
