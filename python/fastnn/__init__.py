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
from . import augment
from . import ensemble, tune  # fastnn.sklearn needs scikit-learn: imported on its own
from . import plot  # matplotlib is imported when a plot is drawn
from .io import load, save
from .train import evaluate, fit, predict, train_step
from .random import manual_seed
from .curvature import CurvatureOperator, curvature_operator, gnvp, hessian, hessian_eigenvalues, hvp, loss_and_grad

__version__ = build_info()["version"]

__all__ = [
    "__version__",
    "augment",
    "build_info",
    "datasets",
    "empty_cache",
    "ensemble",
    "CurvatureOperator",
    "curvature_operator",
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
    "plot",
    "predict",
    "random",
    "reference",
    "save",
    "set_num_threads",
    "show_config",
    "train",
    "train_step",
    "tune",
    "use_gemm_backend",
]
