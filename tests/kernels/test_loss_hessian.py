"""Loss curvature kernels (functional.loss_hessian) against reference/loss_hessian.py, float32 and
float64, batch size 1, PSD, bad input."""

import numpy as np
import pytest

from fastnn import functional as F
from fastnn import reference as R
from tests.conftest import DTYPES, assert_sum_close


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 3), (33, 10)])
def test_matches_reference(dtype, shape):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    r = rng.standard_normal(shape).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    probs = rng.random(shape).astype(dtype)
    c = shape[1]
    terms = np.abs(r).sum(axis=1, keepdims=True) * 2 + np.abs(r)
    assert_sum_close(F.cross_entropy_hessian_vector(z, labels, r, 0.25),
                     R.cross_entropy_hessian_vector(z, labels, r, 0.25).astype(dtype), terms, c, dtype)
    assert_sum_close(F.cross_entropy_hessian_vector(z, probs, r, 0.25),
                     R.cross_entropy_hessian_vector(z, probs, r, 0.25).astype(dtype),
                     terms * probs.sum(axis=1, keepdims=True), c, dtype)
    assert_sum_close(F.bce_with_logits_hessian_vector(z, r, 0.5), R.bce_with_logits_hessian_vector(z, r, 0.5).astype(dtype),
                     np.abs(r), 4, dtype)
    assert_sum_close(F.mse_hessian_vector(r, 0.5), R.mse_hessian_vector(r, 0.5).astype(dtype), np.abs(r), 1, dtype)


def test_cross_entropy_curvature_is_psd():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((9, 4))
    for _ in range(5):
        r = rng.standard_normal((9, 4))
        assert (r * F.cross_entropy_hessian_vector(z, rng.integers(0, 4, 9), r)).sum() >= -1e-14


def test_bad_input():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[cross_entropy_hessian_vector\] r must have the shape of the logits"):
        F.cross_entropy_hessian_vector(z, np.zeros(3, np.int64), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="label 4 is not a class index"):
        F.cross_entropy_hessian_vector(z, np.array([0, 4, 1]), z)
    with pytest.raises(TypeError, match="float64"):
        F.bce_with_logits_hessian_vector(z, z.astype(np.float32))
    with pytest.raises(ValueError, match="scale must be finite"):
        F.mse_hessian_vector(z, float("nan"))
