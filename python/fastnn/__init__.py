"""fastnn: fast neural-network training on the CPU (C++ core: Eigen + OpenMP)."""

from ._config import build_info, get_num_threads, set_num_threads, show_config
from . import datasets, functional, nn, optim, random, reference
from .random import manual_seed

__version__ = build_info()["version"]

__all__ = [
    "__version__",
    "build_info",
    "datasets",
    "functional",
    "get_num_threads",
    "manual_seed",
    "nn",
    "optim",
    "random",
    "reference",
    "set_num_threads",
    "show_config",
]
