"""layer_statistics against a layer-by-layer NumPy computation (fastnn.reference), and the model
left exactly as it was."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn import reference as ref
from fastnn.train import layer_statistics

from ..conftest import DTYPES, sum_bound


def _model(dtype, activations=(nn.Sigmoid, nn.ReLU), sizes=(7, 5, 4, 3), seed=0):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, generator=np.random.default_rng([seed, i]), dtype=dtype))
        if i < len(activations):
            layers.append(activations[i]())
    return nn.Sequential(*layers)


def _manual(layers, x, y):
    """Per layer: (output, |.|-terms of the output, gradient wrt the output, its terms, {param: (grad, terms)}),
    and the k of the sums, in float64 from the model's own weights.

    Terms carry |.| through the network (|t| |W|^T + |b| forward, |G| |W| backward); an activation
    passes them on (slope <= 1) and adds |g| (t_in + t_out) backward, the error its derivative
    picks up from an output that is itself rounded."""
    h, t = x.astype(np.float64), np.abs(x.astype(np.float64))
    forward, root_k = [], 0.0
    for m in layers:
        if isinstance(m, nn.Linear):
            W, b = np.asarray(m.weight, np.float64), np.asarray(m.bias, np.float64)
            out, t_out = ref.linear_forward(h, W, b), t @ np.abs(W).T + np.abs(b)
            root_k += np.sqrt(W.shape[1] + 1) + np.sqrt(W.shape[0] + 1) + np.sqrt(len(x) + 1)
        else:
            fwd = {nn.Sigmoid: ref.sigmoid_forward, nn.ReLU: ref.relu_forward, nn.ELU: ref.elu_forward}[type(m)]
            out, t_out = fwd(h), t
        forward.append((h, t, out, t_out))
        h, t = out, t_out
    _, g = ref.cross_entropy_forward_backward(h, y)
    softmax = np.exp(h - h.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    G = (softmax + np.eye(h.shape[1])[y]) / len(x)
    records = [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        m, (x_in, t_in, out, t_out) = layers[i], forward[i]
        params = {}
        if isinstance(m, nn.Linear):
            W = np.asarray(m.weight, np.float64)
            g_in, gW, gb = ref.linear_backward(g, x_in, W)
            params = {"weight": (gW, G.T @ t_in), "bias": (gb, G.sum(axis=0))}
            G_in = G @ np.abs(W)
        else:
            if isinstance(m, nn.Sigmoid):
                g_in = ref.sigmoid_backward(g, out)
            elif isinstance(m, nn.ReLU):
                g_in = ref.relu_backward(g, out)
            else:
                g_in = ref.elu_backward(g, x_in)
            G_in = G + np.abs(g) * (t_in + t_out)
        records[i] = (out, t_out, g, G, params)
        g, G = g_in, G_in
    return records, root_k**2


def _within(actual, expected, terms, k, dtype, what):
    err = np.abs(np.asarray(actual, np.float64) - expected)
    bound = sum_bound(terms, k, dtype)
    assert np.all(err <= bound), f"{what}: worst |diff| {err.max():.3g}, bound there {bound.ravel()[err.argmax()]:.3g}"


def _norm_within(actual, expected, terms, k, dtype, what):
    """|‖a‖ - ‖e‖| <= ‖a - e‖ <= ‖elementwise bound‖."""
    assert abs(actual - np.linalg.norm(expected)) <= np.linalg.norm(sum_bound(terms, k, dtype)), what


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 9])
def test_outputs_and_gradients_match_a_layer_by_layer_reference(dtype, n):
    rng = np.random.default_rng(n)
    model = _model(dtype, (nn.Sigmoid, nn.ELU))
    X = rng.normal(size=(n, 7)).astype(dtype)
    y = rng.integers(0, 3, n)
    stats = layer_statistics(model, X, y, samples=10**6, bins=7)
    expected, k = _manual(list(model), X, y)
    assert [r["name"] for r in stats] == ["0", "1", "2", "3", "4"]
    assert [r["type"] for r in stats] == ["Linear", "Sigmoid", "Linear", "ELU", "Linear"]
    assert [r["activation"] for r in stats] == [False, True, False, True, False]
    for r, (out, t_out, g, G, params) in zip(stats, expected):
        what = f"layer {r['name']} ({r['type']}), {np.dtype(dtype)}, n={n}"
        assert r["output_shape"] == out.shape
        _within(r["samples"], out.ravel(), t_out.ravel(), k, dtype, what + " output")
        counts, edges = np.histogram(r["samples"], bins=7)
        np.testing.assert_array_equal(r["histogram"][0], counts)
        np.testing.assert_array_equal(r["histogram"][1], edges)
        assert r["histogram"][0].sum() == out.size
        assert r["mean"] == pytest.approx(np.mean(r["samples"]), rel=1e-12, abs=1e-300)
        assert r["std"] == pytest.approx(np.std(r["samples"]), rel=1e-12, abs=1e-300)
        assert (r["min"], r["max"]) == (r["samples"].min(), r["samples"].max())
        _norm_within(r["grad_output_norm"], g, G, k, dtype, what + " grad_output_norm")
        assert r["grad_output_rms"] == pytest.approx(r["grad_output_norm"] / np.sqrt(g.size), rel=1e-12)
        log_counts, log_edges = r["grad_log10_histogram"]
        assert log_counts.sum() == g.size and len(log_edges) == 8  # sigmoid and ELU pass every gradient on
        assert set(r["grad_norms"]) == set(params)
        for name, (grad, terms) in params.items():
            _norm_within(r["grad_norms"][name], grad, terms, k, dtype, f"{what} {name}")
        assert r["weight_grad_norm"] == (r["grad_norms"]["weight"] if params else None)


def test_nested_sequentials_are_opened_and_a_shared_activation_is_right_in_both_places():
    relu = nn.ReLU()  # one object in two places (PyTorch code does this)
    a = nn.Linear(6, 5, generator=np.random.default_rng(1), dtype=np.float64)
    b = nn.Linear(5, 4, generator=np.random.default_rng(2), dtype=np.float64)
    c = nn.Linear(4, 3, generator=np.random.default_rng(3), dtype=np.float64)
    model = nn.Sequential(nn.Sequential(a, relu), nn.Sequential(b, relu), c)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(11, 6)), rng.integers(0, 3, 11)
    stats = layer_statistics(model, X, y, samples=10**6)
    assert [r["name"] for r in stats] == ["0.0", "0.1", "1.0", "1.1", "2"]
    expected, k = _manual([a, relu, b, relu, c], X, y)
    for r, (out, t_out, g, G, params) in zip(stats, expected):
        _within(r["samples"], out.ravel(), t_out.ravel(), k, np.float64, r["name"])
        _norm_within(r["grad_output_norm"], g, G, k, np.float64, r["name"])
        for name, (grad, terms) in params.items():
            _norm_within(r["grad_norms"][name], grad, terms, k, np.float64, f"{r['name']} {name}")


def test_the_model_is_left_as_it_was():
    model = nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.5), nn.Linear(6, 3))
    model[1].eval()  # a module's own mode
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(16, 8)).astype(np.float32), rng.integers(0, 3, 16)
    for p in model.parameters():
        p.grad[...] = rng.normal(size=p.shape)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    grads = [np.array(p.grad) for p in model.parameters()]
    fastnn.manual_seed(5)
    fastnn.nn.Dropout(0.5)(np.ones((2, 4), np.float32))  # advance the global step
    random_state = dict(fastnn.random._state)
    stats = layer_statistics(model, X, y)  # training mode: BatchNorm on batch statistics (would update its running ones)
    assert fastnn.random._state == random_state
    after = model.state_dict()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, g)
    assert model.training and not model[1].training and model[3].training
    assert stats[1]["type"] == "BatchNorm1d" and stats[1]["grad_norms"]["weight"] > 0


def test_training_mode_draws_dropout_from_the_seed_and_eval_mode_does_not_drop():
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Dropout(0.5), nn.Linear(40, 2))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 10)).astype(np.float32), rng.integers(0, 2, 32)
    kw = dict(samples=10**6)
    relu_out = layer_statistics(model, X, y, training=False, **kw)[1]["samples"]
    dropped = [layer_statistics(model, X, y, seed=s, **kw)[2]["samples"] for s in (1, 1, 2)]
    np.testing.assert_array_equal(layer_statistics(model, X, y, training=False, **kw)[2]["samples"], relu_out)
    np.testing.assert_array_equal(dropped[0], dropped[1])
    assert not np.array_equal(dropped[0], dropped[2])
    kept = dropped[0] != 0
    np.testing.assert_allclose(dropped[0][kept], 2 * relu_out[kept], rtol=1e-6)  # the kept ones scaled by 1/(1-p)
    assert 0.3 < np.mean(dropped[0][relu_out > 0] == 0) < 0.7


def test_samples_are_a_seeded_subset_of_the_outputs():
    model = _model(np.float32)
    X, y = np.random.default_rng(0).normal(size=(300, 7)).astype(np.float32), np.zeros(300, np.int64)
    full = layer_statistics(model, X, y, samples=10**6)[0]["samples"]
    part = layer_statistics(model, X, y, samples=100)[0]["samples"]
    assert len(full) == 300 * 5 and len(part) == 100
    assert np.isin(part, full).all() and len(np.unique(part)) == 100
    np.testing.assert_array_equal(part, layer_statistics(model, X, y, samples=100)[0]["samples"])


def test_the_vanishing_gradient_pictures_of_seed_002():
    """On random data, 6 hidden layers of 100: sigmoid units with small weights (U(±1/√n), Glorot &
    Bengio's "standard" initialization and PyTorch's default) shrink ‖∂L/∂W‖ by orders of magnitude
    toward the input (σ' <= 1/4 per layer); with N(0, 1) weights the sigmoids saturate instead (the
    large weights make up for the small slopes: the gradient falls by a few times only); He + ReLU
    keeps every layer's gradient within a small factor."""
    rng = np.random.default_rng(0)
    X, y = rng.uniform(0, 1, size=(256, 100)).astype(np.float32), rng.integers(0, 10, 256)

    def stats(activation, init):
        layers = []
        for i in range(6):
            layers += [nn.Linear(100, 100, init=init, generator=np.random.default_rng(i)), activation()]
        return layer_statistics(nn.Sequential(*layers, nn.Linear(100, 10, init=init, generator=np.random.default_rng(9))),
                                X, y)

    def norms(records):
        return [r["weight_grad_norm"] for r in records if r["weight_grad_norm"] is not None]

    def saturated(records):
        return np.mean([np.mean((r["samples"] < 0.01) | (r["samples"] > 0.99)) for r in records if r["activation"]])

    small = stats(nn.Sigmoid, None)
    normal = stats(nn.Sigmoid, lambda w, generator=None: nn.init.normal_(w, 0, 1, generator=generator))
    relu = stats(nn.ReLU, lambda w, generator=None: nn.init.kaiming_normal_(w, nonlinearity="relu", generator=generator))
    assert norms(small)[0] < 1e-2 * norms(small)[-1] and saturated(small) < 0.01
    assert norms(normal)[0] < 0.5 * norms(normal)[-1] and saturated(normal) > 0.3
    assert 0.1 < norms(relu)[0] / norms(relu)[-1] < 10


class Doubler(nn.Module):
    """A module written in Python: y = 2x (forward and backward in NumPy), or a broken one."""

    def __init__(self, forward=None, backward=None):
        super().__init__()
        object.__setattr__(self, "fwd", forward or (lambda x: 2 * x))
        object.__setattr__(self, "bwd", backward or (lambda g: 2 * g))

    def forward(self, x):
        return self.fwd(x)

    def backward(self, g):
        return self.bwd(g)


def test_a_python_written_layer_is_one_unit_and_its_contract_is_checked():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(6, 7)), rng.integers(0, 3, 6)
    model = _model(np.float64, (nn.Sigmoid, nn.ELU))
    plain = layer_statistics(model, X, y, samples=10**6)
    doubled = nn.Sequential(*list(model)[:2], Doubler(), *list(model)[2:])
    stats = layer_statistics(doubled, X, y, samples=10**6)
    assert [r["type"] for r in stats] == ["Linear", "Sigmoid", "Doubler", "Linear", "ELU", "Linear"]
    np.testing.assert_allclose(stats[2]["samples"], 2 * plain[1]["samples"], rtol=1e-15)
    assert stats[2]["grad_norms"] == {} and stats[2]["weight_grad_norm"] is None
    # y = 2x: the gradient reaching the Sigmoid is twice the one reaching the Doubler
    assert stats[1]["grad_output_norm"] == pytest.approx(2 * stats[2]["grad_output_norm"], rel=1e-14)
    for fwd, bwd, match in [(lambda x: x.tolist(), None, r"layer '2' \(Doubler\): forward returned list"),
                            (lambda x: x[:1].copy(), None, r"forward returned shape \(1, 5\) .* batch \(6\) first"),
                            (lambda x: x.astype(np.float32), None, "forward returned float32, the model is float64"),
                            (None, lambda g: g[:, :2].copy(), r"backward returned float64 \(6, 2\); .* float64 \(6, 5\)"),
                            (None, lambda g: None, "backward returned NoneType")]:
        broken = nn.Sequential(*list(model)[:2], Doubler(fwd, bwd), *list(model)[2:])
        with pytest.raises((TypeError, ValueError), match=match):
            layer_statistics(broken, X, y)
    with pytest.raises(ValueError, match=r"forward returned shape \(18,\).* batch \(6\) first"):
        layer_statistics(nn.Sequential(*model, nn.Flatten(0)), X, y)  # the output must keep the batch first


def test_bad_arguments_are_clear_errors():
    model = _model(np.float32)
    X, y = np.zeros((4, 7), np.float32), np.zeros(4, np.int64)
    with pytest.raises(TypeError, match="model must be a fastnn.nn.Module"):
        layer_statistics("model", X, y)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        layer_statistics(model, X, y, bins=0)
    with pytest.raises(ValueError, match="y must have 4 entries"):
        layer_statistics(model, X, y[:3])
    with pytest.raises(ValueError, match=r"y\[0\] = 7 is not a class index"):
        layer_statistics(model, X, np.full(4, 7))
    with pytest.raises(ValueError, match="unknown loss"):
        layer_statistics(model, X, y, loss="hinge")
    with pytest.raises(ValueError):
        layer_statistics(model, np.zeros((4, 6), np.float32), y)  # the first layer names the shape
    with pytest.raises(ValueError, match="NaN or infinity"):
        layer_statistics(model, np.full((4, 7), np.nan, np.float32), y)
