"""Reference maxout: backward vs central differences (float64); forward and backward vs torch's max over groups."""

import numpy as np
import pytest

from fastnn import reference as R
from tests.conftest import assert_gradient, requires_torch


@pytest.mark.parametrize("n,c,pieces", [(1, 1, 1), (3, 4, 2), (2, 3, 5)])
def test_maxout_backward_matches_finite_differences(rng, n, c, pieces):
    x = rng.permutation(n * c * pieces).reshape(n, c * pieces) * 0.1  # distinct values: no ties within eps
    g = rng.standard_normal((n, c))
    y, argmax = R.maxout_forward(x, pieces)
    assert y.shape == (n, c) and argmax.dtype == np.int64
    assert_gradient(lambda: np.sum(g * R.maxout_forward(x, pieces)[0]), x, R.maxout_backward(g, argmax, pieces))


def test_maxout_ties_pick_the_first_piece():
    x = np.array([[1.0, 3.0, 3.0, 2.0, 2.0, 2.0]])
    y, argmax = R.maxout_forward(x, 3)
    np.testing.assert_array_equal(y, [[3.0, 2.0]])
    np.testing.assert_array_equal(argmax, [[1, 0]])
    np.testing.assert_array_equal(R.maxout_backward(np.array([[5.0, 7.0]]), argmax, 3), [[0, 5, 0, 7, 0, 0]])


@requires_torch
@pytest.mark.parametrize("pieces", [1, 2, 4])
def test_maxout_matches_torch(rng, pieces):
    import torch

    x = rng.standard_normal((5, 3 * pieces))
    g = rng.standard_normal((5, 3))
    t = torch.tensor(x, requires_grad=True)
    ty, targ = t.view(5, 3, pieces).max(dim=-1)
    ty.backward(torch.tensor(g))
    y, argmax = R.maxout_forward(x, pieces)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(argmax, targ.numpy())
    np.testing.assert_array_equal(R.maxout_backward(g, argmax, pieces), t.grad.numpy())
