"""resnet: the CIFAR ResNets of He et al. 2016 (sec. 4.2) built from basic blocks and nn.Residual."""

from collections import OrderedDict

import numpy as np

from .. import _validate as _v
from .. import nn
from ._common import check_smallest, finish, image_size


def _basic_block(c_in, c_out, stride):
    """relu(body(x) + shortcut(x)): body conv3x3(stride)-BN-ReLU-conv3x3-BN; the shortcut is the
    identity, or a strided 1x1 conv + BN where the shape changes (torchvision's ``downsample``)."""
    body = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)),
        ("bn1", nn.BatchNorm2d(c_out)),
        ("relu", nn.ReLU()),
        ("conv2", nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)),
        ("bn2", nn.BatchNorm2d(c_out)),
    ]))
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)),
            ("bn", nn.BatchNorm2d(c_out)),
        ]))
    return nn.Sequential(OrderedDict([("residual", nn.Residual(body, shortcut)), ("relu", nn.ReLU())]))


def resnet(depth=20, width=16, in_channels=1, num_classes=10, input_size=28, dtype=np.float32):
    """ResNet for small images (He, Zhang, Ren & Sun 2016, "Deep Residual Learning", sec. 4.2):

        conv3x3(C -> width) - BN - ReLU
        3 stages of n = (depth - 2) / 6 basic blocks with width, 2*width, 4*width channels
        (the first block of stages 2 and 3 has stride 2 and a 1x1 conv + BN shortcut)
        global average pool - Flatten - Linear(4*width -> num_classes)

    A basic block is relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x)), the addition shortcut
    that DenseNet's concatenation is contrasted with. Convolutions have no bias (BN follows each).

    Parameters: 272,186 for the defaults (ResNet-20, width 16, 28x28x1, 10 classes); 272,474 for 3
    input channels; depth 56: 855,482.

    Args:
        depth: 6n + 2 layers with weights (20, 32, 44, 56, 110, ...).
        width: channels of the first stage.
        in_channels: image channels (1 grey, 3 RGB).
        num_classes: outputs (logits).
        input_size: H = W, or (H, W); at least 4 (two stride-2 stages).
        dtype: np.float32 or np.float64.
    Returns:
        nn.Sequential taking (N, in_channels, H, W): children conv1, bn1, relu, layer1..layer3
        (each a Sequential of blocks), avgpool, flatten, fc.
    """
    fn = "resnet"
    depth = _v.check_int(depth, fn, "depth", 8)
    if (depth - 2) % 6:
        raise ValueError(f"[{fn}] depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
    width = _v.check_int(width, fn, "width", 1)
    in_channels = _v.check_int(in_channels, fn, "in_channels", 1)
    num_classes = _v.check_int(num_classes, fn, "num_classes", 1)
    check_smallest(image_size(input_size, fn), 4, fn, "two stride-2 stages")
    n = (depth - 2) // 6
    layers = [
        ("conv1", nn.Conv2d(in_channels, width, 3, padding=1, bias=False)),
        ("bn1", nn.BatchNorm2d(width)),
        ("relu", nn.ReLU()),
    ]
    c = width
    for stage in range(3):
        c_out = width << stage
        blocks = [_basic_block(c if i == 0 else c_out, c_out, 2 if (stage and i == 0) else 1) for i in range(n)]
        layers.append((f"layer{stage + 1}", nn.Sequential(*blocks)))
        c = c_out
    layers += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(c, num_classes))]
    return finish(nn.Sequential(OrderedDict(layers)), dtype, fn)
