"""Reference im2col / col2im: the layout formula element by element, the adjoint identity, PyTorch's unfold/fold."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import DTYPES, assert_sum_close, random_array, requires_torch

# (N, C, H, W), kernel_size, stride, padding, dilation: square and not, batch 1, a kernel larger than
# the unpadded input, stride past the last full window, dilation with padding.
CASES = [
    ((1, 1, 1, 1), 1, 1, 0, 1),
    ((2, 3, 5, 4), 3, 1, 1, 1),
    ((1, 2, 7, 6), (3, 2), (2, 1), (1, 0), (1, 2)),
    ((2, 1, 2, 3), 5, 1, 2, 1),  # H, W < kernel, padding makes it fit
    ((1, 3, 8, 9), 3, 3, 2, 2),
    ((3, 2, 6, 5), 1, 2, 0, 1),
    ((1, 2, 4, 4), 2, 2, 1, 1),
    ((2, 2, 9, 7), 7, 2, 3, 1),
]


def spec_im2col(x, kernel_size, stride, padding, dilation):
    """The layout formula of reference/im2col.py, one gathered element per entry (no tap loop)."""
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(pair, (kernel_size, stride, padding, dilation))
    N, C, H, W = x.shape
    P = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Q = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n, p, q, c, i, j = np.meshgrid(*map(np.arange, (N, P, Q, C, kh, kw)), indexing="ij")
    h, w = p * sh + i * dh - ph, q * sw + j * dw - pw
    inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
    vals = np.where(inside, x[n, c, np.clip(h, 0, H - 1), np.clip(w, 0, W - 1)], 0)
    return vals.reshape(N * P * Q, C * kh * kw)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_im2col_is_the_layout_formula(rng, case, dtype):
    shape, *geometry = case
    x = random_array(rng, shape, dtype)
    cols = R.im2col(x, *geometry)
    assert cols.dtype == dtype
    np.testing.assert_array_equal(cols, spec_im2col(x, *geometry))  # a copy: exact


@pytest.mark.parametrize("case", CASES)
def test_col2im_is_the_adjoint(rng, case):
    shape, *geometry = case
    x = random_array(rng, shape, np.float64)
    cols = R.im2col(x, *geometry)
    y = random_array(rng, cols.shape, np.float64)
    back = R.col2im(y, shape, *geometry)
    assert back.shape == shape and back.dtype == np.float64
    lhs, rhs = np.sum(cols * y), np.sum(x * back)
    assert_sum_close(rhs, lhs, np.sum(np.abs(cols * y)), cols.size)
    # and the transpose of im2col's matrix, built column by column from unit images
    if x.size <= 64:
        A = np.stack([R.im2col(e.reshape(shape), *geometry).ravel() for e in np.eye(x.size)], axis=1)
        np.testing.assert_allclose(back.ravel(), A.T @ y.ravel(), rtol=1e-12, atol=1e-12)


@requires_torch
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_torch_unfold_and_fold(rng, case, dtype):
    import torch
    from torch.nn.functional import fold, unfold

    shape, k, s, p, d = case
    x = random_array(rng, shape, dtype)
    cols = R.im2col(x, k, s, p, d)
    t = unfold(torch.tensor(x), k, dilation=d, padding=p, stride=s).numpy()  # (N, C*kh*kw, P*Q)
    np.testing.assert_array_equal(cols, t.transpose(0, 2, 1).reshape(cols.shape))
    y = random_array(rng, cols.shape, dtype)
    ty = torch.tensor(y.reshape(shape[0], -1, y.shape[1]).transpose(0, 2, 1).copy())
    expected = fold(ty, shape[2:], k, dilation=d, padding=p, stride=s).numpy()
    kk = np.prod(np.broadcast_to(k, 2))  # at most kh*kw taps land on one pixel
    assert_sum_close(R.col2im(y, shape, k, s, p, d), expected, R.col2im(np.abs(y), shape, k, s, p, d), kk)


def test_conv_output_size():
    assert R.conv_output_size((28, 28), 3, 1, 1) == (28, 28)
    assert R.conv_output_size((7, 5), (3, 2), (2, 1), (1, 0), (1, 2)) == (4, 3)
    assert R.conv_output_size((2, 2), 5, 1, 2) == (2, 2)
    assert R.conv_output_size((5, 5), 3, 3) == (1, 1)


def test_bad_arguments():
    x = np.zeros((1, 2, 3, 3))
    with pytest.raises(ValueError, match=r"\[im2col\] the \(dilated\) kernel \(7, 7\) is larger than the padded input \(5, 5\)"):
        R.im2col(x, 3, 1, 1, 3)
    with pytest.raises(ValueError, match=r"\[im2col\] the \(dilated\) kernel \(4, 4\) is larger than the padded input \(3, 3\)"):
        R.im2col(x, 4)
    with pytest.raises(ValueError, match=r"\[im2col\] x must be \(N, C, H, W\), got \(2, 3, 3\)"):
        R.im2col(x[0], 1)
    with pytest.raises(ValueError, match=r"\[im2col\] stride must be >= 1, got 0"):
        R.im2col(x, 1, stride=0)
    with pytest.raises(ValueError, match=r"\[im2col\] padding must be >= 0, got \(1, -1\)"):
        R.im2col(x, 1, padding=(1, -1))
    with pytest.raises(TypeError, match=r"\[im2col\] kernel_size must be an int or a pair of ints, got 1.5"):
        R.im2col(x, 1.5)
    with pytest.raises(TypeError, match=r"\[im2col\] dilation must be an int or a pair of ints, got \(1, 2, 3\)"):
        R.im2col(x, 1, dilation=(1, 2, 3))
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got True"):
        R.im2col(x, True)
    with pytest.raises(ValueError, match=r"\[col2im\] cols must be \(N\*P\*Q, C\*kh\*kw\) = \(9, 18\), got \(9, 9\)"):
        R.col2im(np.zeros((9, 9)), x.shape, 3, padding=1)
