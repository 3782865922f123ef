"""fit() with a second-order optimizer: the C++ full-batch objective equals the Python loss, fit's
iterates equal step(closure)'s, one History entry per step, batches, weight decay, errors."""

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from tests.conftest import DTYPES


def _data(rng, n=300, features=6, classes=3, dtype=np.float64):
    X = rng.standard_normal((n, features)).astype(dtype)
    w = rng.standard_normal((features, classes))
    y = np.argmax(X @ w + 0.3 * rng.standard_normal((n, classes)), axis=1)
    return X, y


def _model(dtype, features=6, classes=3, hidden=None):
    if hidden:
        return nn.Sequential(nn.Linear(features, hidden, dtype=dtype), nn.Tanh(), nn.Linear(hidden, classes, dtype=dtype))
    return nn.Sequential(nn.Linear(features, classes, dtype=dtype))


def _closure(model, X, y, wd=0.0):
    loss_fn = nn.CrossEntropyLoss()

    def closure():
        model.zero_grad()
        loss = loss_fn(model(X), y)
        model.backward(loss_fn.backward())
        return loss

    return closure


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_takes_the_same_steps_as_step_closure(rng, dtype):
    X, y = _data(rng, dtype=dtype)
    a, b = _model(dtype, hidden=5), _model(dtype, hidden=5)
    b.flat_parameters()[...] = a.flat_parameters()
    kw = dict(max_iter=6, history_size=4, line_search_fn="strong_wolfe", weight_decay=1e-3)
    opt_a, opt_b = optim.LBFGS(a.parameters(), **kw), optim.LBFGS(b.parameters(), **kw)
    hist = fastnn.fit(a, X, y, optimizer=opt_a, epochs=3, verbose=0)
    for _ in range(3):
        opt_b.step(_closure(b, X, y))
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a.flat_parameters(), b.flat_parameters(), rtol=tol, atol=tol)
    assert len(hist.history["loss"]) == 3
    assert hist.history["loss"][-1] == pytest.approx(opt_b.last_result.loss, rel=1e-4 if dtype == np.float32 else 1e-9)
    assert hist.history["loss"][0] > hist.history["loss"][-1]
    assert all(e >= i for e, i in zip(hist.history["evaluations"], hist.history["iterations"]))
    assert 0 <= hist.history["accuracy"][-1] <= 1


def test_full_batch_objective_is_the_mean_loss_plus_l2(rng):
    X, y = _data(rng, n=1000)
    model = _model(np.float64)
    opt = optim.LBFGS(model.parameters(), weight_decay=0.01)
    from fastnn.train.full_batch import _objective

    obj = _objective(model, X, y, "cross_entropy", "mean", opt, 0)
    buffer = opt.buffer
    f = obj()
    g = buffer.grads.copy()
    closure = _closure(model, X, y)
    f_ref = closure()
    theta = buffer.params.copy()  # weight_decay covers every parameter of its group, biases too (torch)
    f_ref += 0.5 * 0.01 * float((theta * theta).sum())
    g_ref = buffer.grads.copy() + 0.01 * theta
    assert f == pytest.approx(f_ref, rel=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("make", [
    lambda p: optim.ConjugateGradient(p, max_iter=10),
    lambda p: optim.BFGS(p, max_iter=10),
    lambda p: optim.HessianFree(p, max_iter=3),
    lambda p: optim.Newton(p, max_iter=2, damping=1e-4),
])
def test_other_methods_train_full_batch(rng, make):
    X, y = _data(rng, n=120)
    model = _model(np.float64)
    opt = make(model.parameters())
    hist = fastnn.fit(model, X, y, optimizer=opt, epochs=2, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] or opt.last_result.converged


def test_large_batches_and_validation(rng):
    X, y = _data(rng, n=200)
    model = _model(np.float64)
    hist = fastnn.fit(model, X, y, optimizer=optim.LBFGS(model.parameters(), max_iter=3), batch_size=64, epochs=2,
                      validation_split=0.2, verbose=0, seed=1)
    assert len(hist.history["val_loss"]) == 2 and hist.history["iterations"][0] > 3  # 3 batches of one step each


def test_errors(rng):
    X, y = _data(rng, n=50)
    model = _model(np.float64)
    opt = optim.LBFGS(model.parameters())
    with pytest.raises(ValueError, match="clipping"):
        fastnn.fit(model, X, y, optimizer=opt, clip_grad_norm=1.0, verbose=0)
    other = _model(np.float64)
    with pytest.raises(ValueError, match="another model"):
        fastnn.fit(other, X, y, optimizer=opt, verbose=0)
    with pytest.raises(TypeError, match="closure"):
        opt.step()
    Xbad = X.copy()
    model2 = _model(np.float64)
    model2.flat_parameters()[0] = np.inf
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        fastnn.fit(model2, Xbad, y, optimizer=optim.LBFGS(model2.parameters()), verbose=0)


def test_first_order_fit_default_batch_size_unchanged(rng):
    X, y = _data(rng, n=100)
    model = _model(np.float32)
    hist = fastnn.fit(model, X.astype(np.float32), y, optimizer="sgd", verbose=0)
    assert len(hist.history["loss"]) == 1


def test_iteration_callbacks_see_every_iteration_and_can_stop(rng):
    X, y = _data(rng, n=100)
    model = _model(np.float64)

    class Recorder(fastnn.train.callbacks.Callback):
        def __init__(self, stop_after=None):
            self.seen, self.stop_after = [], stop_after

        def on_iteration(self, iteration, logs):
            self.seen.append((iteration, logs["loss"]))
            if self.stop_after and len(self.seen) >= self.stop_after:
                self.fit_state.stop_training = True

    rec = Recorder()
    opt = optim.LBFGS(model.parameters(), max_iter=5, line_search_fn="strong_wolfe")
    hist = fastnn.fit(model, X, y, optimizer=opt, epochs=1, verbose=0, callbacks=[rec])
    assert len(rec.seen) == hist.history["iterations"][0]
    assert rec.seen[-1][1] == pytest.approx(hist.history["loss"][0])
    losses = [loss for _, loss in rec.seen]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    stopper = Recorder(stop_after=2)
    hist = fastnn.fit(model, X, y, optimizer=optim.LBFGS(model.parameters(), max_iter=10), epochs=3, verbose=0,
                      callbacks=[stopper])
    assert len(stopper.seen) == 2 and len(hist.history["loss"]) == 1


def test_frozen_parameters_stay_and_a_partial_optimizer_is_refused(rng):
    X, y = _data(rng, n=80)
    model = _model(np.float64, hidden=4)
    model[0].weight.requires_grad = False
    frozen = model[0].weight.data.copy()
    fastnn.fit(model, X, y, optimizer=optim.LBFGS(model.parameters(), max_iter=3), verbose=0)
    np.testing.assert_array_equal(model[0].weight.data, frozen)
    model[0].weight.requires_grad = True
    with pytest.raises(ValueError, match="all of the model's trainable parameters"):
        fastnn.fit(model, X, y, optimizer=optim.LBFGS(model[2].parameters()), verbose=0)


@pytest.mark.parametrize("gauss_newton", [True, False])
def test_full_batch_curvature_is_the_exact_product_plus_l2(rng, gauss_newton):
    X, y = _data(rng, n=500)
    model = _model(np.float64, hidden=7)
    opt = optim.HessianFree(model.parameters(), weight_decay=0.01)
    from fastnn.train.full_batch import _objective

    obj = _objective(model, X, y, "cross_entropy", "mean", opt, 0)
    assert obj.has_curvature
    buffer = opt.buffer
    obj()
    grads = buffer.grads.copy()
    v = rng.standard_normal(buffer.params.size)
    product = (fastnn.gnvp if gauss_newton else fastnn.hvp)(model, "cross_entropy", X, y, v)
    got = obj.curvature(v, gauss_newton)
    np.testing.assert_allclose(got, product + 0.01 * v, rtol=1e-10, atol=1e-12 * np.abs(product).max())
    np.testing.assert_array_equal(buffer.grads, grads)  # the gradient buffer is left as it was
    assert obj.products == 1
    with pytest.raises(ValueError, match="flat vector"):
        obj.curvature(v[:-1])


def test_hessian_free_and_newton_in_fit_use_exact_products(rng):
    """No finite differences: every curvature product is counted as one (none is an evaluation), and
    both reach L-BFGS's minimum of a convex logistic regression."""
    X, y = _data(rng, n=400)
    losses = {}
    for name, make in [("lbfgs", lambda p: optim.LBFGS(p, max_iter=200, tolerance_grad=1e-10,
                                                         line_search_fn="strong_wolfe", weight_decay=1e-3)),
                       ("hf", lambda p: optim.HessianFree(p, max_iter=30, tolerance_grad=1e-10, weight_decay=1e-3)),
                       ("newton_cg", lambda p: optim.HessianFree(p, max_iter=30, tolerance_grad=1e-10,
                                                                 weight_decay=1e-3, curvature="hessian")),
                       ("newton", lambda p: optim.Newton(p, max_iter=10, tolerance_grad=1e-10, weight_decay=1e-3))]:
        model = _model(np.float64)
        model.flat_parameters()[...] = 0
        opt = make(model.parameters())
        hist = fastnn.fit(model, X, y, optimizer=opt, epochs=1, verbose=0)
        losses[name] = hist.history["loss"][0]
        products = hist.history["products"][0]
        if name == "lbfgs":
            assert products == 0
        elif name == "newton":  # the dense Hessian from n products per iteration
            n = model.flat_parameters().size
            assert products > 0 and products % n == 0
        else:
            assert products == opt.state["scalars"][1] > 0
    for name in ("hf", "newton_cg", "newton"):
        assert losses[name] == pytest.approx(losses["lbfgs"], rel=1e-8), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,kind", [("cross_entropy", "labels"), ("cross_entropy", "probs"),
                                       ("bce_with_logits", "binary"), ("mse", "values")])
def test_linear_model_curvature_in_one_pass_matches_hvp(rng, dtype, loss, kind):
    """A model that is one Linear takes linear_curvature (one pass, [W; V] stacked), or after an
    evaluation at the same point linear_curvature_at (the kept outputs z, only x V^T); the layers'
    R-operator (fastnn.hvp) is the reference, also after the parameters moved (the kept z is stale)."""
    from tests.kernels.test_linear_loss import problem

    n, d, c = 1300, 9, 4
    X, y, _, _ = problem(rng, n, d, c, dtype, kind)
    model = nn.Sequential(nn.Linear(d, c, dtype=dtype))
    model.flat_parameters()[...] = rng.standard_normal(model.flat_parameters().size)
    opt = optim.HessianFree(model.parameters())
    from fastnn.train.full_batch import _objective

    obj = _objective(model, X, y, loss, "mean", opt, 0)
    v = rng.standard_normal(model.flat_parameters().size).astype(dtype)
    for evaluate in (False, True, False):
        if evaluate:
            obj()
        else:
            model.flat_parameters()[...] += 0.25
        want = fastnn.hvp(model, loss, X, y, v)
        for gauss_newton in (True, False):
            got = obj.curvature(v, gauss_newton)
            scale = np.abs(want).max()
            np.testing.assert_allclose(got, want, rtol=0, atol=(1e-4 if dtype == np.float32 else 1e-11) * scale)
