"""fastnn.hvp / gnvp / hessian / hessian_eigenvalues / loss_and_grad on whole models: against
finite differences of gradients, torch's double backward, symmetry, PSD-ness, batching, state
restoration, the Python-layer fallback and bad input."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from tests.conftest import requires_torch

F64 = np.float64


def mlp(dtype=F64, act=nn.Tanh, seed=0, sizes=(4, 5, 3), bn=False):
    rng = np.random.default_rng(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            if bn:
                mods.append(nn.BatchNorm1d(b, dtype=dtype))
            mods.append(act(dtype=dtype))
    m = nn.Sequential(*mods)
    buf = m.flatten_parameters_()
    buf.params[...] = rng.standard_normal(buf.params.size) * 0.7
    return m


def data(n=11, d=4, c=3, seed=1, dtype=F64, kind="labels"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    if kind == "labels":
        return X, rng.integers(0, c, n)
    if kind == "probs":
        p = rng.random((n, c))
        return X, (p / p.sum(1, keepdims=True)).astype(dtype)
    if kind == "binary":
        return X, (rng.random((n, c)) > 0.5).astype(dtype)
    return X, rng.standard_normal((n, c)).astype(dtype)


def fd_hessian(model, loss, X, y, eps=1e-5, **kw):
    buf = model.flatten_parameters_()
    theta = buf.params.copy()
    n = theta.size
    H = np.zeros((n, n))
    for i in range(n):
        g = []
        for t in (eps, -eps):
            buf.params[...] = theta
            buf.params[i] += t
            g.append(fastnn.loss_and_grad(model, loss, X, y, **kw)[1])
        H[:, i] = (g[0] - g[1]) / (2 * eps)
    buf.params[...] = theta
    return H


CASES = [("cross_entropy", "labels"), ("cross_entropy", "probs"), ("bce_with_logits", "binary"), ("mse", "values")]


@pytest.mark.parametrize("loss,kind", CASES)
def test_hessian_matches_finite_differences(loss, kind):
    m = mlp()
    X, y = data(kind=kind)
    H = fastnn.hessian(m, loss, X, y)
    np.testing.assert_allclose(H, fd_hessian(m, loss, X, y), atol=1e-7 * (1 + np.abs(H).max()), rtol=1e-5)
    v = np.random.default_rng(2).standard_normal(H.shape[0])
    np.testing.assert_allclose(fastnn.hvp(m, loss, X, y, v), H @ v, atol=1e-10 * (1 + np.abs(H).sum()))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_objects_and_reduction(reduction):
    m = mlp()
    X, y = data()
    H = fastnn.hessian(m, nn.CrossEntropyLoss(reduction=reduction), X, y)
    np.testing.assert_allclose(H, fd_hessian(m, nn.CrossEntropyLoss(reduction=reduction), X, y),
                               atol=1e-7 * (1 + np.abs(H).max()), rtol=1e-5)
    if reduction == "sum":
        np.testing.assert_allclose(H / len(X), fastnn.hessian(m, "cross_entropy", X, y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("bn,act", [(True, nn.ReLU), (False, nn.ReLU), (True, nn.ELU)])
def test_batchnorm_and_relu_models(bn, act):
    """Training-mode BatchNorm (batch statistics' dependence) and a fused Linear+ReLU."""
    m = mlp(bn=bn, act=act, sizes=(3, 4, 3, 3))
    X, y = data(n=9, d=3)
    H = fastnn.hessian(m, "cross_entropy", X, y)
    np.testing.assert_allclose(H, fd_hessian(m, "cross_entropy", X, y), atol=2e-7 * (1 + np.abs(H).max()),
                               rtol=1e-5)
    if bn:  # eval mode: BatchNorm is the running statistics' affine
        He = fastnn.hessian(m, "cross_entropy", X, y, training=False)
        np.testing.assert_allclose(He, fd_hessian(m, "cross_entropy", X, y, training=False),
                                   atol=2e-7 * (1 + np.abs(He).max()), rtol=1e-5)


def test_symmetry_and_batches():
    m = mlp(sizes=(4, 8, 3))
    X, y = data(n=13)
    rng = np.random.default_rng(3)
    n = m.flatten_parameters_().params.size
    v, w = rng.standard_normal(n), rng.standard_normal(n)
    hv, hw = fastnn.hvp(m, "cross_entropy", X, y, v), fastnn.hvp(m, "cross_entropy", X, y, w)
    terms = np.abs(v) @ np.abs(hw) + 1
    assert abs(v @ hw - w @ hv) <= 1e-12 * terms
    hv_batched = fastnn.hvp(m, "cross_entropy", X, y, v, batch_size=4)  # 4 + 4 + 4 + 1, weighted as the mean
    np.testing.assert_allclose(hv_batched, hv, atol=1e-13 * (1 + np.abs(hv).max()))


def test_gauss_newton_is_psd_and_exact_for_a_linear_model():
    m = mlp(sizes=(4, 7, 3), act=nn.Tanh)
    X, y = data(n=10)
    rng = np.random.default_rng(4)
    n = m.flatten_parameters_().params.size
    for _ in range(5):
        v = rng.standard_normal(n)
        gv = fastnn.gnvp(m, "cross_entropy", X, y, v)
        assert v @ gv >= -1e-12 * (1 + np.abs(v) @ np.abs(gv))
    lin = nn.Sequential(nn.Linear(4, 3, dtype=F64))
    Xm, ym = data(n=10, kind="values")
    v = rng.standard_normal(15)
    np.testing.assert_allclose(fastnn.gnvp(lin, "mse", Xm, ym, v), fastnn.hvp(lin, "mse", Xm, ym, v), atol=1e-12)


def test_state_gradients_and_parameters_are_restored():
    m = mlp(bn=True, sizes=(4, 6, 3), act=nn.ReLU)
    X, y = data(n=8)
    buf = m.flatten_parameters_()
    buf.grads[...] = 7.0
    before = {k: np.array(a) for k, a in m._layer.state()}
    params = buf.params.copy()
    fastnn.hvp(m, "cross_entropy", X, y, np.ones(buf.params.size))
    fastnn.gnvp(m, "cross_entropy", X, y, np.ones(buf.params.size))
    assert (buf.grads == 7.0).all()
    assert (buf.params == params).all()
    for k, a in m._layer.state():
        np.testing.assert_array_equal(a, before[k])


def test_frozen_parameters_are_constants():
    m = mlp(sizes=(4, 5, 3))
    X, y = data()
    H = fastnn.hessian(m, "cross_entropy", X, y)
    first = m[0]
    for p in first.parameters():
        p.requires_grad = False
    first._rebind()
    k = first._layer.num_params()
    Hf = fastnn.hessian(m, "cross_entropy", X, y)
    assert not Hf[:k].any() and not Hf[:, :k].any()
    np.testing.assert_allclose(Hf[k:, k:], H[k:, k:], rtol=1e-12, atol=1e-14)


def test_v_is_read_not_changed_even_when_it_is_a_model_buffer():
    """v may be the model's own gradient or parameter buffer (H g, H theta): the passes zero the
    gradients and a Python layer's fallback moves the parameters, so such a v is copied first;
    an ordinary v is not changed (not even its frozen entries)."""
    m = mlp(sizes=(4, 5, 3))
    X, y = data()
    buf = m.flatten_parameters_()
    buf.grads[...] = np.random.default_rng(3).standard_normal(buf.grads.size)
    for v in (buf.grads, buf.params):
        want = fastnn.hvp(m, "cross_entropy", X, y, v.copy())
        np.testing.assert_array_equal(fastnn.hvp(m, "cross_entropy", X, y, v), want)
    for p in m[0].parameters():
        p.requires_grad = False
    m[0]._rebind()
    v = np.ones(buf.params.size)
    hv = fastnn.hvp(m, "cross_entropy", X, y, v)
    assert (v == 1).all() and not hv[:m[0]._layer.num_params()].any()


def test_loss_and_grad_matches_fit_gradient():
    m = mlp()
    X, y = data()
    loss, g = fastnn.loss_and_grad(m, "cross_entropy", X, y, batch_size=4)
    assert loss == pytest.approx(fastnn.evaluate(m, X, y)["loss"], rel=1e-12)
    buf = m.flatten_parameters_()
    theta = buf.params.copy()
    for i in (0, 7, theta.size - 1):
        lp = []
        for t in (1e-6, -1e-6):
            buf.params[...] = theta
            buf.params[i] += t
            lp.append(fastnn.loss_and_grad(m, "cross_entropy", X, y)[0])
        assert g[i] == pytest.approx((lp[0] - lp[1]) / 2e-6, rel=1e-5, abs=1e-9)
    buf.params[...] = theta


class PythonTanh(nn.Module):
    """tanh written in Python: no R-operator, so the C++ products cannot run through it."""

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, g):
        return g * (1 - self.y ** 2)


def test_python_layer_falls_back_to_gradient_differences():
    exact = mlp(sizes=(4, 5, 3))
    py = nn.Sequential(nn.Linear(4, 5, dtype=F64), PythonTanh(), nn.Linear(5, 3, dtype=F64))
    py.flatten_parameters_().params[...] = exact.flatten_parameters_().params
    assert not py._layer.has_rop
    X, y = data()
    v = np.random.default_rng(5).standard_normal(exact.flatten_parameters_().params.size)
    want = fastnn.hvp(exact, "cross_entropy", X, y, v)
    got = fastnn.hvp(py, "cross_entropy", X, y, v)
    np.testing.assert_allclose(got, want, atol=1e-5 * (1 + np.abs(want).max()))
    with pytest.raises(ValueError, match="Gauss-Newton product needs every layer"):
        fastnn.gnvp(py, "cross_entropy", X, y, v)


def test_float32_within_sum_scaled_tolerance():
    m64 = mlp(sizes=(4, 6, 3))
    m32 = mlp(dtype=np.float32, sizes=(4, 6, 3))
    m32.flatten_parameters_().params[...] = m64.flatten_parameters_().params
    X, y = data(n=20)
    v = np.random.default_rng(6).standard_normal(m64.flatten_parameters_().params.size)
    want = fastnn.hvp(m64, "cross_entropy", X, y, v)
    got = fastnn.hvp(m32, "cross_entropy", X.astype(np.float32), y, v.astype(np.float32))
    assert got.dtype == np.float32
    H = fastnn.hessian(m64, "cross_entropy", X, y)
    terms = np.abs(H) @ np.abs(v) + np.abs(want) + 1  # the products' terms, roughly
    assert (np.abs(got - want) <= 1e-4 * terms).all()


def test_eigenvalues_match_the_dense_hessian():
    m = mlp(sizes=(4, 5, 3))
    X, y = data()
    H = fastnn.hessian(m, "cross_entropy", X, y)
    ev = np.linalg.eigvalsh(H)
    top = fastnn.hessian_eigenvalues(m, "cross_entropy", X, y, k=3, tol=1e-10)
    np.testing.assert_allclose(top, ev[::-1][:3], rtol=1e-7, atol=1e-9)
    low, vecs = fastnn.hessian_eigenvalues(m, "cross_entropy", X, y, k=2, which="SA", tol=1e-10,
                                           return_eigenvectors=True)
    np.testing.assert_allclose(low, ev[:2], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(H @ vecs, vecs * low, atol=1e-6 * (1 + np.abs(ev).max()))
    lm = fastnn.hessian_eigenvalues(m, "cross_entropy", X, y, k=1, which="LM", tol=1e-10)
    assert abs(lm[0]) == pytest.approx(np.abs(ev).max(), rel=1e-7)


def test_bad_input():
    m = mlp()
    X, y = data()
    n = m.flatten_parameters_().params.size
    with pytest.raises(ValueError, match=f"flat vector of the model's {n} parameters"):
        fastnn.hvp(m, "cross_entropy", X, y, np.ones(n + 1))
    with pytest.raises(TypeError, match="must be float64"):
        fastnn.hvp(m, "cross_entropy", X, y, np.ones(n, np.float32))
    with pytest.raises(ValueError, match="NaN or infinity"):
        v = np.ones(n)
        v[3] = np.nan
        fastnn.hvp(m, "cross_entropy", X, y, v)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fastnn.hvp(m, "cross_entropy", X, y, [1.0] * n)
    with pytest.raises(ValueError, match="unknown loss"):
        fastnn.hvp(m, "hinge", X, y, np.ones(n))
    with pytest.raises(ValueError, match="max_params"):
        fastnn.hessian(m, "cross_entropy", X, y, max_params=10)
    with pytest.raises(ValueError, match="which must be"):
        fastnn.hessian_eigenvalues(m, "cross_entropy", X, y, which="XX")
    with pytest.raises(ValueError, match="batch_size"):
        fastnn.hvp(m, "cross_entropy", X, y, np.ones(n), batch_size=0)
    with pytest.raises(ValueError, match="class index"):
        fastnn.hvp(m, "cross_entropy", X, y + 5, np.ones(n))


@pytest.mark.parametrize("fn", ["hvp", "gnvp", "loss_and_grad", "curvature_operator"])
def test_bad_data(fn):
    """The per-call checks of X, y and the model, shared by every entry point (_Problem)."""
    m = mlp()
    X, y = data()
    n = m.flatten_parameters_().params.size
    call = getattr(fastnn, fn)
    extra = (np.ones(n),) if fn in ("hvp", "gnvp") else ()
    bad = X.copy()
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first at index \(4, 2\)\)"):
        call(m, "cross_entropy", bad, y, *extra)
    # the output width comes from shape inference now: the same message as the forward's
    with pytest.raises(ValueError, match=r"X has shape \(11, 5\): \[Linear\] expected input \(N, 4\), got \(1, 5\)"):
        call(m, "cross_entropy", np.ones((11, 5)), y, *extra)
    with pytest.raises(ValueError, match="must have 11 entries"):
        call(m, "cross_entropy", X, y[:-1], *extra)
    with pytest.raises(ValueError, match=r"y\[2\] = -1 is not a class index in \[0, 3\)"):
        call(m, "cross_entropy", X, np.where(np.arange(11) == 2, -1, y), *extra)
    with pytest.raises(ValueError, match=r"y\[0\] = 3 is not a class index in \[0, 3\) \(the model has 3 outputs\)"):
        call(m, "cross_entropy", X, np.full(11, 3), *extra)
    with pytest.raises(TypeError, match="class labels must be integers"):
        call(m, "cross_entropy", X, y.astype(np.float64), *extra)
    with pytest.raises(ValueError, match="must have 3 values per sample"):
        call(m, "mse", X, np.ones((11, 2)), *extra)
    with pytest.raises(TypeError, match="must be a fastnn.nn loss"):
        call(m, object(), X, y, *extra)
    with pytest.raises(ValueError, match="no parameters"):
        call(nn.Sequential(nn.ReLU()), "mse", X, X, *(() if not extra else (np.ones(0),)))
    if extra:  # a C++ error that is not the data's passes through the deferred checks unchanged
        with pytest.raises(ValueError, match=r"\[hvp\] loss must be 'cross_entropy', 'bce_with_logits' or 'mse', got 'nll'"):
            call(m, "nll", X, y, *extra)


def test_loss_by_name_and_object_agree():
    """A loss name's (reduction, kernel) is cached between calls; an object's is read per call."""
    m = mlp()
    X, y = data()
    v = np.random.default_rng(3).standard_normal(m.flatten_parameters_().params.size)
    by_name = fastnn.hvp(m, "cross_entropy", X, y, v)
    np.testing.assert_array_equal(fastnn.hvp(m, "cross_entropy", X, y, v), by_name)
    np.testing.assert_array_equal(fastnn.hvp(m, nn.CrossEntropyLoss(), X, y, v), by_name)
    summed = fastnn.hvp(m, nn.CrossEntropyLoss(reduction="sum"), X, y, v)  # scaled once per element: a few ulps
    np.testing.assert_allclose(summed, by_name * len(X), rtol=0, atol=1e-13 * len(X) * np.abs(by_name).max())
    assert not np.allclose(summed, by_name)


@requires_torch
@pytest.mark.parametrize("loss,kind", CASES)
def test_matches_torch_double_backward(loss, kind):
    import torch

    m = mlp(sizes=(4, 6, 3), act=nn.Tanh)
    X, y = data(n=12, kind=kind)
    params = [torch.tensor(np.array(p.data)) for p in m.parameters()]
    shapes = [p.shape for p in params]
    flat0 = torch.cat([p.reshape(-1) for p in params])

    def f(flat):
        ps, o = [], 0
        for s in shapes:
            k = int(np.prod(s))
            ps.append(flat[o:o + k].reshape(s))
            o += k
        h = torch.tanh(torch.tensor(X) @ ps[0].T + ps[1])
        z = h @ ps[2].T + ps[3]
        if loss == "cross_entropy":
            t = torch.tensor(y)
            return torch.nn.functional.cross_entropy(z, t)
        if loss == "bce_with_logits":
            return torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(y))
        return torch.nn.functional.mse_loss(z, torch.tensor(y))

    v = np.random.default_rng(7).standard_normal(flat0.numel())
    _, want = torch.autograd.functional.hvp(f, flat0, torch.tensor(v))
    got = fastnn.hvp(m, loss, X, y, v)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-9, atol=1e-12 * (1 + np.abs(got).max()))
