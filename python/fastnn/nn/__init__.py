"""Neural-network modules with PyTorch's names, arguments and parameter layouts."""

from . import init
from .activation import ELU, SELU, LeakyReLU, LogSoftmax, Maxout, PReLU, ReLU, RReLU, Sigmoid, Softmax, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .container import Sequential
from .dropout import Dropout
from .flatten import Flatten, Identity
from .linear import Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, one_hot
from .module import Module
from .parameter import FlatBuffer, Parameter

__all__ = [
    "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d", "CrossEntropyLoss", "Dropout", "ELU", "FlatBuffer",
    "Flatten", "Identity", "LeakyReLU", "Linear", "LogSoftmax", "MSELoss", "Maxout", "Module", "PReLU", "Parameter", "RReLU",
    "ReLU", "SELU", "Sequential", "Sigmoid", "Softmax", "Tanh", "init", "one_hot",
]  # fmt: skip
