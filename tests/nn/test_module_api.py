"""The module API a PyTorch/Keras user reaches for: summary, count_params, ModuleList, add_module,
Sequential.append and slices (which keep the names), apply, zero_grad(set_to_none=), Parameter
read as its array, and add_param_group with another model's parameters."""

import numpy as np
import pytest

import fastnn
from fastnn import models, nn, optim
from tests.conftest import assert_sum_close, network_terms, requires_torch


def mlp():
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                         nn.Residual(nn.Sequential(nn.Linear(8, 8), nn.Tanh())), nn.Linear(8, 3))


# --- summary and count_params ------------------------------------------------------------------------

def test_summary_lists_layers_output_shapes_and_parameter_counts():
    model = mlp()
    model[1].requires_grad_(False)
    text = model.summary((6,), print_fn=None)
    lines = text.splitlines()
    row = lambda start: next(line for line in lines if line.startswith(start)).split()  # noqa: E731
    assert row("0 (Linear)")[2:] == ["(None,", "8)", "56", "yes"]
    assert row("1 (BatchNorm1d)")[-2:] == ["16", "no"]
    assert row("3 (Residual)")[3:5] == ["8)", "72"]
    assert "    0 (Linear)" in text and "  body (Sequential)" in text  # nested, indented
    assert row("4 (Linear)")[2:5] == ["(None,", "3)", "27"]
    assert "Total params: 171" in text and "Trainable params: 155" in text and "Non-trainable params: 16" in text
    assert model.count_params() == 171 == sum(p.size for p in model.parameters())
    assert model.count_params(trainable=True) == 155 and model.count_params(trainable=False) == 16


def test_summary_of_a_cnn_follows_the_image_shapes(capsys):
    model = models.simple_cnn()
    assert model.summary((1, 28, 28)) is None
    out = capsys.readouterr().out
    assert "(None, 32, 14, 14)" in out and "(None, 3136)" in out and "Total params: 421,738" in out


def test_summary_without_input_shape_and_bad_shapes():
    assert "?" in mlp().summary(print_fn=None)
    with pytest.raises(ValueError, match="summary: the model does not take samples of shape"):
        mlp().summary((5,))
    with pytest.raises(ValueError, match="input_shape must be one sample's shape"):
        mlp().summary((0, 6))
    with pytest.raises(TypeError, match="count_params: trainable"):
        mlp().count_params(trainable="yes")


def test_summary_of_a_python_module_runs_it_for_its_shape():
    class Double(nn.Module):
        def forward(self, x):
            return np.concatenate([x, x], axis=1)

        def backward(self, g):
            return g[:, : g.shape[1] // 2] + g[:, g.shape[1] // 2:]

    text = nn.Sequential(nn.Linear(4, 5), Double(), nn.Linear(10, 2)).summary((4,), print_fn=None)
    assert "1 (Double)" in text and "(None, 10)" in text


# --- ModuleList, add_module, append, apply ------------------------------------------------------------

class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
        self.blocks.append(nn.Linear(4, 2))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x

    def backward(self, g):
        for b in reversed(list(self.blocks)):
            g = b.backward(g)
        return g


def test_module_list_registers_its_modules():
    t = Tower()
    assert len(t.blocks) == 3 and isinstance(t.blocks[-1], nn.Linear) and len(t.blocks[:2]) == 2
    assert list(t.state_dict())[:2] == ["blocks.0.weight", "blocks.0.bias"] and len(list(t.parameters())) == 6
    t.blocks.insert(0, nn.Linear(4, 4))
    assert [n for n, _ in t.blocks.named_children()] == ["0", "1", "2", "3"]
    del t.blocks[0]
    t.eval()
    assert not t.blocks[1].training
    assert t(np.ones((2, 4), np.float32)).shape == (2, 2)
    with pytest.raises(TypeError, match="fastnn.nn.Module"):
        t.blocks.append(np.ones(3))
    with pytest.raises(IndexError):
        t.blocks[5]
    with pytest.raises(NotImplementedError, match="iterate"):
        t.blocks(np.ones((1, 4)))


def test_a_module_list_model_trains_with_an_optimizer():
    t = Tower()
    opt = optim.SGD(t.parameters(), lr=0.1)  # parameters of separate layers join one buffer
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    before = t(x).copy()
    opt.zero_grad()
    t(x)
    t.backward(np.ones((5, 2), np.float32))
    opt.step()
    assert not np.allclose(t(x), before)


def test_sequential_append_and_add_module_rebuild_the_model_and_its_parents():
    inner = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    outer = nn.Sequential(inner, nn.Linear(8, 2))
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    assert inner.append(nn.Linear(8, 8)) is inner
    inner.add_module("tanh", nn.Tanh())
    assert [n for n, _ in inner.named_children()] == ["0", "1", "2", "tanh"]
    h = np.tanh(np.maximum(x @ inner[0].weight.data.T + inner[0].bias.data, 0) @ inner[2].weight.data.T
                + inner[2].bias.data)
    np.testing.assert_allclose(outer(x), h @ outer[1].weight.data.T + outer[1].bias.data, rtol=1e-5, atol=1e-6)
    assert "0.2.weight" in outer.state_dict() and outer.flat_parameters().size == outer.count_params()
    # fit sees the new layer too
    fastnn.fit(outer, x, np.array([0, 1, 0]), epochs=1, verbose=0)
    with pytest.raises(TypeError, match="float64"):
        inner.append(nn.Linear(8, 8).double())
    with pytest.raises(ValueError, match="used again"):
        inner.append(inner[0])
    assert len(inner) == 4 and outer(x).shape == (3, 2)  # a refused child leaves the model as it was
    with pytest.raises(TypeError, match="takes no other child"):
        nn.Residual(nn.Linear(2, 2)).add_module("extra", nn.ReLU())
    with pytest.raises(ValueError, match="without '.'"):
        inner.add_module("a.b", nn.ReLU())
    with pytest.raises(KeyError, match="already exists"):
        inner.add_module("training", nn.ReLU())


def test_replacing_a_child_keeps_its_place():
    res = nn.Residual(nn.Linear(3, 3), nn.Linear(3, 3))
    res.body = nn.Identity()
    assert [n for n, _ in res.named_children()] == ["body", "shortcut"]
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(res(x), x + res.shortcut(x), rtol=1e-6)


def test_a_slice_keeps_the_children_names_as_torch_does(tmp_path):
    """model[2:] is a Sequential of the same children under their names in model: its state_dict
    keys are the parent's, so its weights load back into the parent (and survive save/load)."""
    model = mlp()
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    top = model[3:]
    assert [n for n, _ in top.named_children()] == ["3", "4"] and top[0] is model[3] and top[-1] is model[4]
    assert list(top.state_dict()) == [k for k in model.state_dict() if k.split(".")[0] in ("3", "4")]
    assert [n for n, _ in model[::2].named_children()] == ["0", "2", "4"] and len(model[5:]) == 0
    assert [n for n, _ in model[-2:-1].named_children()] == ["3"]
    np.testing.assert_array_equal(top(x), model[4](model[3](x)))
    for loaded in (fastnn.io.from_bytes(fastnn.io.to_bytes(top)), _saved_and_loaded(top, tmp_path / "top.fnn")):
        assert list(loaded.state_dict()) == list(top.state_dict())
        np.testing.assert_array_equal(loaded(x), top(x))
    other = mlp()
    for p in other[3:].parameters():
        p.data[...] = 0.5
    missing, unexpected = model.load_state_dict(other[3:].state_dict(), strict=False)
    assert unexpected == [] and all(k.split(".")[0] in ("0", "1") for k in missing)
    np.testing.assert_array_equal(model[4].weight.data, 0.5)
    # append takes the next number no child has: "5", not a second "2" beside the slice's "2"
    assert [n for n, _ in model[2:].append(nn.ReLU()).named_children()] == ["2", "3", "4", "5"]
    assert [n for n, _ in model[2:4].append(nn.ReLU()).named_children()] == ["2", "3", "4"]


def _float64_forward(layers, x):
    """A chain of Linear and activation layers in float64 NumPy."""
    h = np.asarray(x, np.float64)
    for layer in layers:
        if isinstance(layer, nn.Linear):
            h = h @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64)
        else:
            h = {nn.ReLU: lambda v: np.maximum(v, 0), nn.Tanh: np.tanh, nn.Identity: lambda v: v}[type(layer)](h)
    return h


def test_del_insert_and_pop_rebuild_the_model_and_renumber_as_torch():
    inner = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Tanh(), nn.Linear(8, 8))
    outer = nn.Sequential(inner, nn.Linear(8, 2))
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)

    def runs_as(layers):  # outer's C++ container (rebuilt around inner's) runs exactly these layers
        assert_sum_close(outer(x), _float64_forward(layers, x), *network_terms(layers, x), dtype=np.float32)

    first, last = inner[0], inner[3]
    del inner[1]
    assert [n for n, _ in inner.named_children()] == ["0", "1", "2"] and inner[2] is last
    runs_as([first, nn.Tanh(), last, outer[1]])
    relu = nn.ReLU()
    assert inner.insert(1, relu) is inner and inner[1] is relu and inner[-1] is last
    inner.insert(-1, nn.Identity())
    assert [type(m).__name__ for m in inner] == ["Linear", "ReLU", "Tanh", "Identity", "Linear"]
    runs_as([*inner, outer[1]])
    assert type(inner.pop(3)) is nn.Identity and inner.pop(1) is relu and len(inner) == 3
    runs_as([first, nn.Tanh(), last, outer[1]])
    assert list(outer.state_dict()) == ["0.0.weight", "0.0.bias", "0.2.weight", "0.2.bias", "1.weight", "1.bias"]
    fastnn.fit(outer, x, np.array([0, 1, 0]), epochs=1, verbose=0)  # fit trains the new layout
    assert outer.flat_parameters().size == outer.count_params()
    np.testing.assert_array_equal(nn.Sequential(relu)(x), np.maximum(x, 0))  # a removed child is free to go
    del inner[1:]
    assert len(inner) == 1 and outer(x).shape == (3, 2)
    with pytest.raises(IndexError, match="Sequential.__delitem__: index 5 is out of range"):
        del inner[5]
    with pytest.raises(TypeError, match="Sequential.pop: indices must be integers"):
        inner.pop("0")
    with pytest.raises(IndexError, match=r"Sequential.insert: index must be an integer in \[-1, 1\]"):
        inner.insert(3, nn.ReLU())
    with pytest.raises(TypeError, match="float64"):
        inner.insert(0, nn.Linear(4, 4).double())
    assert len(inner) == 1  # a refused child leaves the model as it was


@requires_torch
def test_del_insert_and_pop_name_the_children_as_torch_does():
    import torch

    ours = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh(), nn.Linear(2, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.Tanh(),
                                 torch.nn.Linear(2, 2))
    del ours[1], theirs[1]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.insert(1, nn.ReLU()), theirs.insert(1, torch.nn.ReLU())
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.pop(0), theirs.pop(0)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def _saved_and_loaded(model, path):
    fastnn.save(str(path), model)
    return fastnn.load(str(path))


@requires_torch
def test_slice_names_match_torch():
    import torch

    ours = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh(), nn.Linear(2, 2))
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2), torch.nn.Tanh(),
                                 torch.nn.Linear(2, 2))
    for s in (slice(2, None), slice(None, -1), slice(1, 4, 2), slice(-1, None)):
        assert list(ours[s].state_dict()) == list(theirs[s].state_dict()), s
    theirs[2:].load_state_dict(fastnn.io.to_torch_state_dict(ours[2:]))  # strict: the same keys


def test_apply_visits_children_first_then_self():
    model = mlp()
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen[-1] == "Sequential" and seen[0] == "Linear" and seen.count("Linear") == 3

    def init(m):
        if isinstance(m, nn.Linear):
            m.weight.data[...] = 0.5

    model.apply(init)
    assert all((m.weight.data == 0.5).all() for m in model.modules() if isinstance(m, nn.Linear))
    with pytest.raises(TypeError, match="apply: fn must be callable"):
        model.apply(3)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_set_to_none_zeros_the_gradients(set_to_none):
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    model.flat_grad()[:] = 1
    model.zero_grad(set_to_none=set_to_none)
    assert not model.flat_grad().any()
    model.flat_grad()[:] = 1
    opt.zero_grad(set_to_none=set_to_none)
    assert not model.flat_grad().any()
    with pytest.raises(TypeError, match="set_to_none"):
        model.zero_grad(set_to_none=None)


# --- Parameter as an array ---------------------------------------------------------------------------

def test_parameter_reads_as_the_array_it_views():
    w = nn.Linear(3, 2).weight
    a = w.data.copy()
    assert w.numel() == 6 and w.ndim == 2 and len(w) == 2
    for got, want in [(w + 1, a + 1), (1 - w, 1 - a), (w * w, a * a), (2 / (w + 5), 2 / (a + 5)), (-w, -a),
                      (abs(w), abs(a)), (w @ np.ones(3), a @ np.ones(3)), (w ** 2, a ** 2), (w[1], a[1]),
                      (w > 0, a > 0), (np.exp(w), np.exp(a)), (np.sum(w), np.sum(a)), (w.mean(), a.mean()),
                      (np.concatenate([w, w]), np.concatenate([a, a])), (w.T, a.T), (np.linalg.norm(w), np.linalg.norm(a))]:
        assert type(got) in (np.ndarray, np.float32, np.bool_), type(got)
        np.testing.assert_array_equal(got, want)
    assert w in [w] and w not in [nn.Linear(3, 2).weight]  # found by identity, not by value
    assert len({w, w}) == 1
    np.multiply(w, 0, out=w)  # out= writes into the model, as out=w.data does
    assert not w.data.any()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        w.nope


# --- add_param_group with another model --------------------------------------------------------------

@requires_torch
def test_add_param_group_of_another_model_matches_torch():
    import torch

    a, b = nn.Sequential(nn.Linear(3, 2)), nn.Sequential(nn.Linear(3, 4))
    ta, tb = torch.nn.Linear(3, 2), torch.nn.Linear(3, 4)
    for m, t in ((a, ta), (b, tb)):
        t.load_state_dict({k.split(".", 1)[1]: torch.tensor(v) for k, v in m.state_dict().items()})
    opt, topt = optim.Adam(a.parameters(), lr=0.1), torch.optim.Adam(ta.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    pairs = [(a, ta), (b, tb)]

    def step(active):
        for m, t in active:
            for (name, p), tp in zip(m.named_parameters(), t.parameters()):
                p.grad[...] = rng.normal(size=p.shape)
                tp.grad = torch.tensor(p.grad.copy())
        opt.step()
        topt.step()

    step(pairs[:1])
    opt.add_param_group({"params": b.parameters(), "lr": 0.05})
    topt.add_param_group({"params": tb.parameters(), "lr": 0.05})
    assert a[0].weight.buffer is b[0].weight.buffer  # one flat buffer: one fused pass per group
    for _ in range(3):
        step(pairs)
    for m, t in pairs:
        for p, tp in zip(m.parameters(), t.parameters()):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6)
    x = rng.normal(size=(2, 3)).astype(np.float32)  # both models still compute with their (moved) weights
    np.testing.assert_allclose(b(x), tb(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="dtype"):
        opt.add_param_group({"params": nn.Linear(2, 2).double().parameters()})
