"""The C++ kernels, stateless, on NumPy arrays (float32 or float64; dtypes are never converted).

Each function has a NumPy reference of the same name in :mod:`fastnn.reference`, which is the
executable specification it is tested against. Inputs are read without copies when C-contiguous
(``matmul`` also maps strided and transposed views); other layouts are copied once.
Bad arguments raise ``TypeError`` (wrong type or dtype) or ``ValueError`` (shape, value), with the
op's name first: ``[matmul] inner dimensions differ: ...``.
"""

from .gemm import matmul, bmm
from .linear import linear_forward, linear_backward
from .linear_rop import linear_forward_pair
from .linear_loss import linear_loss_forward_backward, linear_loss_max_outputs
from .im2col import im2col, col2im
from .conv import conv2d_forward, conv2d_backward
from .conv_winograd import conv3x3_winograd_forward, conv3x3_winograd_input_grad, conv3x3_winograd_weight_grad
from .pool import (
    max_pool2d_forward, max_pool2d_backward, avg_pool2d_forward, avg_pool2d_backward, adaptive_avg_pool2d_forward,
    adaptive_avg_pool2d_backward, global_avg_pool2d_forward, global_avg_pool2d_backward, max_pool2d_gather,
)
from .activations import (
    sigmoid_forward, sigmoid_backward, tanh_forward, tanh_backward, relu_forward, relu_backward,
    leaky_relu_forward, leaky_relu_backward, elu_forward, elu_backward, selu_forward, selu_backward,
    prelu_forward, prelu_backward, rrelu_forward, rrelu_backward,
)
from .softmax import softmax_forward, softmax_backward, log_softmax_forward, log_softmax_backward
from .maxout import maxout_forward, maxout_backward
from .loss import (
    cross_entropy_forward, cross_entropy_backward, cross_entropy_forward_backward,
    binary_cross_entropy_with_logits_forward, binary_cross_entropy_with_logits_backward,
    binary_cross_entropy_with_logits_forward_backward, mse_forward, mse_backward, mse_forward_backward,
)
from .loss import (
    nll_forward, nll_backward, nll_forward_backward, l1_forward, l1_backward, l1_forward_backward,
    smooth_l1_forward, smooth_l1_backward, smooth_l1_forward_backward, huber_forward, huber_backward,
    huber_forward_backward,
)
from .batchnorm import batch_norm_forward, batch_norm_backward, batch_norm_fold, batch_norm_affine
from .batchnorm_rop import batch_norm_rop_forward, batch_norm_rop_backward
from .loss_hessian import cross_entropy_hessian_vector, bce_with_logits_hessian_vector, mse_hessian_vector
from .batchnorm_activation import batch_norm_relu_backward, batch_norm_relu_forward, batch_norm_relu_max_pool2d_forward
from .dropout import dropout_forward, dropout_backward
from .finite import first_nonfinite
from .augment import augment_batch, augment_params, augment_apply
from .lbfgs import lbfgs_two_loop

__all__ = [
    "matmul", "bmm", "linear_forward", "linear_backward", "im2col", "col2im", "conv2d_forward",
    "conv2d_backward", "conv3x3_winograd_forward", "conv3x3_winograd_input_grad", "conv3x3_winograd_weight_grad", "max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward", "avg_pool2d_backward",
    "adaptive_avg_pool2d_forward", "adaptive_avg_pool2d_backward", "global_avg_pool2d_forward",
    "global_avg_pool2d_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward", "relu_forward",
    "relu_backward", "leaky_relu_forward", "leaky_relu_backward", "elu_forward", "elu_backward", "selu_forward",
    "selu_backward", "prelu_forward", "prelu_backward", "rrelu_forward", "rrelu_backward", "softmax_forward",
    "softmax_backward", "log_softmax_forward", "log_softmax_backward", "maxout_forward", "maxout_backward",
    "cross_entropy_forward", "cross_entropy_backward", "cross_entropy_forward_backward",
    "binary_cross_entropy_with_logits_forward", "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward_backward", "mse_forward", "mse_backward", "mse_forward_backward",
    "batch_norm_forward", "batch_norm_backward", "batch_norm_fold", "batch_norm_affine",
    "batch_norm_relu_forward", "batch_norm_relu_backward", "batch_norm_relu_max_pool2d_forward", "dropout_forward", "dropout_backward",
    "first_nonfinite", "lbfgs_two_loop", "max_pool2d_gather",
    "augment_batch", "augment_params", "augment_apply",
]
__all__ += [
    "nll_forward", "nll_backward", "nll_forward_backward", "l1_forward", "l1_backward", "l1_forward_backward",
    "smooth_l1_forward", "smooth_l1_backward", "smooth_l1_forward_backward", "huber_forward", "huber_backward",
    "huber_forward_backward",
]  # fmt: skip
__all__ += ["batch_norm_rop_forward", "batch_norm_rop_backward", "cross_entropy_hessian_vector",
            "bce_with_logits_hessian_vector", "mse_hessian_vector"]
__all__ += ["linear_forward_pair", "linear_loss_forward_backward", "linear_loss_max_outputs"]
