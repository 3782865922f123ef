"""Transfer learning with fastnn.nn: freezing (no gradients, no updates, BatchNorm statistics kept in
eval mode), replacing the top (``model[-1] = ...``), slicing the bottom (``model[:k]``), and loading
lower layers from another model's state_dict (``strict=False``), a PyTorch one included."""

import numpy as np
import pytest

import fastnn
from fastnn import io, nn, optim
from fastnn.nn.module import IncompatibleKeys
from tests.conftest import assert_sum_close, matmul_terms, network_terms, requires_torch
from tests.train.cases import blobs

FEATURES, HIDDEN, CLASSES = 12, 16, 4


def net(classes=CLASSES, dtype=np.float32, seed=0):
    """Linear-BN-ReLU-Linear-ReLU-Linear; children 0..5, the head is child 5."""
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN, dtype=dtype), nn.BatchNorm1d(HIDDEN, dtype=dtype), nn.ReLU(),
                         nn.Linear(HIDDEN, 8, dtype=dtype), nn.ReLU(), nn.Linear(8, classes, dtype=dtype))


def moved_statistics(model, seed=1):
    rng = np.random.default_rng(seed)
    for _, get in model._named_states():
        get()[...] = rng.uniform(0.5, 1.5, size=get().shape)
    return model


# --- freezing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_frozen_bottom_gets_no_gradient_and_the_top_the_full_one(dtype):
    X, y = blobs(33, FEATURES, CLASSES, dtype=dtype)
    model, reference = net(dtype=dtype), net(dtype=dtype)
    model[:3].requires_grad_(False)
    # train_step's C++ path (no input gradient wanted) skips the frozen bottom's backward; the top's
    # gradients are the same products on the same inputs as with every layer trainable: equal bits
    fastnn.train_step(model, X, y, "cross_entropy", optim.SGD(model.parameters(), lr=0.0))
    fastnn.train_step(reference, X, y, "cross_entropy", optim.SGD(reference.parameters(), lr=0.0))
    grads = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        if name.split(".")[0] in ("0", "1"):
            assert not p.grad.any(), name
        else:
            assert p.grad.any(), name
            np.testing.assert_array_equal(p.grad, grads[name].grad, err_msg=name)
    # model.backward still returns the input gradient through the frozen layers (autograd's dx)
    g = np.random.default_rng(2).normal(size=(33, CLASSES)).astype(dtype)
    for m in (model, reference):
        m.zero_grad()
        m(X)
    np.testing.assert_array_equal(model.backward(g), reference.backward(g))
    assert not model[0].weight.grad.any() and not model[1].weight.grad.any() and model[3].weight.grad.any()


def small_cnn(seed=0):
    """Conv-BN-ReLU-pool (fused as one layer), then Flatten-Linear-ReLU-Linear."""
    fastnn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, CLASSES))


@pytest.mark.parametrize("build, frozen, x_shape", [
    (net, [3], (20, FEATURES)),  # a frozen middle: the layers below it still train, through it
    (net, [0, 1, 3], (20, FEATURES)),  # frozen below and in the middle, the ReLUs between them parameter-free
    (small_cnn, [0, 1], (20, 1, 8, 8)),  # the fused Conv2d+BatchNorm2d+ReLU frozen
    (small_cnn, [5], (20, 1, 8, 8)),  # a frozen fused Linear+ReLU above a trainable conv
])
def test_gradients_with_frozen_layers_anywhere_are_those_of_the_full_model(build, frozen, x_shape):
    rng = np.random.default_rng(3)
    X = rng.normal(size=x_shape).astype(np.float32)
    y = rng.integers(0, CLASSES, size=x_shape[0])
    model, reference = build(), build()
    for i in frozen:
        model[i].requires_grad_(False)
    fastnn.train_step(model, X, y, "cross_entropy", optim.SGD(model.parameters(), lr=0.0))
    fastnn.train_step(reference, X, y, "cross_entropy", optim.SGD(reference.parameters(), lr=0.0))
    grads = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        if int(name.split(".")[0]) in frozen:
            assert not p.grad.any(), name
        else:
            assert p.grad.any(), name
            np.testing.assert_array_equal(p.grad, grads[name].grad, err_msg=name)


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_frozen_parameters_are_not_updated_even_with_weight_decay_and_momentum(opt):
    X, y = blobs(64, FEATURES, CLASSES)
    model = net()
    model[0].requires_grad_(False)
    frozen = {k: v.copy() for k, v in model.state_dict().items() if k.startswith("0.")}
    optimizer = (optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1) if opt == "sgd"
                 else optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.5))
    fastnn.fit(model, X, y, optimizer=optimizer, epochs=3, batch_size=16, verbose=0)
    for k, v in frozen.items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    assert not np.array_equal(model.state_dict()["3.weight"], net().state_dict()["3.weight"])


def test_a_frozen_block_in_eval_mode_keeps_its_batchnorm_statistics_in_fit():
    X, y = blobs(96, FEATURES, CLASSES)
    features = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(), nn.Dropout(0.3))
    model = nn.Sequential(features, nn.Linear(HIDDEN, CLASSES))
    moved_statistics(model)
    features.requires_grad_(False).eval()
    before = {k: v.copy() for k, v in features.state_dict().items()}
    fastnn.fit(model, X, y, epochs=2, batch_size=16, verbose=0)
    for k, v in features.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert not features.training and not features[3].training and model[1].training  # modes as the user set them
    # the frozen block ran in eval mode: the model's training-mode output on it is head(features.eval(x))
    head = model[1]
    model.train()
    features.eval()
    out = model(X)
    assert_sum_close(out, head(fastnn.predict(features, X)), matmul_terms(np.abs(fastnn.predict(features, X)),
                                                                          np.abs(head.weight).T) + np.abs(head.bias),
                     HIDDEN + 1)


# --- replacing the top and slicing ------------------------------------------------------------------


def test_replacing_the_head_by_index_keeps_the_name_and_rebuilds_the_model():
    X, y = blobs(40, FEATURES, 3)
    model = net()
    new_head = nn.Linear(8, 3)
    model[-1] = new_head
    assert model[5] is new_head and list(model.state_dict())[-2:] == ["5.weight", "5.bias"]
    assert model(X).shape == (40, 3) and model.predict(X).shape == (40, 3)
    assert "Linear(in_features=8, out_features=3" in repr(model)
    fastnn.fit(model, X, y, epochs=1, verbose=0)  # the new head trains in the C++ loop
    assert new_head.weight.grad.any()
    outer = nn.Sequential(nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 2)))
    outer[1][0] = nn.Linear(8, 5)  # inside a nested Sequential: the containers around it are rebuilt
    assert outer(X).shape == (40, 5)
    with pytest.raises(IndexError, match=r"Sequential index 6 is out of range for 6 children"):
        model[6] = nn.ReLU()
    with pytest.raises(TypeError, match=r"Sequential indices must be integers, got slice"):
        model[4:] = nn.ReLU()
    with pytest.raises(TypeError, match=r"must be a fastnn.nn.Module"):
        model[0] = np.zeros(3)
    model[-1] = nn.Linear(5, 3)  # does not take the 8 features before it: refused when it runs
    with pytest.raises(ValueError, match=r"\[Linear\] expected input \(N, 5\), got \(40, 8\)"):
        model(X)


def test_an_optimizer_of_the_old_head_is_refused_after_the_replacement():
    X, y = blobs(32, FEATURES, CLASSES)
    model = net()
    opt = optim.Adam(model.parameters())
    model[-1] = nn.Linear(8, CLASSES)
    with pytest.raises(ValueError, match=r"the optimizer does not hold this model's parameters"):
        fastnn.fit(model, X, y, optimizer=opt, epochs=1, verbose=0)
    fastnn.fit(model, X, y, optimizer=optim.Adam(model.parameters()), epochs=1, verbose=0)


def test_a_slice_shares_its_modules_and_a_new_top_reuses_it():
    X, y = blobs(30, FEATURES, 2)
    model = moved_statistics(net())
    bottom = model[:5]
    assert [m is n for m, n in zip(bottom, model)] == [True] * 5
    bottom.requires_grad_(False).eval()  # the model's own modules: frozen there too
    assert not any(p.requires_grad for p in model[:5].parameters()) and model[5].weight.requires_grad
    terms, k = network_terms(bottom, X)
    p = {k: np.asarray(v, np.float64) for k, v in model.state_dict().items()}
    h = (X @ p["0.weight"].T + p["0.bias"] - p["1.running_mean"]) / np.sqrt(p["1.running_var"] + model[1].eps)
    h = np.maximum(h * p["1.weight"] + p["1.bias"], 0)
    expected = np.maximum(h @ p["3.weight"].T + p["3.bias"], 0)
    assert_sum_close(bottom.predict(X), expected.astype(np.float32), terms, k)
    transfer = nn.Sequential(*bottom, nn.Linear(8, 2))
    fastnn.fit(transfer, X, y, epochs=2, verbose=0)
    np.testing.assert_array_equal(model[0].weight.data, net()[0].weight.data)  # frozen: unchanged
    assert transfer.predict(X).shape == (30, 2)


# --- loading lower layers ----------------------------------------------------------------------------


def test_load_state_dict_strict_false_loads_the_lower_layers_and_reports_the_rest():
    source = moved_statistics(net(classes=10, seed=3))
    target = net(classes=CLASSES, seed=4)
    head_before = target[5].weight.data.copy()
    lower = {k: v for k, v in source.state_dict().items() if not k.startswith("5.")}
    lower["extra.weight"] = np.zeros(3, np.float32)
    result = target.load_state_dict(lower, strict=False)
    assert isinstance(result, IncompatibleKeys)
    assert result.missing_keys == ["5.weight", "5.bias"] and result.unexpected_keys == ["extra.weight"]
    missing, unexpected = result  # unpacks as PyTorch's
    assert missing == ["5.weight", "5.bias"]
    for k, v in source.state_dict().items():
        if not k.startswith("5."):
            np.testing.assert_array_equal(target.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(target[5].weight.data, head_before)
    assert repr(target.load_state_dict(target.state_dict())) == "<All keys matched successfully>"
    # a head of another shape is not skipped by strict=False (PyTorch's size mismatch): nothing loads
    before = target.state_dict()
    with pytest.raises(ValueError, match=r"'5.weight' has shape \(10, 8\), the model expects \(4, 8\) \(strict=False "
                                         r"skips missing keys, not other shapes: leave '5.weight' out\)"):
        target.load_state_dict(source.state_dict(), strict=False)
    for k, v in before.items():
        np.testing.assert_array_equal(target.state_dict()[k], v, err_msg=k)
    with pytest.raises(KeyError, match=r"missing keys \['5.weight', '5.bias'\]"):
        target.load_state_dict(lower)
    with pytest.raises(TypeError, match=r"load_state_dict: state_dict must be a mapping"):
        target.load_state_dict([("0.weight", np.zeros((HIDDEN, FEATURES)))])


@requires_torch
def test_lower_layers_from_a_pytorch_model_with_another_head():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    twin = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN), torch.nn.BatchNorm1d(HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    twin.train()
    with torch.no_grad():
        twin(torch.randn(64, FEATURES))  # running statistics and num_batches_tracked move
    twin.eval()
    sd = {k: v for k, v in twin.state_dict().items() if not k.startswith("5.")}  # keep our own head
    model = net(classes=CLASSES)
    missing, unexpected = model.load_state_dict(sd, strict=False)  # torch tensors, num_batches_tracked ignored
    assert missing == ["5.weight", "5.bias"] and unexpected == []
    X = np.random.default_rng(5).normal(size=(9, FEATURES)).astype(np.float32)
    with torch.no_grad():
        theirs = twin[:5](torch.from_numpy(X)).numpy()
    terms, k = network_terms(model[:5], X)
    assert_sum_close(model[:5].predict(X), theirs, terms, k)
    assert io.from_torch_state_dict(net(), sd, strict=False)[0].weight.data[0, 0] == sd["0.weight"][0, 0].item()
