"""batchnorm_activation: wrappers of the C++ kernels (reference/batchnorm_activation.py is the specification)."""

from .._config import _C


def batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5, p=0.0,
                            seed=0, step=0):
    """Batch normalization, ReLU and (training only) inverted dropout in one pass over the output.

    ``z = batch_norm(x)`` as :func:`batch_norm_forward` (training: batch statistics, running
    statistics updated in place; eval: the folded affine), ``y = relu(z) * keep / (1 - p)`` with
    the keep mask of ``dropout_forward(relu(z), p, seed, step)`` in training and no dropout in
    eval. Equal, bit for bit, to those three functions called one after the other.

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64.
        weight: (C,) gamma, or None (1).
        bias: (C,) beta, or None (0).
        running_mean: (C,) C-contiguous writeable array of x's dtype, or None (training only).
        running_var: (C,) likewise; both or neither.
        training: True for batch statistics and dropout, False for the running statistics and no dropout.
        momentum: running-average factor in [0, 1].
        eps: added to the variance, > 0.
        p: drop probability in [0, 1) (0: batch norm + ReLU only).
        seed: integer in [0, 2**64), as for :func:`dropout_forward`.
        step: integer in [0, 2**64), as for :func:`dropout_forward`.
    Returns:
        (y, save_mean, save_invstd, mask): y shaped like x; save_mean, save_invstd (C,) as from
        :func:`batch_norm_forward`; mask a uint8 array shaped like x for the backward, bit 0 set where
        z > 0 (ReLU passes) and bit 1 where dropout kept the element (always in eval or with p = 0).
    """
    return _C.batch_norm_relu_forward(x, weight, bias, running_mean, running_var, training, momentum, eps, p, seed,
                                      step)


def batch_norm_relu_backward(grad_out, x, weight, save_mean, save_invstd, mask, training=True, p=0.0):
    """Gradient of :func:`batch_norm_relu_forward`: batch-norm backward of the masked gradient.

    ``g_z = grad_out * [mask bit 0] * [mask bit 1] / (1 - p)`` (the ReLU and dropout derivatives),
    then :func:`batch_norm_backward` on ``g_z``, in the same two passes over the data.

    Args:
        grad_out: upstream gradient, shaped like x.
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64, the forward's input.
        weight: (C,) gamma, or None (1).
        save_mean: (C,) from the forward.
        save_invstd: (C,) from the forward.
        mask: uint8 array shaped like x, from the forward.
        training: the mode the forward ran in.
        p: the forward's drop probability in [0, 1) (ignored when training is False: no dropout in eval).
    Returns:
        (grad_input, grad_weight, grad_bias): shaped like x, (C,), (C,).
    """
    return _C.batch_norm_relu_backward(grad_out, x, weight, save_mean, save_invstd, mask, training, p)


def batch_norm_relu_max_pool2d_forward(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
    """Training batch normalization, ReLU and MaxPool2d(2) in BatchNorm's passes, without storing relu(z).

    ``y, indices = max_pool2d_forward(relu(batch_norm(x)), 2)`` with the training batch statistics
    (running statistics updated in place), equal bit for bit to :func:`batch_norm_relu_forward`
    (``training=True, p=0``) followed by :func:`max_pool2d_forward`. The backward is
    :func:`max_pool2d_backward`, then :func:`batch_norm_relu_backward` with the mask of ``z > 0``.

    Args:
        x: (N, C, H, W) float32/float64, H >= 2, W even and at most 1024 (2x2 windows tile the rows).
        weight: (C,) gamma, or None (1).
        bias: (C,) beta, or None (0).
        running_mean: (C,) C-contiguous writeable array of x's dtype, or None.
        running_var: (C,) likewise; both or neither.
        momentum: running-average factor in [0, 1].
        eps: added to the variance, > 0.
    Returns:
        (y, indices, save_mean, save_invstd): y (N, C, H // 2, W // 2); indices int64 like y, the flat
        h*W + w of each maximum in its input plane; save_mean, save_invstd (C,) as from
        :func:`batch_norm_forward`.
    """
    return _C.batch_norm_relu_max_pool2d_forward(x, weight, bias, running_mean, running_var, momentum, eps)
