"""nn.Concat: branches on one input, outputs concatenated along dimension 1, as a C++ container."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from tests.conftest import DTYPES, assert_matches_torch, assert_model_gradient, assert_sum_close


def _linear_concat(dtype):
    fastnn.manual_seed(2)
    return nn.Concat(nn.Linear(5, 3, dtype=dtype), nn.Sequential(nn.Linear(5, 4, dtype=dtype), nn.Tanh()),
                     nn.Identity(), nn.Linear(5, 1, bias=False, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 7])
def test_forward_and_backward_match_numpy(rng, dtype, batch):
    model = _linear_concat(dtype)
    x = rng.standard_normal((batch, 5)).astype(dtype)
    g = rng.standard_normal((batch, 13)).astype(dtype)
    y = model(x)
    dx = model.backward(g)
    assert y.shape == (batch, 13)
    a, (b, _), _, d = model
    f64 = lambda t: np.asarray(t, np.float64)  # noqa: E731
    xd, gd = f64(x), f64(g)
    z = xd @ f64(b.weight).T + f64(b.bias)
    y_ref = np.concatenate([xd @ f64(a.weight).T + f64(a.bias), np.tanh(z), xd, xd @ f64(d.weight).T], axis=1)
    terms = np.concatenate([np.abs(xd) @ np.abs(f64(a.weight)).T + np.abs(f64(a.bias)),
                            np.abs(xd) @ np.abs(f64(b.weight)).T + np.abs(f64(b.bias)), np.abs(xd),
                            np.abs(xd) @ np.abs(f64(d.weight)).T], axis=1)
    assert_sum_close(y, y_ref.astype(dtype), terms, 6, dtype, rtol=4 * np.finfo(dtype).eps)
    gs = np.split(gd, [3, 7, 12], axis=1)
    dtanh = 1 - np.tanh(z) ** 2
    dx_ref = gs[0] @ f64(a.weight) + (gs[1] * dtanh) @ f64(b.weight) + gs[2] + gs[3] @ f64(d.weight)
    dx_terms = (np.abs(gs[0]) @ np.abs(f64(a.weight)) + np.abs(gs[1] * dtanh) @ np.abs(f64(b.weight)) + np.abs(gs[2])
                + np.abs(gs[3]) @ np.abs(f64(d.weight)))
    # tanh' from the float output: a few ulps of each term; 3 + 4 + 1 + 1 terms and the sums of branches
    assert_sum_close(dx, dx_ref.astype(dtype), dx_terms, 16, dtype, c=20)


def _bn_concat(dtype=np.float64):
    fastnn.manual_seed(9)
    return nn.Concat(nn.Sequential(nn.Linear(4, 5, dtype=dtype), nn.BatchNorm1d(5, dtype=dtype), nn.ReLU()),
                     nn.Linear(4, 2, dtype=dtype), nn.Identity())


@pytest.mark.parametrize("training", [True, False])
def test_gradient_matches_finite_differences(rng, training):
    model = _bn_concat()
    bn = model[0][1]
    bn.weight.data[...] = rng.uniform(0.5, 1.5, 5)
    bn.bias.data[...] = rng.standard_normal(5)
    bn.running_mean[...] = rng.standard_normal(5)
    bn.running_var[...] = rng.uniform(0.5, 2, 5)
    model.train(training)
    x = rng.standard_normal((6, 4))
    w = rng.standard_normal((6, 11))

    assert_model_gradient(model, x, w)


def test_channels_of_feature_maps_and_names(rng):
    """(N, C, H, W): each branch's channels in its slice of every image; names "0", "1", ..."""
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    model = nn.Concat(nn.Identity(), bn, nn.Sequential(nn.ReLU(), nn.Identity()))
    assert list(model.state_dict()) == ["1.weight", "1.bias", "1.running_mean", "1.running_var"]
    model.eval()
    bn.running_mean[...] = [1, 2, 3]
    x = rng.standard_normal((2, 3, 4, 5))
    y = model(x)
    bn_out = (x - np.array([1, 2, 3])[:, None, None]) / np.sqrt(1 + bn.eps)
    np.testing.assert_allclose(y, np.concatenate([x, bn_out, np.maximum(x, 0)], axis=1), rtol=1e-14, atol=1e-14)
    g = rng.standard_normal(y.shape)
    dx = model.backward(g)
    np.testing.assert_allclose(dx, g[:, :3] + g[:, 3:6] / np.sqrt(1 + bn.eps) + g[:, 6:] * (x > 0),
                               rtol=1e-14, atol=1e-14)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    tn = torch.nn

    class TorchConcat(tn.Module):
        def __init__(self, *branches):
            super().__init__()
            for i, b in enumerate(branches):
                self.add_module(str(i), b)

        def forward(self, x):
            return torch.cat([b(x) for b in self.children()], dim=1)

    model = _bn_concat()
    tmodel = TorchConcat(tn.Sequential(tn.Linear(4, 5), tn.BatchNorm1d(5), tn.ReLU()), tn.Linear(4, 2),
                         tn.Identity()).double()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((8, 4))
    g = rng.standard_normal((8, 11))
    assert_matches_torch(model, tmodel, x, g, rtol=1e-10, atol=1e-12, grad_atol=1e-12)
    other = _bn_concat()
    with torch.no_grad():
        for p in tmodel.parameters():
            p.mul_(1.5)
    other.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    other.eval()
    tmodel.eval()
    np.testing.assert_allclose(other(x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


def test_branches_that_disagree_are_a_value_error(rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    from fastnn.nn import Flatten

    with pytest.raises(ValueError, match=r"\[Concat\] for an input of shape \(2, 3, 6, 6\) the branches give "
                                         r"\(2, 3, 6, 6\), \(2, 108\): they must agree in every dimension but 1"):
        nn.Concat(nn.Identity(), Flatten())(x)
    with pytest.raises(ValueError, match=r"\[Concat\] .* give \(2, 108\), \(2, 108\), \(2, 3, 6, 6\)"):
        nn.Concat(Flatten(), Flatten(), nn.Identity())(x)
    with pytest.raises(ValueError, match=r"\[Concat\] .* give \(2,\)"):
        nn.Concat(nn.Identity())(np.ones(2, np.float32))
    with pytest.raises(ValueError, match="Concat: needs at least one branch"):
        nn.Concat()


class _Crop(nn.Module):
    """A Python-written branch that drops the last column (another spatial size than its peers)."""

    def forward(self, x):
        return np.ascontiguousarray(x[..., :-1])

    def backward(self, g):
        return np.ascontiguousarray(g)


def test_python_written_branches_are_checked(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\[Concat\] for an input of shape \(2, 3, 4, 4\) the branches give "
                                         r"\(2, 3, 4, 4\), \(2, 3, 4, 3\)"):
        nn.Concat(nn.Identity(), _Crop())(x)
    model = nn.Concat(_Crop(), _Crop())
    assert model(x).shape == (2, 6, 4, 3)
    with pytest.raises(ValueError, match=r"\[Concat\] branch 0 \(_Crop\) returned an input gradient of shape "
                                         r"\(2, 3, 4, 3\), but its input had shape \(2, 3, 4, 4\)"):
        model.backward(np.ones((2, 6, 4, 3), np.float32))


def test_fit_save_load_and_train_step(rng, tmp_path):
    X = rng.standard_normal((120, 4))
    y = (X[:, 0] > 0).astype(np.int64)
    fastnn.manual_seed(4)
    model = nn.Sequential(_bn_concat(), nn.Linear(11, 2, dtype=np.float64))
    hist = fastnn.fit(model, X, y, optimizer="sgd", lr=0.1, epochs=3, batch_size=16, verbose=0, seed=2)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    fastnn.save(tmp_path / "c.fnn", model)
    loaded = fastnn.load(tmp_path / "c.fnn")
    assert type(loaded[0]) is nn.Concat and list(loaded.state_dict()) == list(model.state_dict())
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    b = fastnn.load(tmp_path / "c.fnn")
    fastnn.train_step(loaded, X[:16], y[:16], nn.CrossEntropyLoss(), fastnn.optim.SGD(loaded.parameters(), lr=0.1))
    b.train()
    b.zero_grad()
    loss = nn.CrossEntropyLoss()
    loss(b(X[:16]), y[:16])
    b.backward(loss.backward())
    b.flat_parameters()[:] -= 0.1 * b.flat_grad()
    np.testing.assert_allclose(loaded.flat_parameters(), b.flat_parameters(), rtol=1e-12, atol=1e-12)
    assert not np.array_equal(loaded.flat_parameters(), model.flat_parameters())


def test_every_layer_has_its_own_random_stream():
    """Salts reach through Residual and Concat: two Dropouts never share a mask."""
    model = nn.Sequential(nn.Dropout(0.5), nn.Concat(nn.Dropout(0.5), nn.Residual(nn.Dropout(0.5), nn.Dropout(0.5)),
                                                      nn.Sequential(nn.Dropout(0.5))))
    salts = [m._layer.salt for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(salts) == 5 and len(set(salts)) == 5
    concat = nn.Concat(nn.Dropout(0.5), nn.Dropout(0.5))
    y = concat(np.ones((4, 64), np.float32))
    assert not np.array_equal(y[:, :64], y[:, 64:])


def test_shared_modules():
    relu = nn.ReLU()  # parameter-free: runs as a copy in its second place
    model = nn.Concat(relu, nn.Sequential(relu), relu)
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(model(x), [[0, 2, 0, 2, 0, 2]])
    np.testing.assert_array_equal(model.backward(np.ones((1, 6), np.float32)), [[0, 3]])
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"Residual: Linear module used at 'body' is used again in child 'shortcut'"):
        nn.Residual(lin, lin)
    with pytest.raises(ValueError, match=r"Concat: Linear module used at '0' is used again in child '1'"):
        nn.Concat(lin, nn.Sequential(lin))
    with pytest.raises(TypeError, match=r"Concat: modules have different dtypes"):
        nn.Concat(nn.Linear(2, 2), nn.Linear(2, 2, dtype=np.float64))


def test_results_do_not_depend_on_the_thread_count(rng):
    from tests.conftest import num_threads

    x = rng.standard_normal((64, 8, 16, 16)).astype(np.float32)  # large enough to use two threads
    g = rng.standard_normal((64, 24, 16, 16)).astype(np.float32)
    model = nn.Concat(nn.Residual(nn.ReLU()), nn.Identity(), nn.Residual(nn.Tanh(), nn.ReLU()))
    out = []
    for n in (1, 2):
        with num_threads(n):
            out.append((model(x), model.backward(g)))
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[0][0][:, 8:16], x)
    np.testing.assert_allclose(out[0][1], g[:, :8] * (1 + (x > 0)) + g[:, 8:16] + g[:, 16:] * (1 - np.tanh(x) ** 2 + (x > 0)),
                               rtol=1e-5, atol=1e-5)
