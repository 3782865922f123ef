"""densenet: DenseNet(-BC) for small images (Huang et al. 2017) from nn.DenseBlock and nn.Transition."""

import math
from collections import OrderedDict

import numpy as np

from .. import _validate as _v
from .. import nn
from ._common import check_smallest, finish, image_size


def densenet(growth_rate=12, block_config=(16, 16, 16), bottleneck=True, compression=0.5, drop_rate=0.0,
             in_channels=1, num_classes=10, input_size=28, dtype=np.float32):
    """DenseNet for small images (Huang, Liu, van der Maaten & Weinberger 2017, sec. 3-4):

        conv3x3(C -> 2*growth_rate; 16 without bottleneck)
        DenseBlock(block_config[0]) - Transition - ... - DenseBlock(block_config[-1])
        BN - ReLU - global average pool - Flatten - Linear(-> num_classes)

    Each dense layer sees the concatenation of all earlier feature maps of its block and adds
    growth_rate channels: BN-ReLU-1x1 conv(4*growth_rate)-BN-ReLU-3x3 conv with ``bottleneck``
    (DenseNet-B), BN-ReLU-3x3 conv without. A transition is BN-ReLU-1x1 conv-AvgPool(2) to
    floor(compression * channels) channels (DenseNet-C when compression < 1). The defaults are
    DenseNet-BC with L = 100, k = 12 (the paper's 0.8M-parameter CIFAR model).

    Parameters: 768,730 for the defaults (28x28x1, 10 classes; 769,162 for 3 input channels);
    growth_rate=12, block_config=(6, 6, 6): 175,690 (176,122 for 3 channels).

    Args:
        growth_rate: k, the channels each dense layer adds.
        block_config: layers per dense block, e.g. (16, 16, 16) (L = 6 * 16 + 4 = 100 with bottleneck).
        bottleneck: 1x1 bottleneck convolutions to 4k channels (DenseNet-B).
        compression: theta in (0, 1]: channels kept by each transition.
        drop_rate: dropout after each dense layer's last convolution.
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: outputs (logits).
        input_size: H = W, or (H, W); at least 2**(len(block_config) - 1) (each transition halves it).
        dtype: np.float32 or np.float64.
    Returns:
        nn.Sequential taking (N, in_channels, H, W), named as torchvision's DenseNet: features
        (conv0, denseblock1, transition1, ..., norm5, relu5, pool5), flatten, classifier.
    """
    fn = "densenet"
    growth_rate = _v.check_int(growth_rate, fn, "growth_rate", 1)
    if not isinstance(block_config, (tuple, list)) or not block_config:
        raise ValueError(f"[{fn}] block_config must be a non-empty sequence of layer counts, got {block_config!r}")
    block_config = [_v.check_int(b, fn, "block_config entries", 1) for b in block_config]
    bottleneck = _v.check_bool(bottleneck, fn, "bottleneck")
    compression = _v.check_real(compression, fn, "compression", 0, 1, low_open=True)
    drop_rate = _v.check_real(drop_rate, fn, "drop_rate", 0, 1, high_open=True)
    in_channels = _v.check_int(in_channels, fn, "in_channels", 1)
    num_classes = _v.check_int(num_classes, fn, "num_classes", 1)
    check_smallest(image_size(input_size, fn), 2 ** (len(block_config) - 1), fn,
                   f"{len(block_config) - 1} transitions")
    c = 2 * growth_rate if bottleneck else 16
    features = [("conv0", nn.Conv2d(in_channels, c, 3, padding=1, bias=False))]
    for i, layers in enumerate(block_config):
        features.append((f"denseblock{i + 1}", nn.DenseBlock(layers, c, growth_rate, bn_size=4 if bottleneck else None,
                                                             drop_rate=drop_rate)))
        c += layers * growth_rate
        if i + 1 < len(block_config):
            c_out = max(1, math.floor(compression * c))
            features.append((f"transition{i + 1}", nn.Transition(c, c_out)))
            c = c_out
    features += [("norm5", nn.BatchNorm2d(c)), ("relu5", nn.ReLU()), ("pool5", nn.AdaptiveAvgPool2d(1))]
    model = nn.Sequential(OrderedDict([
        ("features", nn.Sequential(OrderedDict(features))),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Linear(c, num_classes)),
    ]))
    return finish(model, dtype, fn)
