"""Winograd F(2x2, 3x3) convolution (kernels/conv_winograd.h): the 3x3, stride-1, undilated,
ungrouped cross-correlation of reference/conv.py computed on 4x4 input tiles that overlap by 2.

With d a 4x4 tile of channel c of the zero-padded input (rows 2r.., columns 2s..) and g = W[o, c]:
    U[o, c] = G g G^T,  V[c, t] = B^T d B,  y tile (2x2) = A^T (sum_c U[o, c] * V[c, t]) A,
    G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],  B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
    A^T = [1 1 1 0; 0 1 -1 -1].
The sum over c of the 16 elementwise products is 16 matrix products of depth C. The output is cut
to P x Q = (H + 2 ph - 2) x (W + 2 pw - 2) (a last, half-used tile when P or Q is odd).
With 64 or more output channels the forward (and so the input gradient) uses F(4x4, 3x3) instead:
6x6 tiles overlapping by 2, each giving 4x4 outputs, 36 products per tile (`output_tile`), with
    G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
    B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
    A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
(the points 0, +-1, +-2: its rounding stays within the same bound, tests/kernels/test_conv_winograd.py).
The input gradient of such a convolution is one too: the convolution of grad_out with the kernel
rotated by 180 degrees and its channels swapped, padding 2 - p (`conv3x3_winograd_input_grad`).
The weight gradient is the transposed transform of the forward (`conv3x3_winograd_weight_grad`):
    dM[o, t] = A dY[o, t] A^T (dY: the 2x2 tile t of grad_out, zero beyond P, Q),
    dU[o, c] = sum over the tiles (and images) of dM[o, t] * V[c, t],  dW[o, c] = G^T dU[o, c] G.
"""

import numpy as np

__all__ = ["conv3x3_winograd_forward", "conv3x3_winograd_input_grad", "conv3x3_winograd_weight_grad",
           "winograd_transform_weight", "output_tile"]

G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
BT4 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]])
AT4 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
_MATRICES = {2: (G, BT, AT), 4: (G4, BT4, AT4)}


def output_tile(out_channels):
    """The forward's output tile m (F(m x m, 3x3)): 4 for 64 or more output channels, else 2."""
    return 4 if out_channels >= 64 else 2


def _padding(padding):
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    if ph < 0 or pw < 0:
        raise ValueError(f"[conv3x3_winograd_forward] padding must be >= 0, got {padding}")
    return int(ph), int(pw)


def winograd_transform_weight(weight, m=2):
    """U (m+2, m+2, O, C) = G g G^T for each 3x3 kernel g = weight[o, c] (weight (O, C, 3, 3)), F(m x m)."""
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"[conv3x3_winograd_forward] weight must be (O, C, 3, 3), got {weight.shape}")
    g = _MATRICES[m][0].astype(weight.dtype)
    return np.einsum("ai,ocij,bj->aboc", g, weight, g)


def _input_tiles(x, ph, pw, P, Q, m=2):
    """V (m+2, m+2, N, C, TR, TC) = B^T d B of the (m+2)x(m+2) tiles d of the padded x for a P x Q output."""
    N, C, H, W = x.shape
    TR, TC = -(-P // m), -(-Q // m)
    plane = np.zeros((N, C, m * TR + 2, m * TC + 2), x.dtype)
    plane[:, :, ph:ph + H, pw:pw + W] = x
    rows = m * np.arange(TR)[:, None] + np.arange(m + 2)  # (TR, m + 2): the tiles' rows in the plane
    cols = m * np.arange(TC)[:, None] + np.arange(m + 2)
    d = plane[:, :, rows[:, :, None, None], cols[None, None, :, :]]  # (N, C, TR, m + 2, TC, m + 2)
    bt = _MATRICES[m][1].astype(x.dtype)
    return np.einsum("ai,ncrisj,bj->abncrs", bt, d, bt)


def conv3x3_winograd_forward(x, weight, bias=None, padding=1, m=None):
    """y = conv2d(x, weight, bias, stride=1, padding=padding) by Winograd F(m x m, 3x3).

    Args:
        x: (N, C, H, W) float32/float64; weight: (O, C, 3, 3), same dtype; bias: (O,) or None.
        padding: int or (ph, pw), >= 0.
        m: the output tile, 2 or 4; None: output_tile(O), as the C++ kernel.
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
    m = output_tile(weight.shape[0]) if m is None else m
    if m not in _MATRICES:
        raise ValueError(f"[conv3x3_winograd_forward] m must be 2 or 4, got {m}")
    v = _input_tiles(x, ph, pw, P, Q, m)  # (m+2, m+2, N, C, TR, TC)
    TR, TC = v.shape[4:]
    u = winograd_transform_weight(weight, m)  # (m+2, m+2, O, C)
    prod = np.einsum("aboc,abncrs->abnors", u, v)  # the (m+2)^2 products of depth C
    at = _MATRICES[m][2].astype(x.dtype)
    tiles = np.einsum("ia,abnors,jb->norisj", at, prod, at)  # (N, O, TR, m, TC, m)
    y = tiles.reshape(N, weight.shape[0], m * TR, m * TC)[:, :, :P, :Q]
    if bias is not None:
        y = y + bias[:, None, None]
    return np.ascontiguousarray(y)


def conv3x3_winograd_input_grad(grad_out, weight, padding=1):
    """The input gradient of conv3x3_winograd_forward(x, weight, padding=padding), padding <= 2: the
    convolution of grad_out (N, O, P, Q) with weight rotated by 180 degrees as (C, O, 3, 3), padding 2 - p
    (so with the output tile of C output channels). Returns (N, C, P - 2 ph + 2, Q - 2 pw + 2)."""
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
