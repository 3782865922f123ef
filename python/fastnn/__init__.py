"""fastnn: fast neural-network training on the CPU (C++ core: Eigen + OpenMP)."""

from ._config import (
    build_info,
    empty_cache,
    gemm_backend,
    get_num_threads,
    set_num_threads,
    show_config,
    use_gemm_backend,
)
from . import datasets, functional, io, models, nn, optim, random, reference, train
from .io import load, save
from .train import evaluate, fit, predict, train_step
from .random import manual_seed
from .curvature import gnvp, hessian, hessian_eigenvalues, hvp, loss_and_grad

__version__ = build_info()["version"]

__all__ = [
    "__version__",
    "build_info",
    "datasets",
    "empty_cache",
    "gnvp",
    "hessian",
    "hessian_eigenvalues",
    "hvp",
    "loss_and_grad",
    "evaluate",
    "fit",
    "functional",
    "gemm_backend",
    "get_num_threads",
    "io",
    "load",
    "manual_seed",
    "models",
    "nn",
    "optim",
    "predict",
    "random",
    "reference",
    "save",
    "set_num_threads",
    "show_config",
    "train",
    "train_step",
    "use_gemm_backend",
]
