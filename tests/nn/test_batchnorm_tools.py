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
