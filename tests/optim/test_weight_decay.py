"""weight_decay, l1 and max_norm decay every parameter of their group, as torch.optim does
(biases and BatchNorm parameters included), and optim.param_groups makes the usual exclusion;
the fused C++ epoch loop (fit) applies the same rule as opt.step()."""

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from tests.conftest import DTYPES, assert_close, requires_torch

STEPS = 5

# (fastnn class, torch class, options): each optimizer with its weight decay (L2 in the gradient,
# AdamW's decoupled shrink)
DECAYING = [
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.05, weight_decay=0.2)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1, momentum=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1)),
]


def _case_id(case):
    name, opts = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in opts.items())


def make_model(dtype, seed=0):
    fastnn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3)).to(dtype)
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # BatchNorm's weight 1 and bias 0 are moved off their fixed points
        p.data[...] = rng.normal(size=p.shape)
    return model


def torch_twin(model):
    import torch

    tdtype = torch.float32 if model.dtype == np.float32 else torch.float64
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.BatchNorm1d(7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    twin = twin.to(tdtype)
    twin.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()}, strict=False)
    return twin


def step_both(opt, topt, model, twin, rng, dtype):
    """The same random gradients into both models, then one step each."""
    import torch

    tparams = dict(twin.named_parameters())
    model.flat_grad()[:] = rng.normal(size=model.flat_grad().size)
    for name, p in model.named_parameters():
        tparams[name].grad = torch.tensor(p.grad.copy())
    opt.step()
    topt.step()


def assert_same_parameters(model, twin, dtype, err_msg=""):
    tparams = dict(twin.named_parameters())
    for name, p in model.named_parameters():
        assert_close(p.data, tparams[name].detach().numpy(), dtype=dtype, scale=20, err_msg=f"{name} {err_msg}")


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", DECAYING, ids=_case_id)
def test_weight_decay_of_one_group_matches_torch_step_by_step(case, dtype):
    """model.parameters() in one group: torch decays the biases and BatchNorm's weight and bias too."""
    import torch

    name, opts = case
    model = make_model(dtype)
    twin = torch_twin(model)
    opt = getattr(optim, name)(model.parameters(), **opts)
    topt = getattr(torch.optim, name)(twin.parameters(), **opts)
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        step_both(opt, topt, model, twin, rng, dtype)
        assert_same_parameters(model, twin, dtype, f"after step {step + 1}")


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_zero_gradients_decay_every_parameter_biases_and_batchnorm_included(name):
    model = make_model(np.float64)
    start = {n: p.numpy() for n, p in model.named_parameters()}
    opt = getattr(optim, name)(model.parameters(), lr=0.1, weight_decay=0.5)
    model.zero_grad()
    opt.step()
    for n, p in model.named_parameters():
        assert np.abs(p.data).sum() < np.abs(start[n]).sum(), n  # every parameter shrinks


def test_l1_and_max_norm_follow_the_group_rule():
    """l1 moves the biases of a decayed group; a group with l1=0 and no max_norm leaves them alone;
    max_norm bounds the rows of the group's matrices only (vectors have no rows)."""
    model = make_model(np.float64)
    model[0].weight.data[...] *= 10
    groups = optim.param_groups(model, weight_decay=0.0)
    groups[0].update(l1=0.1, max_norm=0.5)
    opt = optim.SGD(groups, lr=0.1)
    start = {n: p.numpy() for n, p in model.named_parameters()}
    model.zero_grad()
    opt.step()
    norms = np.linalg.norm(model[0].weight.data, axis=1)
    assert norms.max() <= 0.5 + 1e-12
    for n, p in model.named_parameters():
        if n in ("0.bias", "1.weight", "1.bias", "3.bias"):
            np.testing.assert_array_equal(p.data, start[n], err_msg=n)  # the no-decay group
        else:
            assert not np.array_equal(p.data, start[n]), n
    # in one group l1 moves the biases too
    model = make_model(np.float64)
    bias = model[0].bias.numpy()
    optim.SGD(model.parameters(), lr=0.1, l1=0.1).step()
    np.testing.assert_allclose(model[0].bias.data, bias - 0.01 * np.sign(bias))


def test_param_groups_excludes_biases_and_normalization_parameters():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.PReLU(3), nn.Linear(3, 2, bias=False))
    groups = optim.param_groups(model, weight_decay=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in groups[0]["params"]] == ["0.weight", "2.weight", "3.weight"]
    assert [names[id(p)] for p in groups[1]["params"]] == ["0.bias", "1.weight", "1.bias"]
    assert groups[0]["weight_decay"] == 0.01 and groups[1]["weight_decay"] == 0.0
    own = optim.param_groups(model, 0.1, no_decay=("bias", "prelu", "norm"))
    assert [names[id(p)] for p in own[1]["params"]] == ["0.bias", "1.weight", "1.bias", "2.weight"]
    assert len(optim.param_groups(model, 0.1, no_decay="nothing-matches")) == 1  # empty groups left out
    residual = nn.Residual(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    assert [len(g["params"]) for g in optim.param_groups(residual, 0.1)] == [1, 3]


@pytest.mark.parametrize("bad,error", [
    (dict(weight_decay=-1.0), ValueError), (dict(weight_decay="0.1"), TypeError),
    (dict(weight_decay=0.1, no_decay=("bias", "")), TypeError), (dict(weight_decay=0.1, no_decay=(1,)), TypeError),
])
def test_param_groups_refuses_bad_arguments(bad, error):
    with pytest.raises(error, match="param_groups"):
        optim.param_groups(make_model(np.float32), **bad)
    with pytest.raises(TypeError, match="param_groups: model"):
        optim.param_groups([1, 2], 0.1)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_param_groups_match_torch_groups(dtype):
    import torch

    model = make_model(dtype)
    twin = torch_twin(model)
    opt = optim.AdamW(optim.param_groups(model, weight_decay=0.3), lr=0.05)
    tp = dict(twin.named_parameters())
    decay = ["0.weight", "3.weight"]
    topt = torch.optim.AdamW([{"params": [tp[n] for n in decay], "weight_decay": 0.3},
                              {"params": [t for n, t in tp.items() if n not in decay], "weight_decay": 0.0}], lr=0.05)
    rng = np.random.default_rng(2)
    for step in range(STEPS):
        step_both(opt, topt, model, twin, rng, dtype)
        assert_same_parameters(model, twin, dtype, f"after step {step + 1}")


@requires_torch
@pytest.mark.parametrize("name,opts", [("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.1)),
                                       ("Adam", dict(lr=0.01, weight_decay=0.1)),
                                       ("AdamW", dict(lr=0.01, weight_decay=0.2))])
def test_fit_epoch_loop_decays_as_torch(name, opts):
    """The C++ epoch loop's deferred steps (segments with the decay flag set on every parameter)
    against torch training the twin on the same full batches (float64, no shuffling)."""
    import torch

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    model = make_model(np.float64)
    twin = torch_twin(model)
    opt = getattr(optim, name)(model.parameters(), **opts)
    fastnn.fit(model, X, y, loss="mse", optimizer=opt, epochs=4, batch_size=40, shuffle=False, verbose=0)
    topt = getattr(torch.optim, name)(twin.parameters(), **opts)
    twin.train()
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for _ in range(4):
        topt.zero_grad()
        torch.nn.functional.mse_loss(twin(Xt), yt).backward()
        topt.step()
    tparams = dict(twin.named_parameters())
    for n, p in model.named_parameters():
        # 1e-6: the first Linear's bias has a gradient of rounding noise (BatchNorm cancels it), which
        # Adam divides by its own size; the decay moves it by ~lr*wd*|b|*epochs = 1e-2 relative
        np.testing.assert_allclose(p.data, tparams[n].detach().numpy(), rtol=1e-6, atol=1e-9, err_msg=n)
