"""conv: wrappers of the C++ kernels (reference/conv.py is the specification)."""

from .._config import _C


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) as torch.nn.functional.conv2d: im2col + one GEMM per
    group over the whole minibatch, ``Y_g = cols_g W_g^T + b_g``; 1x1 stride-1 unpadded kernels
    skip im2col; 3x3 stride-1 ungrouped ones with >= 16 channels in and >= 8 out, over >= 4 images,
    run as Winograd F(2x2, 3x3) (:func:`conv3x3_winograd_forward`), their weight gradient too
    (:func:`conv3x3_winograd_weight_grad`) and their input gradient unless O < C at "same" padding.

    Args:
        x: (N, C, H, W) float32/float64.
        weight: (O, C/groups, kh, kw), same dtype (PyTorch layout).
        bias: (O,) or None.
        stride, padding, dilation: int or (h, w) pair; groups: divides C and O (groups = C = O is
            depthwise).
    Returns:
        y: (N, O, P, Q).
    """
    return _C.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True,
                    need_bias_grad=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients of :func:`conv2d_forward`: ``dW_g = dY_g^T cols_g``, ``db = sum_{n,p,q} dY``,
    ``dx = col2im([dY_g W_g]_g)`` (dY the gradient as (N*P*Q, O) in NHWC order).

    Args:
        grad_out: (N, O, P, Q) float32/float64, the gradient of conv2d_forward's output.
        x, weight, stride, padding, dilation, groups: as given to conv2d_forward.
        need_input_grad, need_bias_grad: skip those gradients (None is returned in their place).
        grad_weight_out: optional C-contiguous (O, C/groups, kh, kw) array; grad_weight is added to
            it in place (``+=``) and it is returned. grad_bias_out: optional (O,), the same way.
    Returns:
        (grad_input (N, C, H, W) or None, grad_weight (O, C/groups, kh, kw), grad_bias (O,) or None).
    """
    return _C.conv2d_backward(grad_out, x, weight, stride, padding, dilation, groups, need_input_grad,
                              need_bias_grad, grad_weight_out, grad_bias_out)
