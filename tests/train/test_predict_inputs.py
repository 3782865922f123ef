"""predict (and fit/evaluate) take samples from any array-like by one rule (_validate.as_array:
np.asarray, real numbers only), and an empty batch predicts an empty result of the output's shape."""

import numpy as np
import pytest

import fastnn
from fastnn import models, nn


def mlp(dtype=np.float32):
    fastnn.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).to(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_batch_gives_an_empty_result_of_the_right_shape(dtype):
    out = mlp(dtype).predict(np.zeros((0, 4), np.float64))
    assert out.shape == (0, 3) and out.dtype == dtype
    cnn = models.simple_cnn()
    assert cnn.predict(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)
    with pytest.raises(ValueError):
        mlp().predict(np.zeros((0, 5)))  # a sample shape the model does not take, even with no samples


def test_lists_and_integer_arrays_are_converted_to_the_model_dtype():
    model = mlp(np.float64)
    x = np.arange(8).reshape(2, 4)
    expected = model.predict(x.astype(np.float64))
    np.testing.assert_array_equal(model.predict(x.tolist()), expected)
    np.testing.assert_array_equal(model.predict(x), expected)
    assert model.predict([[True, False, True, False]]).shape == (1, 3)


def test_torch_tensors_via_array():
    torch = pytest.importorskip("torch")
    model = mlp()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(torch.tensor(x)), model.predict(x))
    np.testing.assert_array_equal(model.predict(torch.tensor(x, dtype=torch.float64)), model.predict(x))
    with pytest.raises(TypeError, match="detach"):
        model.predict(torch.tensor(x, requires_grad=True))
    fastnn.fit(model, torch.tensor(x), torch.tensor([0, 1, 2, 0, 1]), epochs=1, verbose=0)


@pytest.mark.parametrize("bad,match", [
    (np.array([[1, "a", 2, 3]], dtype=object), "numeric array, got dtype object"),
    ([["a", "b", "c", "d"]], "numeric array, got dtype <U1"),
    ([[1, 2, 3, 4], [1, 2]], "must be an array of numbers"),
    (np.ones((2, 4), np.complex64), "numeric array, got dtype complex64"),
])
def test_object_string_ragged_and_complex_inputs_are_refused(bad, match):
    with pytest.raises(TypeError, match=match):
        mlp().predict(bad)
