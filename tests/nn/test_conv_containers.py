"""Conv2d inside Residual and Concat: finite differences, torch, recompute_bn_statistics, fold_batchnorm."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from tests.conftest import assert_matches_torch, assert_model_gradient


def _conv_block(dtype=np.float64, shortcut=True):
    fastnn.manual_seed(13)
    d = dict(dtype=dtype)
    body = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False, **d), nn.BatchNorm2d(3, **d), nn.ReLU(),
                         nn.Conv2d(3, 3, 3, padding=1, **d), nn.BatchNorm2d(3, **d))
    return nn.Residual(body, nn.Conv2d(2, 3, 1, bias=False, **d) if shortcut else None)


def _randomize_bn(model, rng):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.weight.data[...] = rng.uniform(0.5, 2, m.num_features)
            m.bias.data[...] = rng.standard_normal(m.num_features)
            m.running_mean[...] = rng.standard_normal(m.num_features)
            m.running_var[...] = rng.uniform(0.5, 2, m.num_features)


@pytest.mark.parametrize("training", [True, False])
def test_conv_residual_gradient_matches_finite_differences(rng, training):
    model = _conv_block()
    _randomize_bn(model, rng)
    model.train(training)
    x = rng.standard_normal((2, 2, 4, 5))
    w = rng.standard_normal((2, 3, 4, 5))

    assert_model_gradient(model, x, w)


def test_conv_residual_and_concat_against_torch(rng):
    torch = pytest.importorskip("torch")
    tn = torch.nn

    class Residual(tn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    class Concat(tn.Module):
        def __init__(self, *branches):
            super().__init__()
            for i, b in enumerate(branches):
                self.add_module(str(i), b)

        def forward(self, x):
            return torch.cat([b(x) for b in self.children()], 1)

    fastnn.manual_seed(1)
    model = nn.Sequential(_conv_block(), nn.ReLU(),
                          nn.Concat(nn.Conv2d(3, 2, 1, dtype=np.float64), nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64)))
    tmodel = tn.Sequential(
        Residual(tn.Sequential(tn.Conv2d(2, 3, 3, padding=1, bias=False), tn.BatchNorm2d(3), tn.ReLU(),
                               tn.Conv2d(3, 3, 3, padding=1), tn.BatchNorm2d(3)), tn.Conv2d(2, 3, 1, bias=False)),
        tn.ReLU(), Concat(tn.Conv2d(3, 2, 1), tn.Conv2d(3, 4, 3, padding=1))).double()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = rng.standard_normal((3, 2, 5, 6))
    g = rng.standard_normal((3, 6, 5, 6))
    assert_matches_torch(model, tmodel, x, g, rtol=1e-9, atol=1e-11, grad_atol=1e-10)
    other = nn.Sequential(_conv_block(), nn.ReLU(),
                          nn.Concat(nn.Conv2d(3, 2, 1, dtype=np.float64), nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64)))
    other.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    other.eval()
    np.testing.assert_allclose(other(x), tmodel(torch.from_numpy(x)).detach().numpy(), rtol=1e-9, atol=1e-11)


def test_concat_of_conv_branches_with_other_spatial_sizes_is_a_value_error(rng):
    model = nn.Concat(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match=r"\[Concat\] for an input of shape \(2, 3, 6, 6\) the branches give "
                                         r"\(2, 4, 6, 6\), \(2, 4, 4, 4\): they must agree in every dimension but 1"):
        model(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    with pytest.raises(ValueError, match=r"\[Residual\] .* body gives \(2, 4, 3, 3\) but the shortcut gives "
                                         r"\(2, 4, 6, 6\)"):
        nn.Residual(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(3, 4, 1))(
            rng.standard_normal((2, 3, 6, 6)).astype(np.float32))


def _cnn(dtype=np.float64):
    fastnn.manual_seed(21)
    d = dict(dtype=dtype)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False, **d), nn.BatchNorm2d(2, **d), nn.ReLU(),
                         _conv_block(dtype), nn.ReLU(),
                         nn.Concat(nn.Sequential(nn.Conv2d(3, 2, 1, **d), nn.BatchNorm2d(2, **d)), nn.Identity()),
                         nn.Flatten(), nn.Linear(5 * 5 * 5, 3, **d))


def test_recompute_bn_statistics_of_a_conv_residual_model(rng):
    model = _cnn()
    X = rng.standard_normal((40, 1, 5, 5)) + 0.5
    nn.recompute_bn_statistics(model, X, batch_size=16)

    def check(bn, h):
        np.testing.assert_allclose(bn.running_mean, h.mean((0, 2, 3)), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bn.running_var, h.var((0, 2, 3), ddof=1), rtol=1e-9)

    check(model[1], model[0](X))
    h = model[2](model[1](model[0](X)))
    body = model[3].body
    check(body[1], body[0](h))
    check(body[4], body[3](body[2](body[1](body[0](h)))))
    r = model[4](model[3](h))
    check(model[5][0][1], model[5][0][0](r))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_conv_batchnorm_equals_unfolded_eval(rng, dtype):
    model = _cnn(dtype)
    _randomize_bn(model, rng)
    model.eval()
    folded = nn.fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded[0].bias is not None and folded[2].body[2].bias is not None
    x = rng.standard_normal((4, 1, 5, 5)).astype(dtype)
    y = model(x)
    # float32: a few roundings of each of the ~30 products summed per output, relative to the output's scale
    atol = (1e-5 if dtype == np.float32 else 1e-13) * np.abs(y).max()
    np.testing.assert_allclose(folded(x), y, rtol=0, atol=atol)


def test_recompute_and_fold_through_dense_blocks(rng):
    """DenseBlock (its BatchNorms read strided slices of the block's buffer) and Transition."""
    fastnn.manual_seed(5)
    d = dict(dtype=np.float64)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False, **d), nn.BatchNorm2d(4, **d), nn.ReLU(),
                          nn.DenseBlock(2, 4, 3, bn_size=2, **d), nn.Transition(10, 5, **d),
                          nn.DenseBlock(2, 5, 2, bn_size=None, **d))
    _randomize_bn(model, rng)
    X = rng.standard_normal((12, 1, 6, 6)) + 0.3
    nn.recompute_bn_statistics(model, X, batch_size=5)

    def check(bn, h):
        np.testing.assert_allclose(bn.running_mean, h.mean((0, 2, 3)), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(bn.running_var, h.var((0, 2, 3), ddof=1), rtol=1e-9)

    check(model[1], model[0](X))
    feats = model[2](model[1](model[0](X)))
    for block in (model[3], model[5]):
        for layer in block:
            check(layer.norm1, feats)
            if block.bn_size is not None:
                check(layer.norm2, layer.conv1(layer.relu1(layer.norm1(feats))))
            feats = np.concatenate([feats, layer(feats)], axis=1)
        if block is model[3]:
            check(model[4].norm, feats)
            feats = model[4](feats)
    np.testing.assert_allclose(model(X), feats, rtol=1e-12, atol=1e-12)
    folded = nn.fold_batchnorm(model)
    assert type(folded[0]) is nn.Conv2d and folded[0].bias is not None and type(folded[2]) is nn.DenseBlock
    np.testing.assert_allclose(folded(X), model(X), rtol=1e-10, atol=1e-10)


def test_fit_on_images_equals_train_steps(rng):
    """fit's C++ epoch loop through conv Residual and Concat equals its batches through train_step."""
    X = rng.standard_normal((24, 1, 5, 5))
    y = rng.integers(0, 3, 24)
    a, b = _cnn(), _cnn()
    fastnn.fit(a, X, y, optimizer=fastnn.optim.SGD(a.parameters(), lr=0.05), epochs=1, batch_size=8, shuffle=False,
               verbose=0)
    opt = fastnn.optim.SGD(b.parameters(), lr=0.05)
    for s in range(0, 24, 8):
        fastnn.train_step(b, X[s:s + 8], y[s:s + 8], nn.CrossEntropyLoss(), opt)
    np.testing.assert_allclose(a.flat_parameters(), b.flat_parameters(), rtol=1e-12, atol=1e-12)
    assert not np.allclose(a.flat_parameters(), _cnn().flat_parameters())
    assert a.predict(X).shape == (24, 3) and 0 <= a.evaluate(X, y)["accuracy"] <= 1
