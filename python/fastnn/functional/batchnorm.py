"""batchnorm: wrappers of the C++ kernels (reference/batchnorm.py is the specification)."""

from .._config import _C


def batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalization forward, per channel (BatchNorm1d on (N, C), BatchNorm2d on (N, C, H, W)).

    Training: ``mu, var = mean and biased variance of the n = N*H*W values of each channel``,
    ``y = gamma * (x - mu) / sqrt(var + eps) + beta``; the running statistics, if given, are updated
    in place: ``running_mean = (1-momentum) running_mean + momentum mu``,
    ``running_var = (1-momentum) running_var + momentum var n/(n-1)``.
    Eval: the folded affine ``y = scale * x + shift`` (see :func:`batch_norm_fold`).

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64.
        weight: (C,) gamma, or None (1).
        bias: (C,) beta, or None (0).
        running_mean: (C,) C-contiguous writeable array of x's dtype, or None (training only).
        running_var: (C,) likewise; both or neither.
        training: True for batch statistics (needs more than 1 value per channel), False for the
            running statistics.
        momentum: running-average factor in [0, 1].
        eps: added to the variance, > 0.
    Returns:
        (y, save_mean, save_invstd): y shaped like x; save_mean (C,) the mean used (mu or
        running_mean); save_invstd (C,) ``1 / sqrt(var + eps)`` with the variance used.
    """
    return _C.batch_norm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps)


def batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training=True):
    """Batch normalization backward from the forward's saved statistics.

    With ``x_hat = (x - save_mean) * save_invstd`` per channel: ``grad_bias = sum g``,
    ``grad_weight = sum g * x_hat``; training: ``dx = gamma * invstd / n * (n g - grad_bias -
    x_hat * grad_weight)``; eval: ``dx = g * gamma * invstd``.

    Args:
        grad_out: upstream gradient g, shaped like x.
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64, the forward's input.
        weight: (C,) gamma, or None (1).
        save_mean: (C,) from :func:`batch_norm_forward`.
        save_invstd: (C,) from :func:`batch_norm_forward`.
        training: the mode the forward ran in.
    Returns:
        (grad_input, grad_weight, grad_bias): shaped like x, (C,), (C,); the last two also when
        weight is None.
    """
    return _C.batch_norm_backward(grad_out, x, weight, save_mean, save_invstd, training)


def batch_norm_fold(weight, bias, running_mean, running_var, eps=1e-5):
    """The folded inference affine of batch normalization (seed 001 eq. 5.18).

    ``scale = gamma / sqrt(running_var + eps)``, ``shift = beta - running_mean * scale``, so that
    eval-mode batch normalization is ``y = scale * x + shift``.

    Args:
        weight: (C,) gamma, or None (1).
        bias: (C,) beta, or None (0).
        running_mean: (C,) float32/float64.
        running_var: (C,), same dtype.
        eps: > 0.
    Returns:
        (scale, shift), each (C,).
    """
    return _C.batch_norm_fold(weight, bias, running_mean, running_var, eps)


def batch_norm_affine(x, scale, shift):
    """Per-channel affine ``y = scale[c] * x + shift[c]``: one multiply-add per element.

    Args:
        x: (N, C), (N, C, L) or (N, C, H, W) float32/float64.
        scale: (C,), same dtype.
        shift: (C,), same dtype.
    Returns:
        y shaped like x.
    """
    return _C.batch_norm_affine(x, scale, shift)
