"""Neural-network modules with PyTorch's names, arguments and parameter layouts."""

from . import init
from .container import Sequential
from .flatten import Flatten, Identity
from .module import Module
from .parameter import FlatBuffer, Parameter

__all__ = ["init", "FlatBuffer", "Flatten", "Identity", "Module", "Parameter", "Sequential"]
