"""fastnn.curvature_operator: H v / G v with the model, loss and data checked once; each product
is fastnn.hvp's / gnvp's at the parameters' current values, and the checks that stay per product
(v, the model's parameters, requires_grad) still raise or apply."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from tests.curvature.test_hvp import PythonTanh, data, mlp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gauss_newton", [False, True])
def test_products_are_hvp_at_the_current_parameters(dtype, gauss_newton):
    m = mlp(dtype=dtype, sizes=(4, 6, 3))
    X, y = data(n=13, dtype=dtype)
    op = fastnn.curvature_operator(m, "cross_entropy", X, y, gauss_newton=gauss_newton)
    reference = fastnn.gnvp if gauss_newton else fastnn.hvp
    n = m.flat_parameters().size
    assert op.shape == (n, n) and op.dtype == dtype
    rng = np.random.default_rng(3)
    for _ in range(2):  # the same computation as the one-shot call: bit for bit
        v = rng.standard_normal(n).astype(dtype)
        np.testing.assert_array_equal(op(v), reference(m, "cross_entropy", X, y, v))
        m.flat_parameters()[...] += dtype(0.3)  # the next product is at the moved point
    np.testing.assert_array_equal(op.matvec(v[:, None])[:, 0], reference(m, "cross_entropy", X, y, v))


def test_frozen_parameters_are_read_per_product():
    m = mlp(sizes=(4, 5, 3))
    X, y = data()
    op = fastnn.curvature_operator(m, "mse", X, data(kind="values")[1])
    v = np.ones(m.flat_parameters().size)
    assert (op(v)[:20] != 0).any()
    m[0].weight.requires_grad = False
    got = op(v)
    np.testing.assert_array_equal(got[:20], 0)
    np.testing.assert_array_equal(got, fastnn.hvp(m, "mse", X, data(kind="values")[1], v))


def test_scipy_linear_operator_eigenvalue():
    sla = pytest.importorskip("scipy.sparse.linalg")
    m = mlp(sizes=(4, 5, 3))
    X, y = data()
    top = np.linalg.eigvalsh(fastnn.hessian(m, "cross_entropy", X, y))[-1]
    op = sla.aslinearoperator(fastnn.curvature_operator(m, "cross_entropy", X, y))
    got = sla.eigsh(op, k=1, which="LA", tol=1e-12)[0][0]
    assert got == pytest.approx(top, rel=1e-8)


def test_bad_input():
    m = mlp()
    X, y = data()
    n = m.flat_parameters().size
    op = fastnn.curvature_operator(m, "cross_entropy", X, y)
    with pytest.raises(ValueError, match=f"flat vector of the model's {n} parameters"):
        op(np.ones(n + 1))
    with pytest.raises(TypeError, match="must be float64"):
        op(np.ones(n, np.float32))
    v = np.ones(n)
    v[2] = np.inf
    with pytest.raises(ValueError, match="NaN or infinity"):
        op(v)
    with pytest.raises(ValueError, match="class index"):
        fastnn.curvature_operator(m, "cross_entropy", X, y + 5)
    X_bad = X.copy()
    X_bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        fastnn.curvature_operator(m, "cross_entropy", X_bad, y)
    m.append(nn.Linear(3, 2, dtype=np.float64))  # a parameter more: the checked model is not this one
    with pytest.raises(ValueError, match="parameters changed"):
        op(np.ones(n))
    m = mlp()
    op = fastnn.curvature_operator(m, "cross_entropy", X, y)
    m.float()  # re-packed in float32
    with pytest.raises(ValueError, match="parameters changed"):
        op(np.ones(n))


def test_gauss_newton_needs_the_r_operator():
    py = nn.Sequential(nn.Linear(4, 5, dtype=np.float64), PythonTanh(), nn.Linear(5, 3, dtype=np.float64))
    X, y = data()
    with pytest.raises(ValueError, match="Gauss-Newton product needs every layer"):
        fastnn.curvature_operator(py, "cross_entropy", X, y, gauss_newton=True)
    v = np.ones(py.flat_parameters().size)
    np.testing.assert_array_equal(fastnn.curvature_operator(py, "cross_entropy", X, y)(v),
                                  fastnn.hvp(py, "cross_entropy", X, y, v))
