"""First-order optimizers over a model's flat parameter buffer, LR schedulers, gradient clipping.

Every optimizer updates all of a model's parameters in one fused C++ pass per parameter group
(OpenMP, vectorized), with PyTorch's update rules and hyperparameter names; frozen parameters are
skipped and, as in torch, a group's weight decay / L1 / max-norm apply to every parameter of the
group. ``param_groups(model, weight_decay)`` makes the usual two groups (biases and normalization
parameters without decay).

    opt = fastnn.optim.AdamW(fastnn.optim.param_groups(model, weight_decay=1e-2), lr=1e-3)
    sched = fastnn.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for epoch in range(10):
        for x, y in batches:
            opt.zero_grad()
            ...backward...
            fastnn.optim.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        sched.step()
"""

from . import lr_scheduler
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_, max_norm_
from .optimizer import Optimizer, param_groups, segment_table
from .rmsprop import RMSprop
from .sgd import SGD
# second order: the loops run in C++ on the flat buffers
from .bfgs import BFGS
from .conjugate_gradient import ConjugateGradient
from .hessian_free import HessianFree
from .lbfgs import LBFGS
from .minimize import OptimizeResult, minimize
from .newton import Newton
from .second_order import SecondOrderOptimizer

__all__ = [
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "RMSprop",
    "SGD",
    "clip_grad_norm_",
    "clip_grad_value_",
    "lr_scheduler",
    "max_norm_",
    "param_groups",
    "segment_table",
    "BFGS", "ConjugateGradient", "HessianFree", "LBFGS", "Newton", "OptimizeResult", "SecondOrderOptimizer", "minimize",
]
