"""2-D convolution (cross-correlation, as torch.nn.Conv2d) as im2col + one GEMM per group (kernels/conv.h).

x is (N, C, H, W), weight (O, C/G, kh, kw), G = groups (G = C = O is depthwise); output channel o
belongs to group g = o // (O/G) and reads input channels g*C/G ... (g+1)*C/G - 1:
    y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] x_pad[n, g C/G + c, p sh + i dh, q sw + j dw].
With cols = im2col(x) (N*P*Q, C*kh*kw) split into G column blocks cols_g, W_g = the (O/G, C/G*kh*kw)
rows of group g and Y = grad_out or y as (N*P*Q, O) in NHWC order, split into column blocks Y_g:
    forward  Y_g = cols_g W_g^T + b_g
    backward dW_g = dY_g^T cols_g,  db = sum over (n, p, q) of dY,  dx = col2im([dY_g W_g]_g).
A 1x1 kernel without padding reads one pixel per output: its cols are x[:, :, ::sh, ::sw] in NHWC
order, and col2im writes dcols back to those pixels, so it needs no patch copy.
"""

import numpy as np

from .im2col import _check_nchw, _geometry, col2im, conv_output_size, im2col

__all__ = ["conv2d_backward", "conv2d_forward"]


def _check(x_shape, weight, bias, groups, op):
    _check_nchw(x_shape, "x", op)
    if weight.ndim != 4:
        raise ValueError(f"[{op}] weight must be (out_channels, in_channels/groups, kh, kw), got {weight.shape}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"[{op}] groups must be a positive int, got {groups!r}")
    O, Cg = weight.shape[:2]
    if O % groups:
        raise ValueError(f"[{op}] out_channels {O} is not divisible by groups={groups}")
    if x_shape[1] != Cg * groups:
        raise ValueError(
            f"[{op}] x has {x_shape[1]} channels, weight {weight.shape} with groups={groups} expects {Cg * groups}"
        )
    if bias is not None and bias.shape != (O,):
        raise ValueError(f"[{op}] bias must be ({O},), got {bias.shape}")


def _is_pointwise(k, pad):
    return k == (1, 1) and pad == (0, 0)


def _columns(x, k, s, pad, d):
    """im2col(x), or for a 1x1 kernel without padding the strided pixels themselves in NHWC order."""
    if _is_pointwise(k, pad):
        return x[:, :, ::s[0], ::s[1]].transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
    return im2col(x, k, s, pad, d)


def _by_group(m, groups):
    """(M, G*K) as G blocks of columns: (G, M, K)."""
    return m.reshape(m.shape[0], groups, -1).transpose(1, 0, 2)


def _from_groups(m):
    """(G, M, K) back to (M, G*K)."""
    return m.transpose(1, 0, 2).reshape(m.shape[1], -1)


def _accumulate(value, out):
    if out is None:
        return value
    out += value
    return out


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """y = conv2d(x, W) + b: Y_g = cols_g W_g^T + b_g per group, as torch.nn.functional.conv2d.

    Args:
        x: (N, C, H, W) float32/float64.
        weight: (O, C/groups, kh, kw), same dtype (PyTorch layout).
        bias: (O,) or None.
        stride, padding, dilation: int or (h, w) pair; groups: divides C and O.
    Returns:
        y: (N, O, P, Q) with P, Q = conv_output_size((H, W), (kh, kw), stride, padding, dilation).
    """
    _check(x.shape, weight, bias, groups, "conv2d_forward")
    k, s, pad, d = _geometry(weight.shape[2:], stride, padding, dilation, "conv2d_forward")
    N, O = x.shape[0], weight.shape[0]
    P, Q = conv_output_size(x.shape[2:], k, s, pad, d, "conv2d_forward")
    cols = _by_group(_columns(x, k, s, pad, d), groups)  # (G, N*P*Q, C/G*kh*kw)
    w = weight.reshape(groups, O // groups, -1)  # (G, O/G, C/G*kh*kw)
    y = _from_groups(cols @ w.transpose(0, 2, 1))  # (N*P*Q, O)
    if bias is not None:
        y = y + bias
    return np.ascontiguousarray(y.reshape(N, P, Q, O).transpose(0, 3, 1, 2))


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, need_input_grad=True,
                    need_bias_grad=True, grad_weight_out=None, grad_bias_out=None):
    """dW_g = dY_g^T cols_g, db = sum_{n,p,q} dY, dx = col2im([dY_g W_g]_g).

    Args:
        grad_out: (N, O, P, Q) float32/float64, the gradient of conv2d_forward's output.
        x, weight, stride, padding, dilation, groups: as given to conv2d_forward.
        need_input_grad, need_bias_grad: skip those gradients (None is returned in their place).
        grad_weight_out: optional (O, C/groups, kh, kw) array; grad_weight is added to it in place
            (``+=``) and it is returned. grad_bias_out: optional (O,), accumulated the same way.
    Returns:
        (grad_input (N, C, H, W) or None, grad_weight (O, C/groups, kh, kw), grad_bias (O,) or None).
    """
    _check(x.shape, weight, None, groups, "conv2d_backward")
    k, s, pad, d = _geometry(weight.shape[2:], stride, padding, dilation, "conv2d_backward")
    N, C, H, W = x.shape
    O = weight.shape[0]
    P, Q = conv_output_size((H, W), k, s, pad, d, "conv2d_backward")
    if grad_out.shape != (N, O, P, Q):
        raise ValueError(f"[conv2d_backward] grad_out must be {(N, O, P, Q)}, got {grad_out.shape}")
    if grad_bias_out is not None and not need_bias_grad:
        raise ValueError("[conv2d_backward] grad_bias_out is given but need_bias_grad is False")
    g = _by_group(grad_out.transpose(0, 2, 3, 1).reshape(N * P * Q, O), groups)  # (G, N*P*Q, O/G)
    w = weight.reshape(groups, O // groups, -1)
    cols = _by_group(_columns(x, k, s, pad, d), groups)
    grad_weight = _accumulate((g.transpose(0, 2, 1) @ cols).reshape(weight.shape), grad_weight_out)
    grad_bias = _accumulate(grad_out.sum(axis=(0, 2, 3)), grad_bias_out) if need_bias_grad else None
    grad_input = None
    if need_input_grad:
        dcols = _from_groups(g @ w)  # (N*P*Q, C*kh*kw)
        if _is_pointwise(k, pad):
            grad_input = np.zeros_like(x, dtype=dcols.dtype)
            grad_input[:, :, ::s[0], ::s[1]] = dcols.reshape(N, P, Q, C).transpose(0, 3, 1, 2)
        else:
            grad_input = col2im(dcols, x.shape, k, s, pad, d)
    return grad_input, grad_weight, grad_bias
