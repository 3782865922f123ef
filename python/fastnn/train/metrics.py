"""fit's and evaluate's metrics= (Keras names): accuracy, top-k accuracy, mae, mse.

They are counted in the C++ loop over the same outputs as the loss (fastnn._C.train_epoch returns
their sums); this turns the sums into the logged means."""

import re

_ACCURACY = ("accuracy", "acc")
_MAE = ("mae", "mean_absolute_error")
_MSE = ("mse", "mean_squared_error")
_CLASSES = ("cross_entropy", "nll")


def _top_k(name):
    """k of "top_k_accuracy" (5, Keras's default), "top_3_accuracy" or "top_k_categorical_accuracy"; else None."""
    if name in ("top_k_accuracy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy"):
        return 5
    m = re.fullmatch(r"top_(\d+)_accuracy", name)
    return int(m.group(1)) if m else None


class Metrics:
    """The metrics of one fit/evaluate call. None: accuracy for classification losses (the default
    of fastnn's fit), nothing for regression."""

    def __init__(self, names, kernel, fn="fit"):
        if names is None:
            names = ["accuracy"] if kernel in (*_CLASSES, "bce_with_logits") else []
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise TypeError(f"{fn}: metrics must be a list of metric names, got {names!r}")
        self.names, self.kernel, self.top_k = list(names), kernel, 0
        for name in self.names:
            if not isinstance(name, str):
                raise TypeError(f"{fn}: metrics must be names (str), got {name!r}")
            k = _top_k(name)
            if name in _ACCURACY:
                if kernel not in (*_CLASSES, "bce_with_logits"):
                    raise ValueError(f"{fn}: metric {name!r} needs a classification loss (cross-entropy, NLL or BCE), "
                                     f"the loss is {kernel!r}; use 'mae' or 'mse'")
            elif k is not None:
                if kernel not in _CLASSES:
                    raise ValueError(f"{fn}: metric {name!r} needs a multi-class loss (cross-entropy or NLL)")
                if k < 1 or (self.top_k and k != self.top_k):
                    raise ValueError(f"{fn}: one top-k accuracy with k >= 1 per call, got {name!r}")
                self.top_k = k
            elif name in _MAE or name in _MSE:
                if kernel in _CLASSES:
                    raise ValueError(f"{fn}: metric {name!r} compares outputs with value targets; the loss "
                                     f"{kernel!r} takes class labels")
            else:
                raise ValueError(f"{fn}: unknown metric {name!r}; use 'accuracy', 'top_k_accuracy' "
                                 "(or 'top_<k>_accuracy'), 'mae' or 'mse'")

    def values(self, stats, width):
        """{name: value} from the C++ loop's sums."""
        n = max(stats["samples"], 1)
        out = {}
        for name in self.names:
            if name in _ACCURACY:
                per_sample = width if self.kernel == "bce_with_logits" else 1
                out[name] = stats["correct"] / (n * per_sample)
            elif _top_k(name) is not None:
                out[name] = stats["top_k_correct"] / n
            elif name in _MAE:
                out[name] = stats["abs_error"] / (n * width)
            else:
                out[name] = stats["sq_error"] / (n * width)
        return out
