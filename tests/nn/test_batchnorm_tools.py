"""recompute_bn_statistics (the seeds' 'code 2') and fold_batchnorm."""

import numpy as np
import pytest

import fastnn
from fastnn import nn


def _model(rng, dtype=np.float64):
    fastnn.manual_seed(5)
    model = nn.Sequential(nn.Linear(6, 8, dtype=dtype), nn.BatchNorm1d(8, dtype=dtype), nn.ReLU(),
                          nn.Linear(8, 5, bias=False, dtype=dtype), nn.BatchNorm1d(5, dtype=dtype), nn.Tanh(),
                          nn.Linear(5, 3, dtype=dtype))
    for bn in (model[1], model[4]):
        bn.weight.data[...] = rng.uniform(0.5, 2, bn.num_features)
        bn.bias.data[...] = rng.standard_normal(bn.num_features)
    return model


def test_recompute_bn_statistics_gives_exact_population_statistics(rng):
    model = _model(rng)
    X = rng.standard_normal((500, 6)) * 3 + 1
    nn.recompute_bn_statistics(model, X, batch_size=64)
    h1 = model[0](X)
    np.testing.assert_allclose(model[1].running_mean, h1.mean(0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model[1].running_var, h1.var(0, ddof=1), rtol=1e-9)
    h4 = model[3](model[2](model[1](h1)))  # eval mode: uses the statistics just computed
    np.testing.assert_allclose(model[4].running_mean, h4.mean(0), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(model[4].running_var, h4.var(0, ddof=1), rtol=1e-8)
    assert not model.training


def test_recompute_needs_two_samples(rng):
    with pytest.raises(ValueError, match="at least 2 samples"):
        nn.recompute_bn_statistics(_model(rng), rng.standard_normal((1, 6)))


def test_fold_batchnorm_keeps_eval_outputs(rng):
    model = _model(rng)
    X = rng.standard_normal((300, 6))
    fastnn.fit(model, X, rng.integers(0, 3, 300), optimizer="adam", epochs=2, verbose=0, seed=1)
    model.eval()
    folded = nn.fold_batchnorm(model)
    assert [type(m).__name__ for m in folded] == ["Linear", "ReLU", "Linear", "Tanh", "Linear"]
    np.testing.assert_allclose(folded.predict(X), model.predict(X), rtol=1e-10, atol=1e-12)
    before = model.state_dict()
    folded.flat_parameters()[:] = 0  # the folded model is independent of the original
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k])


def _container_model(rng, dtype=np.float64):
    """BatchNorms inside a Residual's body and shortcut, after it, and inside a Concat branch."""
    fastnn.manual_seed(8)
    d = dict(dtype=dtype)
    model = nn.Sequential(
        nn.Linear(6, 8, **d),
        nn.Residual(nn.Sequential(nn.Linear(8, 8, **d), nn.BatchNorm1d(8, **d), nn.ReLU(), nn.Linear(8, 8, **d)),
                    nn.Sequential(nn.Linear(8, 8, bias=False, **d), nn.BatchNorm1d(8, **d))),
        nn.BatchNorm1d(8, **d),
        nn.Concat(nn.Sequential(nn.Linear(8, 4, **d), nn.BatchNorm1d(4, **d), nn.Tanh()), nn.Identity()),
        nn.Linear(12, 3, **d))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.weight.data[...] = rng.uniform(0.5, 2, m.num_features)
            m.bias.data[...] = rng.standard_normal(m.num_features)
            m.running_mean[...] = rng.standard_normal(m.num_features)
            m.running_var[...] = rng.uniform(0.5, 2, m.num_features)
    return model


def _check_stats(bn, h, rtol=1e-9):
    np.testing.assert_allclose(bn.running_mean, h.mean(0), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(bn.running_var, h.var(0, ddof=1), rtol=rtol)


def test_recompute_bn_statistics_through_containers(rng):
    model = _container_model(rng)
    X = rng.standard_normal((300, 6)) * 2 + 1
    nn.recompute_bn_statistics(model, X, batch_size=64)
    assert not model.training
    res, bn, concat = model[1], model[2], model[3]
    h0 = model[0](X)
    _check_stats(res.body[1], res.body[0](h0))
    _check_stats(res.shortcut[1], res.shortcut[0](h0))
    r = res(h0)  # eval: with the statistics just computed
    _check_stats(bn, r)
    _check_stats(concat[0][1], concat[0][0](bn(r)))


class _Swapped(nn.Module):
    """A Python-written model whose BatchNorms are registered in the other order than they run."""

    def __init__(self):
        super().__init__()
        self.late = nn.BatchNorm1d(3, dtype=np.float64)
        self.early = nn.BatchNorm1d(3, dtype=np.float64)
        self.late.weight.data[...] = [2, 3, 4]
        self.unused = nn.BatchNorm1d(2, dtype=np.float64)

    def forward(self, x):
        return self.late(self.early(x) * 2 + 1)

    def backward(self, g):
        raise NotImplementedError


def test_recompute_follows_run_order_and_reports_a_batchnorm_that_did_not_run(rng):
    model = _Swapped()
    X = rng.standard_normal((50, 3)) * 3 + 2
    with pytest.raises(RuntimeError, match="BatchNorm1d 'unused' did not run"):
        nn.recompute_bn_statistics(model, X)
    del model._modules["unused"]
    nn.recompute_bn_statistics(model, X, batch_size=7)
    _check_stats(model.early, X)
    _check_stats(model.late, model.early(X) * 2 + 1)


def test_fold_batchnorm_through_containers(rng):
    model = _container_model(rng)
    relu_linear = nn.Sequential(nn.Linear(6, 6, activation="relu", dtype=np.float64), nn.BatchNorm1d(6, dtype=np.float64))
    model = nn.Sequential(model, nn.Residual(nn.Sequential(nn.Linear(3, 6, dtype=np.float64), relu_linear,
                                                           nn.Linear(6, 3, dtype=np.float64))))
    relu_linear[1].running_mean[...] = rng.standard_normal(6)
    X = rng.standard_normal((40, 6))
    model.eval()
    folded = nn.fold_batchnorm(model)
    assert not folded.training
    names = [type(m).__name__ for m in folded.modules()]
    assert names.count("BatchNorm1d") == 2  # after the Residual (no Linear before it) and after Linear+relu
    assert type(folded[1]) is nn.Residual and type(folded[1].shortcut) is nn.Sequential
    assert [type(m).__name__ for m in folded[1].body] == ["Linear", "ReLU", "Linear"]
    assert [type(m).__name__ for m in folded[5].body] == ["Linear", "Linear", "BatchNorm1d", "Linear"]
    np.testing.assert_allclose(folded(X), model(X), rtol=1e-10, atol=1e-10)
    before = model.state_dict()
    folded.flat_parameters()[:] = 0  # independent of the original
    assert all(np.array_equal(v, before[k]) for k, v in model.state_dict().items())
    # float32: within the rounding of the float64 result's magnitude
    m32 = model.float()
    f32 = nn.fold_batchnorm(m32)
    y = m32(X.astype(np.float32))
    np.testing.assert_allclose(f32(X.astype(np.float32)), y, rtol=0, atol=1e-5 * np.abs(y).max())


class _Count(nn.Module):
    """Identity that counts its forward calls."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x

    def backward(self, g):
        return g


def test_recompute_passes_end_at_their_batchnorm(rng):
    d = dict(dtype=np.float64)
    mid, last = _Count(), _Count()
    model = nn.Sequential(nn.Linear(3, 4, **d), nn.BatchNorm1d(4, **d), mid, nn.Linear(4, 4, **d),
                          nn.BatchNorm1d(4, **d), nn.Residual(nn.BatchNorm1d(4, **d)), last)
    nn.recompute_bn_statistics(model, rng.standard_normal((30, 3)), batch_size=10)
    assert mid.calls == 3 * 3  # the first pass (all three), then the second and third BatchNorm's
    assert last.calls == 3  # the first pass only


def test_a_batchnorm_without_affine_is_not_copied_into_a_second_container(rng):
    """BatchNorm(affine=False) has no parameters but running statistics: a slice must run the same
    layer (a copy had default statistics and gave other eval outputs)."""
    bn = nn.BatchNorm1d(4, affine=False, dtype=np.float64)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), bn, nn.Linear(4, 2, dtype=np.float64))
    model.train()
    model(rng.standard_normal((16, 3)) * 3 + 1)  # moves the running statistics
    model.eval()
    h = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(model[1:](h), model[2](bn(h)))
