"""Neural-network modules with PyTorch's names, arguments and parameter layouts."""

from . import init
from .activation import ELU, SELU, LeakyReLU, LogSoftmax, Maxout, PReLU, ReLU, RReLU, Sigmoid, Softmax, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d, fold_batchnorm, recompute_bn_statistics
from .concat import Concat
from .container import Container, Sequential
from .conv import Conv2d
from .dense_block import DenseBlock, Transition
from .dropout import Dropout
from .flatten import Flatten, Identity
from .linear import Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, one_hot
from .loss import HuberLoss, L1Loss, NLLLoss, SmoothL1Loss
from .module import Module
from .module_list import ModuleList
from .residual import Residual
from .parameter import FlatBuffer, Parameter
from .pool import AdaptiveAvgPool2d, AvgPool2d, GlobalAvgPool2d, MaxPool2d

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d", "Concat", "Container",
    "Conv2d", "CrossEntropyLoss", "DenseBlock", "Dropout", "ELU", "FlatBuffer", "Flatten", "GlobalAvgPool2d",
    "Identity", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "MaxPool2d", "Maxout", "Module", "ModuleList", "PReLU", "Parameter",
    "RReLU", "ReLU", "Residual", "SELU", "Sequential", "Sigmoid", "Softmax", "Tanh", "Transition", "fold_batchnorm",
    "init", "one_hot", "recompute_bn_statistics",
]  # fmt: skip
__all__ += ["HuberLoss", "L1Loss", "NLLLoss", "SmoothL1Loss"]
