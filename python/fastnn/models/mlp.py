"""mlp: fully connected networks for flat samples (Linear - BatchNorm1d - ReLU - Dropout blocks)."""

import numpy as np

from .. import _validate as _v
from .. import nn
from ._common import finish
from ._pretrained import load_pretrained


def mlp(pretrained=False, hidden=(256, 128), dropout=0.2, batchnorm=True, in_features=784, num_classes=10,
        dtype=np.float32):
    """A multilayer perceptron; the defaults are ``python -m fastnn train``'s default model:

        [Linear(in -> h) - BatchNorm1d(h) - ReLU - Dropout(dropout)] for h in hidden
        Linear(hidden[-1] -> num_classes)

    784-256-128-10, 235,914 parameters (plus 768 running statistics). The CLI's other MLPs are
    ``mlp(hidden=(32, 32), dropout=0)`` (``--model mlp-s``, the course notes' network),
    ``mlp(hidden=(512, 256), dropout=0.5)`` (``mlp-l``) and ``mlp(hidden=())`` (``linear``,
    softmax regression).

    pretrained=True loads the shipped weights (``models/weights/mlp.fnn``, trained by
    ``tools/train_zoo.py`` on the 60,000 Fashion-MNIST training images, 20 epochs of Adam 1e-3
    with cosine annealing, batch 128, seed 0): **test accuracy 0.9044** on the 10,000 test images.
    They need the default hidden, batchnorm, in_features, num_classes and float32 (a ValueError
    otherwise; convert with ``.double()`` afterwards); dropout may differ. The model is returned in
    training mode, as built (predict and evaluate run it in eval mode).

    Args:
        pretrained: load the Fashion-MNIST weights.
        hidden: widths of the hidden layers; () for softmax regression.
        dropout: dropout probability after each hidden ReLU (0 for none).
        batchnorm: a BatchNorm1d after each hidden Linear.
        in_features: inputs per sample (784 = 28 x 28).
        num_classes: outputs (logits).
        dtype: np.float32 or np.float64.
    Returns:
        nn.Sequential taking (N, in_features).
    """
    fn = "mlp"
    pretrained = _v.check_bool(pretrained, fn, "pretrained")
    if not isinstance(hidden, (tuple, list)):
        raise TypeError(f"[{fn}] hidden must be a sequence of layer widths, got {type(hidden).__name__}")
    hidden = tuple(_v.check_int(h, fn, "hidden widths", 1) for h in hidden)
    dropout = _v.check_real(dropout, fn, "dropout", 0, 1, high_open=True)
    batchnorm = _v.check_bool(batchnorm, fn, "batchnorm")
    in_features = _v.check_int(in_features, fn, "in_features", 1)
    num_classes = _v.check_int(num_classes, fn, "num_classes", 1)
    layers = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h)] + ([nn.BatchNorm1d(h)] if batchnorm else []) + [nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, num_classes))
    model = finish(nn.Sequential(*layers), dtype, fn)
    if pretrained:
        load_pretrained(model, "mlp", {"hidden": list(hidden), "batchnorm": batchnorm, "in_features": in_features,
                                       "num_classes": num_classes, "dtype": np.dtype(dtype).name})
    return model
