"""simple_cnn: the BENCH.md CNN (two conv-BN-ReLU-maxpool stages, then a 128-unit MLP head)."""

import numpy as np

from .. import _validate as _v
from .. import nn
from ._common import check_smallest, finish, image_size
from ._pretrained import load_pretrained


def simple_cnn(pretrained=False, in_channels=1, num_classes=10, input_size=28, dropout=0.5, dtype=np.float32):
    """BENCH.md's ``cnn`` workload:

        Conv(C->32, 3, pad 1) - BN2d - ReLU - MaxPool(2)
        Conv(32->64, 3, pad 1) - BN2d - ReLU - MaxPool(2)
        Flatten - Linear(64*(H/4)*(W/4) -> 128) - ReLU - Dropout(dropout) - Linear(128 -> num_classes)

    The convolutions have no bias (the BatchNorm's shift replaces it). Children are numbered as in a
    torch ``nn.Sequential`` of the same layers, so state_dicts load both ways.

    Parameters: 421,738 for the defaults (28x28x1, 10 classes); 545,194 for 32x32x3.

    pretrained=True loads the shipped weights (``models/weights/simple_cnn.fnn``, trained by
    ``tools/train_zoo.py`` on the 60,000 Fashion-MNIST training images, 10 epochs of Adam 1e-3
    with cosine annealing, batch 128, seed 0): **test accuracy 0.9221** on the 10,000 test images.
    They need the default in_channels, num_classes, input_size and float32 (a ValueError
    otherwise); dropout may differ. The model is returned in training mode, as built.

    Args:
        pretrained: load the Fashion-MNIST weights.
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: outputs (logits).
        input_size: H = W, or (H, W); at least 4.
        dropout: the head's dropout probability (0 for none).
        dtype: np.float32 or np.float64.
    Returns:
        nn.Sequential taking (N, in_channels, H, W).
    """
    fn = "simple_cnn"
    pretrained = _v.check_bool(pretrained, fn, "pretrained")
    in_channels = _v.check_int(in_channels, fn, "in_channels", 1)
    num_classes = _v.check_int(num_classes, fn, "num_classes", 1)
    dropout = _v.check_real(dropout, fn, "dropout", 0, 1, high_open=True)
    h, w = image_size(input_size, fn)
    check_smallest((h, w), 4, fn, "two 2x2 max-poolings")
    layers = []
    for c_in, c_out in ((in_channels, 32), (32, 64)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)]
    layers += [nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), 128), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(128, num_classes))
    model = finish(nn.Sequential(*layers), dtype, fn)
    if pretrained:
        load_pretrained(model, fn, {"in_channels": in_channels, "num_classes": num_classes, "input_size": [h, w],
                                    "dtype": np.dtype(dtype).name})
    return model
