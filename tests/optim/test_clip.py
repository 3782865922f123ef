"""clip_grad_norm_, clip_grad_value_ and max_norm_ vs the reference and torch.nn.utils / torch.renorm;
frozen parameters skipped; thread-count independence; bad arguments."""

import math

import numpy as np
import pytest

from fastnn import optim
from fastnn.nn.parameter import pack
from fastnn.reference import optim as R
from tests.conftest import DTYPES, assert_close, num_threads, requires_torch
from tests.optim.cases import make_model, random_grads


def model_with_grads(dtype, scale=1.0, seed=0):
    buf, params = make_model(dtype)
    random_grads(np.random.default_rng(seed), buf)
    buf.grads *= scale
    return buf, params


NORM_TYPES = [2.0, 1.0, 3.5, math.inf, "inf"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_grad_norm_matches_reference(dtype, norm_type, max_norm):
    buf, params = model_with_grads(dtype)
    trainable = [p for p in params if p.requires_grad]
    expected_grads = [p.grad.copy() for p in trainable]
    expected = R.clip_grad_norm_(expected_grads, max_norm, norm_type)
    frozen_before = params[3].grad.copy()
    total = optim.clip_grad_norm_(params, max_norm, norm_type)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, expected, rtol=1e-12)
    for p, e in zip(trainable, expected_grads):
        assert_close(p.grad, e, err_msg=p.name)
    np.testing.assert_array_equal(params[3].grad, frozen_before)
    if max_norm == 0.5:
        assert R.clip_grad_norm_([p.grad.copy() for p in trainable], 1e9, norm_type) <= 0.5 * (1 + 1e-5)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", NORM_TYPES)
def test_clip_grad_norm_matches_torch(dtype, norm_type):
    import torch

    buf, params = model_with_grads(dtype)
    tensors = []
    for p in params:
        t = torch.tensor(p.numpy(), requires_grad=p.requires_grad)
        if p.requires_grad:
            t.grad = torch.tensor(p.grad.copy())
        tensors.append(t)
    expected = torch.nn.utils.clip_grad_norm_(tensors, 0.7, norm_type=norm_type)
    total = optim.clip_grad_norm_(params, 0.7, norm_type=norm_type)
    np.testing.assert_allclose(total, expected.item(), rtol=1e-5 if dtype == np.float32 else 1e-12)
    for p, t in zip(params, tensors):
        if p.requires_grad:
            assert_close(p.grad, t.grad.numpy(), scale=2, err_msg=p.name)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_matches_torch_and_reference(dtype):
    import torch

    buf, params = model_with_grads(dtype, scale=2.0)
    tensors = [torch.tensor(p.numpy()) for p in params if p.requires_grad]
    for t, p in zip(tensors, [p for p in params if p.requires_grad]):
        t.grad = torch.tensor(p.grad.copy())
    expected_ref = [p.grad.copy() for p in params if p.requires_grad]
    R.clip_grad_value_(expected_ref, 0.8)
    torch.nn.utils.clip_grad_value_(tensors, 0.8)
    frozen_before = params[3].grad.copy()
    optim.clip_grad_value_(params, 0.8)
    for p, t, e in zip([p for p in params if p.requires_grad], tensors, expected_ref):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
        np.testing.assert_array_equal(p.grad, e)
    np.testing.assert_array_equal(params[3].grad, frozen_before)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_matches_torch_renorm(dtype):
    import torch

    buf, params = make_model(dtype, frozen=(), scale=0.3)
    before = [p.numpy() for p in params]
    optim.max_norm_(params, 1.0)
    for p, b in zip(params, before):
        if b.ndim >= 2:
            expected = torch.renorm(torch.tensor(b), 2, 0, 1.0).numpy()
            assert_close(p.data, expected, scale=2, err_msg=p.name)
            ref = b.copy()
            R.renorm_rows(ref, 1.0)
            assert_close(p.data, ref, err_msg=p.name)
        else:
            np.testing.assert_array_equal(p.data, b)
    assert any(not np.array_equal(p.data, b) for p, b in zip(params, before))


def test_nonfinite_norm():
    buf, params = model_with_grads(np.float64)
    params[0].grad[0, 0] = np.nan
    with pytest.raises(RuntimeError, match=r"\[clip_grad_norm_\] the total norm .* is non-finite"):
        optim.clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    assert not np.isnan(params[1].grad).any()  # nothing scaled
    total = optim.clip_grad_norm_(params, 1.0)  # torch's default: scale anyway (by nan)
    assert math.isnan(total) and np.isnan(params[1].grad).all()
    assert math.isnan(optim.clip_grad_norm_(params, 1.0, norm_type=math.inf))


def test_clip_grad_value_keeps_nan():
    buf, params = pack([(4,)], np.float32)
    params[0].grad[:] = [np.nan, 5, -5, 0.5]
    optim.clip_grad_value_(params[0], 1.0)
    np.testing.assert_array_equal(params[0].grad, [np.nan, 1, -1, 0.5])


def test_single_parameter_and_empty_list():
    buf, params = model_with_grads(np.float64)
    g = params[0].grad.copy()
    assert optim.clip_grad_norm_(params[0], 1e9) == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert optim.clip_grad_norm_([], 1.0) == 0.0
    optim.clip_grad_value_([], 1.0)


def test_bad_arguments():
    buf, params = model_with_grads(np.float32)
    other_buf, other = pack([(2,)], np.float32)
    with pytest.raises(ValueError, match="same FlatBuffer"):
        optim.clip_grad_norm_([params[0], other[0]], 1.0)
    with pytest.raises(TypeError, match="expected fastnn Parameters, got ndarray"):
        optim.clip_grad_value_([np.zeros(3)], 1.0)
    with pytest.raises(ValueError, match=r"norm_type must be > 0 or inf, got -inf"):
        optim.clip_grad_norm_(params, 1.0, norm_type=-math.inf)
    with pytest.raises(ValueError, match=r"max_norm must be >= 0"):
        optim.clip_grad_norm_(params, -1.0)
    with pytest.raises(ValueError, match=r"max_norm must be > 0"):
        optim.max_norm_(params, -1.0)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_global_norm_is_identical_with_one_and_two_threads(norm_type):
    buf, params = pack([(500, 300), (300,), (40000,)], np.float32)
    random_grads(np.random.default_rng(0), buf)
    grads = buf.grads.copy()
    results = []
    for threads in (1, 2):
        buf.grads[:] = grads
        with num_threads(threads):
            results.append((optim.clip_grad_norm_(params, 10.0, norm_type), buf.grads.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_norm_applies_to_matrices_created_without_weight_decay(dtype):
    """max_norm_ constrains the parameters it is given (torch.renorm, Keras MaxNorm on a kernel),
    decay flag or not; only the optimizers' max_norm= option is limited to decay parameters.
    Vectors (biases) and frozen parameters are left alone."""
    buf, params = pack([(4, 3), (4, 3), (4,), (2, 6)], dtype, names=["no_decay", "decay", "bias", "frozen"],
                       decay=[False, True, False, False])
    buf.params[:] = np.random.default_rng(3).normal(scale=2.0, size=buf.params.size)
    params[3].requires_grad = False
    before = [p.numpy() for p in params]
    optim.max_norm_(params, 1.0)
    for p, b in zip(params[:2], before[:2]):
        ref = b.copy()
        R.renorm_rows(ref, 1.0)
        assert_close(p.data, ref, err_msg=p.name)
        assert np.linalg.norm(p.data, axis=1).max() <= 1.0 + 1e-6
    np.testing.assert_array_equal(params[2].data, before[2])
    np.testing.assert_array_equal(params[3].data, before[3])
    assert not np.array_equal(params[0].data, before[0])
    # the optimizer option: decay matrices only
    buf.params[:] = np.concatenate([b.reshape(-1) for b in before])
    buf.grads[:] = 0
    optim.SGD(params, lr=0.1, max_norm=1.0).step()
    np.testing.assert_array_equal(params[0].data, before[0])
    assert np.linalg.norm(params[1].data, axis=1).max() <= 1.0 + 1e-6
