"""Winograd F(2x2, 3x3) convolution (kernels/conv_winograd.h): the 3x3, stride-1, undilated,
ungrouped cross-correlation of reference/conv.py computed on 4x4 input tiles that overlap by 2.

With d a 4x4 tile of channel c of the zero-padded input (rows 2r.., columns 2s..) and g = W[o, c]:
    U[o, c] = G g G^T,  V[c, t] = B^T d B,  y tile (2x2) = A^T (sum_c U[o, c] * V[c, t]) A,
    G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
    A^T = [1 1 1 0; 0 1 -1 -1].
The sum over c of the 16 elementwise products is 16 matrix products of depth C. The output is cut
to P x Q = (H + 2 ph - 2) x (W + 2 pw - 2) (a last, half-used tile when P or Q is odd).
The input gradient of such a convolution is one too: the convolution of grad_out with the kernel
rotated by 180 degrees and its channels swapped, padding 2 - p (`conv3x3_winograd_input_grad`).
The weight gradient is the transposed transform of the forward (`conv3x3_winograd_weight_grad`):
    dM[o, t] = A dY[o, t] A^T (dY: the 2x2 tile t of grad_out, zero beyond P, Q),
    dU[o, c] = sum over the tiles (and images) of dM[o, t] * V[c, t],  dW[o, c] = G^T dU[o, c] G.
"""

import numpy as np

__all__ = ["conv3x3_winograd_forward", "conv3x3_winograd_input_grad", "conv3x3_winograd_weight_grad",
           "winograd_transform_weight"]

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])


def _padding(padding):
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    if ph < 0 or pw < 0:
        raise ValueError(f"[conv3x3_winograd_forward] padding must be >= 0, got {padding}")
    return int(ph), int(pw)


def winograd_transform_weight(weight):
    """U (4, 4, O, C) = G g G^T for each 3x3 kernel g = weight[o, c] (weight (O, C, 3, 3))."""
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"[conv3x3_winograd_forward] weight must be (O, C, 3, 3), got {weight.shape}")
    g = G.astype(weight.dtype)
    return np.einsum("ai,ocij,bj->aboc", g, weight, g)


def _input_tiles(x, ph, pw, P, Q):
    """V (4, 4, N, C, TR, TC) = B^T d B of the 4x4 tiles d of the padded x for a P x Q output."""
    N, C, H, W = x.shape
    TR, TC = (P + 1) // 2, (Q + 1) // 2
    plane = np.zeros((N, C, 2 * TR + 2, 2 * TC + 2), x.dtype)
    plane[:, :, ph:ph + H, pw:pw + W] = x
    rows = 2 * np.arange(TR)[:, None] + np.arange(4)  # (TR, 4): the tiles' rows in the plane
    cols = 2 * np.arange(TC)[:, None] + np.arange(4)
    d = plane[:, :, rows[:, :, None, None], cols[None, None, :, :]]  # (N, C, TR, 4, TC, 4)
    bt = BT.astype(x.dtype)
    return np.einsum("ai,ncrisj,bj->abncrs", bt, d, bt)


def conv3x3_winograd_forward(x, weight, bias=None, padding=1):
    """y = conv2d(x, weight, bias, stride=1, padding=padding) by Winograd F(2x2, 3x3).

    Args:
        x: (N, C, H, W) float32/float64; weight: (O, C, 3, 3), same dtype; bias: (O,) or None.
        padding: int or (ph, pw), >= 0.
    Returns:
        y: (N, O, H + 2 ph - 2, W + 2 pw - 2).
    """
    if x.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"[conv3x3_winograd_forward] x must be (N, {weight.shape[1]}, H, W), got {x.shape}")
    ph, pw = _padding(padding)
    N, C, H, W = x.shape
    P, Q = H + 2 * ph - 2, W + 2 * pw - 2
    if P < 1 or Q < 1:
        raise ValueError(f"[conv3x3_winograd_forward] the 3x3 kernel is larger than the padded input {(H + 2 * ph, W + 2 * pw)}")
    v = _input_tiles(x, ph, pw, P, Q)  # (4, 4, N, C, TR, TC)
    TR, TC = v.shape[4:]
    u = winograd_transform_weight(weight)  # (4, 4, O, C)
    m = np.einsum("aboc,abncrs->abnors", u, v)  # the 16 products of depth C
    at = AT.astype(x.dtype)
    tiles = np.einsum("ia,abnors,jb->norisj", at, m, at)  # (N, O, TR, 2, TC, 2)
    y = tiles.reshape(N, weight.shape[0], 2 * TR, 2 * TC)[:, :, :P, :Q]
    if bias is not None:
        y = y + bias[:, None, None]
    return np.ascontiguousarray(y)


def conv3x3_winograd_input_grad(grad_out, weight, padding=1):
    """The input gradient of conv3x3_winograd_forward(x, weight, padding=padding), padding <= 2: the
    convolution of grad_out (N, O, P, Q) with weight rotated by 180 degrees as (C, O, 3, 3), padding 2 - p.
    Returns (N, C, P - 2 ph + 2, Q - 2 pw + 2)."""
    ph, pw = _padding(padding)
    if ph > 2 or pw > 2:
        raise ValueError(f"[conv3x3_winograd_input_grad] padding must be <= 2, got {padding}")
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return conv3x3_winograd_forward(grad_out, flipped, padding=(2 - ph, 2 - pw))


def conv3x3_winograd_weight_grad(grad_out, x, padding=1):
    """dW (O, C, 3, 3) of conv3x3_winograd_forward(x, weight, padding=padding) for its grad_out
    (N, O, P, Q), by the transposed transform: dW[o, c] = G^T (sum_t (A dY A^T)[o, t] * V[c, t]) G."""
    if x.ndim != 4 or grad_out.ndim != 4:
        raise ValueError(f"[conv3x3_winograd_weight_grad] x and grad_out must be 4-D, got {x.shape}, {grad_out.shape}")
    ph, pw = _padding(padding)
    N, C, H, W = x.shape
    P, Q = H + 2 * ph - 2, W + 2 * pw - 2
    if P < 1 or Q < 1:
        raise ValueError(f"[conv3x3_winograd_weight_grad] the 3x3 kernel is larger than the padded input {(H + 2 * ph, W + 2 * pw)}")
    if grad_out.shape[0] != N or grad_out.shape[2:] != (P, Q):
        raise ValueError(f"[conv3x3_winograd_weight_grad] grad_out must be ({N}, O, {P}, {Q}), got {grad_out.shape}")
    v = _input_tiles(x, ph, pw, P, Q)  # (4, 4, N, C, TR, TC)
    TR, TC = v.shape[4:]
    dy = np.zeros((N, grad_out.shape[1], 2 * TR, 2 * TC), x.dtype)
    dy[:, :, :P, :Q] = grad_out
    dy = dy.reshape(N, -1, TR, 2, TC, 2)  # (N, O, TR, i, TC, j)
    a = AT.T.astype(x.dtype)  # A (4 x 2)
    dm = np.einsum("ai,norisj,bj->abnors", a, dy, a)
    du = np.einsum("abnors,abncrs->aboc", dm, v)
    g = G.astype(x.dtype)
    return np.ascontiguousarray(np.einsum("ai,aboc,bj->ocij", g, du, g))
