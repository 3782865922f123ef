"""Neural-network modules with PyTorch's names, arguments and parameter layouts."""

from . import init
from .activation import ELU, SELU, LeakyReLU, LogSoftmax, Maxout, PReLU, ReLU, RReLU, Sigmoid, Softmax, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d, fold_batchnorm, recompute_bn_statistics
from .concat import Concat
from .container import Container, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten, Identity
from .linear import Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, one_hot
from .module import Module
from .residual import Residual
from .parameter import FlatBuffer, Parameter

__all__ = [
    "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d", "Concat", "Container", "Conv2d", "CrossEntropyLoss", "Dropout", "ELU",
    "FlatBuffer", "Flatten", "Identity", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "Maxout", "Module", "PReLU", "Parameter", "RReLU",
    "ReLU", "Residual", "SELU", "Sequential", "Sigmoid", "Softmax", "Tanh", "fold_batchnorm", "init", "one_hot", "recompute_bn_statistics",
]  # fmt: skip
