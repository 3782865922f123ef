"""Loss modules: ``loss(output, target)`` returns a float; ``loss.backward()`` the gradient wrt output.

Forward and backward are computed in one C++ pass (the gradient is kept for ``backward``).
"""

import numpy as np

from .. import _validate as _v
from .. import functional as F


class _Loss:
    _kernel = None  # stem of the kernels in fastnn.functional (<stem>_forward_backward, <stem>_backward)
    _fit_kernel = None  # the loss's name in fit's C++ epoch loop

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self._grad = None
        self._last = None

    def _options(self):
        """The keyword options of the kernels (weight, label_smoothing, ...)."""
        return {}

    def __call__(self, output, target):
        return self.forward(output, target)

    def forward(self, output, target):
        """The loss: a float, or for reduction "none" the float64 losses (per row or per element)."""
        loss, self._grad = getattr(F, f"{self._kernel}_forward_backward")(output, target, self.reduction,
                                                                           **self._options())
        self._last = (output, target)
        return loss if self.reduction == "none" else float(loss)

    def backward(self, grad=1.0):
        """Gradient of the last loss with respect to the model output, times `grad` (for reduction
        "none" also an array of the losses' shape: the upstream gradient of each loss)."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was computed")
        if np.ndim(grad):
            output, target = self._last
            return getattr(F, f"{self._kernel}_backward")(output, target, grad, self.reduction, **self._options())
        return self._grad if grad == 1.0 else self._grad * np.asarray(grad, dtype=self._grad.dtype)

    def fit_options(self):
        """What fit's C++ loop needs of this loss: its options as plain values (fastnn.train)."""
        return {}

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self._repr_options().items())
        return f"{type(self).__name__}(reduction={self.reduction!r}{extra})"

    def _repr_options(self):
        return {}


def _weight_vector(weight, owner, name):
    """None, or a 1-D finite float64 copy of `weight`."""
    if weight is None:
        return None
    w = np.array(weight, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.isfinite(w).all():
        raise ValueError(f"{owner}: {name} must be a non-empty 1-D array of finite numbers, got {weight!r}")
    return w


def _check_ignore_index(ignore_index, owner):
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{owner}: ignore_index must be an int, got {type(ignore_index).__name__}")
    return int(ignore_index)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (N, C); targets are int labels (N,) or probabilities (N, C).

    PyTorch's arguments: ``weight`` (C,) class weights (the mean is then weighted, as torch's),
    ``ignore_index`` (rows with that label do not count), ``label_smoothing`` in [0, 1].
    """

    _kernel = "cross_entropy"
    _fit_kernel = "cross_entropy"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        name = type(self).__name__
        self.weight = _weight_vector(weight, name, "weight")
        self.ignore_index = _check_ignore_index(ignore_index, name)
        self.label_smoothing = _v.check_real(label_smoothing, name, "label_smoothing", 0, 1)

    def _options(self):
        return {"weight": self.weight, "label_smoothing": self.label_smoothing, "ignore_index": self.ignore_index}

    def fit_options(self):
        return {"class_weight": self.weight, "label_smoothing": self.label_smoothing, "ignore_index": self.ignore_index}

    def _repr_options(self):
        return {k: v for k, v in self._options().items() if v is not None and (k != "ignore_index" or v != -100)
                and (k != "label_smoothing" or v)}


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities (N, C) (a LogSoftmax output) against int labels (N,).

    ``weight`` and ``ignore_index`` as in CrossEntropyLoss (torch's)."""

    _kernel = "nll"
    _fit_kernel = "nll"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.weight = _weight_vector(weight, type(self).__name__, "weight")
        self.ignore_index = _check_ignore_index(ignore_index, type(self).__name__)

    def _options(self):
        return {"weight": self.weight, "ignore_index": self.ignore_index}

    def fit_options(self):
        return {"class_weight": self.weight, "ignore_index": self.ignore_index}


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits: mean(max(z,0) - z*t + log(1 + exp(-|z|))).

    PyTorch's ``weight`` (element weights, broadcast to the logits) and ``pos_weight`` (weights of
    the positive term, broadcast along the last dimension: one per output)."""

    _kernel = "binary_cross_entropy_with_logits"
    _fit_kernel = "bce_with_logits"

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        name = type(self).__name__
        self.weight = None if weight is None else np.array(weight, dtype=np.float64)
        if self.weight is not None and not np.isfinite(self.weight).all():
            raise ValueError(f"{name}: weight must be finite")
        self.pos_weight = _weight_vector(pos_weight, name, "pos_weight")

    def _options(self):
        return {"weight": self.weight, "pos_weight": self.pos_weight}

    def fit_options(self):
        if self.weight is not None:
            raise ValueError("fit: BCEWithLogitsLoss(weight=...) weighs the elements of one batch; in fit use "
                             "sample_weight= or class_weight= (or pos_weight= per output)")
        return {"pos_weight": self.pos_weight}


class MSELoss(_Loss):
    """Mean squared error."""

    _kernel = "mse"
    _fit_kernel = "mse"


class L1Loss(_Loss):
    """Mean absolute error (torch's L1Loss)."""

    _kernel = "l1"
    _fit_kernel = "l1"


class SmoothL1Loss(_Loss):
    """torch's SmoothL1Loss: quadratic for |u| < beta (u^2 / (2 beta)), else |u| - beta / 2."""

    _kernel = "smooth_l1"
    _fit_kernel = "smooth_l1"

    def __init__(self, reduction="mean", beta=1.0):
        super().__init__(reduction)
        self.beta = _v.check_real(beta, type(self).__name__, "beta", 0)

    def _options(self):
        return {"beta": self.beta}

    def fit_options(self):
        return {"param": self.beta}

    _repr_options = _options


class HuberLoss(_Loss):
    """torch's HuberLoss: u^2 / 2 for |u| < delta, else delta (|u| - delta / 2)."""

    _kernel = "huber"
    _fit_kernel = "huber"

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = _v.check_real(delta, type(self).__name__, "delta", 0, low_open=True)

    def _options(self):
        return {"delta": self.delta}

    def fit_options(self):
        return {"param": self.delta}

    _repr_options = _options


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
