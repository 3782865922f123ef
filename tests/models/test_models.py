"""fastnn.models: documented parameter counts (equal to the same networks written in torch), forward
shapes for 28x28x1 and 32x32x3 images, one training step, outputs and gradients equal to torch's
with the same weights, and bad arguments refused."""

import numpy as np
import pytest

import fastnn
from fastnn import models, nn, optim


def n_params(model):
    return model.flat_parameters().size


# (builder, kwargs, parameter count written in the docstring)
COUNTS = [
    ("simple_cnn", {}, 421_738),
    ("simple_cnn", {"in_channels": 3, "input_size": 32}, 545_194),
    ("resnet", {}, 272_186),
    ("resnet", {"in_channels": 3, "input_size": 32}, 272_474),
    ("resnet", {"depth": 56}, 855_482),
    ("densenet", {}, 768_730),
    ("densenet", {"in_channels": 3, "input_size": 32}, 769_162),
    ("densenet", {"block_config": (6, 6, 6)}, 175_690),
    ("densenet", {"block_config": (6, 6, 6), "in_channels": 3, "input_size": 32}, 176_122),
]


@pytest.mark.parametrize("name,kwargs,count", COUNTS, ids=[f"{n}-{k}" for n, k, _ in COUNTS])
def test_parameter_counts_are_the_documented_ones(name, kwargs, count):
    builder = getattr(models, name)
    assert n_params(builder(**kwargs)) == count
    assert f"{count:,}" in builder.__doc__


@pytest.mark.parametrize("name,kwargs,count", COUNTS, ids=[f"{n}-{k}" for n, k, _ in COUNTS])
def test_parameter_counts_equal_torchs(name, kwargs, count):
    pytest.importorskip("torch")
    from tests.models import torch_models

    kwargs = {k: v for k, v in kwargs.items() if name == "simple_cnn" or k != "input_size"}
    assert torch_models.count(getattr(torch_models, name)(**kwargs)) == count


# small versions of each model (fast): (builder, kwargs)
SMALL = {
    "simple_cnn": {},
    "resnet": {"depth": 8, "width": 4},
    "densenet": {"growth_rate": 4, "block_config": (2, 2)},
    "densenet-plain": {"growth_rate": 4, "block_config": (2, 2), "bottleneck": False, "compression": 1.0},
}


def small(name, **kw):
    return getattr(models, name.split("-")[0])(**SMALL[name], **kw)


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_forward_shape_and_one_training_step(name, channels, size):
    fastnn.manual_seed(0)
    model = small(name, in_channels=channels, num_classes=7, input_size=size)
    rng = np.random.default_rng(0)
    x = rng.random((6, channels, size, size), dtype=np.float32)
    y = rng.integers(0, 7, 6)
    assert model.eval()(x).shape == (6, 7)
    before = model.flat_parameters().copy()
    loss = fastnn.train_step(model, x, y, "cross_entropy", optim.SGD(model.parameters(), lr=0.1))
    assert np.isfinite(loss) and not np.array_equal(before, model.flat_parameters())
    assert fastnn.predict(model, x[:1]).shape == (1, 7)


@pytest.mark.parametrize("name", list(SMALL))
def test_float64_models(name):
    model = small(name, dtype=np.float64)
    assert model.dtype == np.float64 and all(p.dtype == np.float64 for p in model.parameters())
    assert model.eval()(np.zeros((2, 1, 28, 28))).dtype == np.float64


def _torch_twin(name, model):
    """The torch version of `model` with its weights (state_dict names are the same, or in the same order)."""
    import torch

    from tests.models import torch_models

    kw = {k: v for k, v in SMALL[name].items()}
    twin = getattr(torch_models, name.split("-")[0])(**kw).to(getattr(torch, str(model.dtype)))
    ours = model.state_dict()
    theirs = {k: v for k, v in twin.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert [v.shape for v in theirs.values()] == [tuple(v.shape) for v in ours.values()]
    if name != "resnet":  # torchvision's names; the resnet's blocks are Residual containers here
        assert list(theirs) == list(ours)

    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in zip(theirs, ours.values())}, strict=False)
    return twin


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("training", [False, True])
def test_outputs_and_gradients_equal_torchs(name, training):
    torch = pytest.importorskip("torch")
    fastnn.manual_seed(1)
    model = small(name, dtype=np.float64)
    # running statistics and BN scales away from (0, 1), so that eval mode is checked with real values
    rng = np.random.default_rng(2)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith("running_mean") or k.endswith("running_var") or (k.endswith("weight") and v.ndim == 1):
            v[...] = rng.uniform(0.5, 1.5, v.shape)
    model.load_state_dict(state)
    twin = _torch_twin(name, model)
    if name == "simple_cnn":  # dropout masks differ from torch's
        model = nn.Sequential(*[m for m in model if not isinstance(m, nn.Dropout)])
        twin = torch.nn.Sequential(*[m for m in twin if not isinstance(m, torch.nn.Dropout)])
    model.train(training)
    twin.train(training)
    x = rng.standard_normal((5, 1, 28, 28))
    g = rng.standard_normal((5, 10))
    out = model(x)
    grad_x = model.backward(g)
    tx = torch.from_numpy(x).requires_grad_()
    tout = twin(tx)
    tout.backward(torch.from_numpy(g))
    # float64 through a few layers: rounding is ~1e-14 of each array's scale; a wrong term is ~1e-2
    close = lambda a, b, name: np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max(), err_msg=name)
    close(out, tout.detach().numpy(), "output")
    close(grad_x, tx.grad.numpy(), "input gradient")
    tgrads = [p.grad.numpy() for p in twin.parameters()]
    assert len(tgrads) == len(list(model.parameters()))
    for (k, p), tg in zip(model.named_parameters(), tgrads):
        close(p.grad, tg, k)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"\[resnet\] depth must be 6n \+ 2"):
        models.resnet(depth=21)
    with pytest.raises(ValueError, match=r"\[simple_cnn\] input_size 3x3 is too small"):
        models.simple_cnn(input_size=3)
    with pytest.raises(ValueError, match=r"\[densenet\] input_size 2x2 is too small: 3 transitions"):
        models.densenet(block_config=(1, 1, 1, 1), input_size=2)
    with pytest.raises(ValueError, match=r"\[densenet\] block_config"):
        models.densenet(block_config=())
    with pytest.raises(ValueError, match="compression"):
        models.densenet(compression=0)
    with pytest.raises(TypeError, match=r"\[resnet\] dtype must be float32 or float64"):
        models.resnet(dtype=np.int32)


def test_a_model_refuses_images_of_the_wrong_channels():
    model = small("simple_cnn")
    with pytest.raises(ValueError, match=r"X has shape \(4, 3, 28, 28\): \[Conv2d\]"):
        fastnn.predict(model, np.zeros((4, 3, 28, 28), np.float32))


@pytest.mark.parametrize("name", list(SMALL))
def test_save_and_load(tmp_path, name):
    fastnn.manual_seed(0)
    model = small(name)
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    fastnn.train_step(model, x, np.arange(3), "cross_entropy", optim.SGD(model.parameters(), lr=0.1))
    fastnn.save(tmp_path / "m.fnn", model)
    loaded = fastnn.load(tmp_path / "m.fnn")
    assert list(loaded.state_dict()) == list(model.state_dict())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)
    # bit-equal: no kernel's rounding depends on where its buffers lie
    np.testing.assert_array_equal(fastnn.predict(loaded, x), fastnn.predict(model, x))
