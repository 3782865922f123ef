"""nn.Residual: out = body(x) + shortcut(x) (identity when None), as a C++ container."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from tests.conftest import DTYPES, assert_matches_torch, assert_model_gradient, assert_sum_close


def _mlp_residual(dtype, shortcut):
    fastnn.manual_seed(3)
    out = 3 if shortcut else 5
    body = nn.Sequential(nn.Linear(5, 7, dtype=dtype), nn.ReLU(), nn.Linear(7, out, dtype=dtype))
    return nn.Residual(body, nn.Linear(5, 3, dtype=dtype) if shortcut else None)


def _reference(model, x, g):
    """Output and input gradient of the Residual from NumPy in float64, and their terms (the same
    products over the operands' absolute values, with the ReLU mask of the real forward)."""
    lin1, lin2, short = model.body[0], model.body[2], model.shortcut
    params = [lin1.weight, lin1.bias, lin2.weight, lin2.bias] + ([short.weight, short.bias] if short else [])
    real = [np.asarray(p, np.float64) for p in params] + [x.astype(np.float64), g.astype(np.float64)]
    mask = real[-2] @ real[0].T + real[1] > 0

    def run(w1, b1, w2, b2, *rest):
        *ws, x, g = rest
        y = ((x @ w1.T + b1) * mask) @ w2.T + b2
        dx = ((g @ w2) * mask) @ w1
        if ws:
            return y + x @ ws[0].T + ws[1], dx + g @ ws[0]
        return y + x, dx + g

    return run(*real), run(*(np.abs(a) for a in real))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shortcut", [False, True])
@pytest.mark.parametrize("batch", [1, 6])
def test_forward_and_backward_match_numpy(rng, dtype, shortcut, batch):
    model = _mlp_residual(dtype, shortcut)
    x = rng.standard_normal((batch, 5)).astype(dtype)
    g = rng.standard_normal((batch, 3 if shortcut else 5)).astype(dtype)
    y = model(x)
    dx = model.backward(g)
    (y_ref, dx_ref), (y_terms, dx_terms) = _reference(model, x, g)
    k = (np.sqrt(6) + np.sqrt(8) + 1) ** 2  # two layers of fan-in 5+1 and 7+1, then the sum
    assert_sum_close(y, y_ref.astype(dtype), y_terms, k, dtype)
    assert_sum_close(dx, dx_ref.astype(dtype), dx_terms, k, dtype)


def _bn_residual(dtype=np.float64, shortcut=False):
    fastnn.manual_seed(7)
    body = nn.Sequential(nn.Linear(4, 6, dtype=dtype), nn.BatchNorm1d(6, dtype=dtype), nn.ReLU(),
                         nn.Linear(6, 4, dtype=dtype))
    return nn.Residual(body, nn.Linear(4, 4, bias=False, dtype=dtype) if shortcut else None)


@pytest.mark.parametrize("shortcut", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_gradient_matches_finite_differences(rng, shortcut, training):
    model = _bn_residual(shortcut=shortcut)
    bn = model.body[1]
    bn.weight.data[...] = rng.uniform(0.5, 1.5, 6)
    bn.bias.data[...] = rng.standard_normal(6)
    bn.running_mean[...] = rng.standard_normal(6)
    bn.running_var[...] = rng.uniform(0.5, 2, 6)
    model.train(training)
    x = rng.standard_normal((5, 4))
    w = rng.standard_normal((5, 4))

    assert_model_gradient(model, x, w)


def test_names_order_and_flat_buffer():
    model = _bn_residual(shortcut=True)
    assert list(model.state_dict()) == [
        "body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias", "body.1.running_mean", "body.1.running_var",
        "body.3.weight", "body.3.bias", "shortcut.weight"]
    flat = model.flat_parameters()
    assert flat.size == sum(p.size for p in model.parameters())
    assert all(np.shares_memory(flat, p.data) for p in model.parameters())
    assert [n for n, _ in model.named_children()] == ["body", "shortcut"]
    identity = nn.Residual(nn.ReLU())
    assert identity.shortcut is None and [n for n, _ in identity.named_children()] == ["body"]


class _Torch:
    """The same structure in torch: Residual(body, shortcut) as a torch.nn.Module."""

    @staticmethod
    def residual(torch, body, shortcut=None):
        class Residual(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = body
                self.shortcut = shortcut

            def forward(self, x):
                return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

        return Residual()


@pytest.mark.parametrize("shortcut", [False, True])
def test_against_torch(rng, shortcut):
    torch = pytest.importorskip("torch")
    model = _bn_residual(shortcut=shortcut)
    tn = torch.nn
    t_body = tn.Sequential(tn.Linear(4, 6), tn.BatchNorm1d(6), tn.ReLU(), tn.Linear(6, 4)).double()
    tmodel = _Torch.residual(torch, t_body, tn.Linear(4, 4, bias=False).double() if shortcut else None)
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})  # fastnn -> torch
    x = rng.standard_normal((8, 4))
    g = rng.standard_normal((8, 4))
    assert_matches_torch(model, tmodel, x, g, rtol=1e-10, atol=1e-12, grad_atol=1e-12, state=True)
    other = _bn_residual(shortcut=shortcut)  # torch -> fastnn
    with torch.no_grad():
        for p in tmodel.parameters():
            p.add_(1.0)
    other.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    other.eval()
    tmodel.eval()
    np.testing.assert_allclose(other(x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_mismatched_paths_are_a_value_error_naming_both_shapes(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\[Residual\] for an input of shape \(5, 4\) the body gives \(5, 3\) but the "
                                         r"identity shortcut gives \(5, 4\)"):
        nn.Residual(nn.Linear(4, 3))(x)
    with pytest.raises(ValueError, match=r"\[Residual\] .* body gives \(5, 3\) but the shortcut gives \(5, 2\)"):
        nn.Residual(nn.Linear(4, 3), nn.Linear(4, 2))(x)
    with pytest.raises(ValueError, match=r"\[Residual\]"):  # inside a Sequential too, and in fit
        fastnn.fit(nn.Sequential(nn.Residual(nn.Linear(4, 3)), nn.Linear(3, 2)), x, np.zeros(5, np.int64), epochs=1,
                   verbose=0)
    with pytest.raises(ValueError, match=r"\[Linear\]"):
        nn.Residual(nn.Linear(3, 3))(x)
    with pytest.raises(TypeError, match="Residual: child 'body' is a int"):
        nn.Residual(3)


class _Fn(nn.Module):
    """A Python-written module: forward and backward given as functions."""

    def __init__(self, fwd, bwd):
        super().__init__()
        self.fwd, self.bwd = fwd, bwd

    def forward(self, x):
        return self.fwd(x)

    def backward(self, g):
        return self.bwd(g)


def test_python_written_children_are_checked(rng):
    x = rng.standard_normal((5, 4)).astype(np.float32)
    model = nn.Residual(_Fn(lambda x: 2 * x, lambda g: 2 * g))
    np.testing.assert_array_equal(model(x), 3 * x)
    np.testing.assert_array_equal(model.backward(np.ones_like(x)), np.full_like(x, 3))
    with pytest.raises(ValueError, match=r"\[Residual\] for an input of shape \(5, 4\) the body gives \(5, 2\)"):
        nn.Residual(_Fn(lambda x: x[:, :2].copy(), lambda g: g))(x)
    with pytest.raises(ValueError, match=r"\[Residual\] body \(_Fn\) returned shape \(4, 4\) for an input of shape "
                                         r"\(5, 4\): its output must keep the batch \(5\)"):
        nn.Residual(_Fn(lambda x: x[:4].copy(), lambda g: g))(x)
    bad = nn.Residual(nn.Linear(4, 4), _Fn(lambda x: x, lambda g: g[:, :3].copy()))
    bad(x)
    with pytest.raises(ValueError, match=r"\[Residual\] shortcut \(_Fn\) returned an input gradient of shape \(5, 3\), "
                                         r"but its input had shape \(5, 4\)"):
        bad.backward(np.ones_like(x))


def test_modes_freezing_and_double(rng):
    model = _bn_residual(np.float32, shortcut=True)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    model.eval()
    bn = model.body[1]
    before = bn.running_mean.copy()
    model(x)
    np.testing.assert_array_equal(bn.running_mean, before)  # eval: running statistics untouched
    model.train()
    model(x)
    assert not np.array_equal(bn.running_mean, before)
    model.body.requires_grad_(False)
    model.zero_grad()
    model(x)
    model.backward(np.ones((6, 4), np.float32))
    assert not any(p.grad.any() for p in model.body.parameters())
    assert model.shortcut.weight.grad.any()
    model.body.requires_grad_(True)
    y32 = model.eval()(x)
    model.double()
    assert model.dtype == np.float64 and all(p.dtype == np.float64 for p in model.parameters())
    np.testing.assert_allclose(model(x.astype(np.float64)), y32, rtol=1e-5, atol=1e-5)


def _train_model(dtype=np.float64, dropout=0.2):
    fastnn.manual_seed(11)
    block = nn.Residual(nn.Sequential(nn.Linear(6, 6, dtype=dtype), nn.BatchNorm1d(6, dtype=dtype), nn.ReLU(),
                                      nn.Dropout(dropout), nn.Linear(6, 6, dtype=dtype)),
                        nn.Linear(6, 6, dtype=dtype))
    return nn.Sequential(nn.Linear(5, 6, dtype=dtype), block, nn.ReLU(), nn.Linear(6, 3, dtype=dtype))


def test_train_step_matches_a_manual_step(rng):
    """train_step (the C++ loop, which overwrites gradients) equals forward + backward + SGD."""
    X = rng.standard_normal((16, 5))
    y = rng.integers(0, 3, 16)
    a, b = _train_model(dropout=0.0), _train_model(dropout=0.0)
    for _ in range(2):  # the second step finds last step's gradients in the buffer
        fastnn.train_step(a, X, y, nn.CrossEntropyLoss(), fastnn.optim.SGD(a.parameters(), lr=0.1))
        b.train()
        b.zero_grad()
        loss = nn.CrossEntropyLoss()
        loss(b(X), y)
        b.backward(loss.backward())
        b.flat_parameters()[:] -= 0.1 * b.flat_grad()
    for name, v in a.state_dict().items():
        np.testing.assert_allclose(v, b.state_dict()[name], rtol=1e-12, atol=1e-12, err_msg=name)
    assert not np.array_equal(a.state_dict()["1.shortcut.weight"], _train_model().state_dict()["1.shortcut.weight"])


def test_fit_evaluate_predict_and_save_load(rng, tmp_path):
    X = rng.standard_normal((200, 5))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    model = _train_model()
    hist = fastnn.fit(model, X, y, optimizer="adam", lr=0.01, epochs=4, batch_size=32, verbose=0, seed=1)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    acc = model.evaluate(X, y)
    pred = model.predict(X)
    assert pred.shape == (200, 3)
    fastnn.save(tmp_path / "res.fnn", model)
    loaded = fastnn.load(tmp_path / "res.fnn")
    assert type(loaded[1]) is nn.Residual and list(loaded.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(loaded.predict(X), pred)
    assert loaded.evaluate(X, y) == acc


def test_raw_cpp_containers_name_bind_and_check_their_children(rng):
    """The C++ containers alone (fastnn._C): prefixed names, one buffer bound through the container."""
    from fastnn._config import _C

    lin = lambda i, o: _C.Linear_float64(i, o, True, "none", 0.01)  # noqa: E731
    res = _C.Residual_float64(_C.Sequential_float64([lin(3, 4), _C.Pointwise_float64("ReLU"), lin(4, 3)]), lin(3, 3))
    cat = _C.Concat_float64([res, lin(3, 2)])
    assert [n for n, _, _ in cat.param_specs()] == [
        "0.body.0.weight", "0.body.0.bias", "0.body.2.weight", "0.body.2.bias", "0.shortcut.weight",
        "0.shortcut.bias", "1.weight", "1.bias"]
    assert list(res.child_names) == ["body", "shortcut"] and list(cat.child_names) == ["0", "1"]
    assert res.output_shape((5, 3)) == (5, 3) and cat.output_shape((5, 3)) == (5, 5)
    x = rng.standard_normal((5, 3))
    with pytest.raises(ValueError, match=r"Linear layer's parameters have no buffer yet"):
        cat.forward(x)
    params = rng.standard_normal(cat.num_params())
    grads = np.zeros_like(params)
    cat.bind_params(params, grads, 0)
    w1, b1, w2, b2, ws, bs, wl, bl = np.split(params, np.cumsum([12, 4, 12, 3, 9, 3, 6]))
    h = np.maximum(x @ w1.reshape(4, 3).T + b1, 0)
    expected = np.concatenate([h @ w2.reshape(3, 4).T + b2 + x @ ws.reshape(3, 3).T + bs,
                               x @ wl.reshape(2, 3).T + bl], axis=1)
    np.testing.assert_allclose(cat.forward(x, False), expected, rtol=1e-12, atol=1e-12)
    cat.backward(np.ones((5, 5)))
    np.testing.assert_allclose(grads[-2:], [5, 5], rtol=1e-12)  # the last bias: the sum over the batch
    with pytest.raises(ValueError, match=r"\[Residual\] for an input of shape \(5, 4\)"):
        _C.Residual_float64(lin(4, 3)).output_shape((5, 4))
