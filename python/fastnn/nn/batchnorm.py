"""BatchNorm1d / BatchNorm2d (PyTorch's arguments, names and defaults: eps 1e-5, momentum 0.1)."""

import numpy as np

from .. import _validate as _v
from .._config import _C
from ._layer_module import LayerModule, layer_factory


class _BatchNorm(LayerModule):
    _spatial = 0
    _config_keys = ("num_features", "eps", "momentum", "affine", "track_running_stats")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        fn = type(self).__name__
        if momentum is None:
            raise ValueError(f"{fn}: momentum=None (cumulative average) is not supported")
        num_features = _v.check_int(num_features, fn, "num_features", 1)
        eps = _v.check_real(eps, fn, "eps", 0, low_open=True)
        momentum = _v.check_real(momentum, fn, "momentum", 0, 1)
        affine = _v.check_bool(affine, fn, "affine")
        track_running_stats = _v.check_bool(track_running_stats, fn, "track_running_stats")
        factory = layer_factory("BatchNorm", num_features, eps, momentum, affine, track_running_stats, self._spatial)
        super().__init__(factory, dtype)
        if affine:
            self._parameters["weight"].data[...] = 1
            self._parameters["bias"].data[...] = 0
        for name, value in (("num_features", num_features), ("eps", eps), ("momentum", momentum),
                            ("affine", affine), ("track_running_stats", track_running_stats)):
            object.__setattr__(self, name, value)

    @property
    def weight(self):
        return self._parameters.get("weight")

    @property
    def bias(self):
        return self._parameters.get("bias")

    @property
    def running_mean(self):
        return self._states["running_mean"]() if "running_mean" in self._states else None

    @property
    def running_var(self):
        return self._states["running_var"]() if "running_var" in self._states else None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Normalizes each feature over the batch: (N, C) or (N, C, L).

    Training: z_hat = (z - mu_B) / sqrt(var_B + eps), y = gamma * z_hat + beta, with the minibatch
    mean and biased variance; running averages (unbiased variance) are updated with `momentum`.
    Eval: the folded affine y = (gamma / sqrt(var + eps)) z + (beta - gamma mu / sqrt(var + eps)).
    """

    _spatial = 0


class BatchNorm2d(_BatchNorm):
    """Normalizes each channel of (N, C, H, W) over its N*H*W values (see BatchNorm1d)."""

    _spatial = 2


def recompute_bn_statistics(model, X, batch_size=1024):
    """Replaces every BatchNorm's running statistics by the exact mean and (unbiased) variance of
    its input over the whole training set X, the post-training pass of the seeds ("code 2").

    Works through any container (Sequential, Residual, Concat, DenseBlock, modules written in
    Python): the whole model runs in eval mode, once per BatchNorm in the order they run, while
    that BatchNorm adds up its input (float64 sums in C++); so each one sees inputs normalized by
    the exact statistics of the ones before it (each pass ends at its BatchNorm). Returns the
    model (in eval mode).
    """
    from .container import Sequential

    batch_size = _v.check_int(batch_size, "recompute_bn_statistics", "batch_size", 1)
    runner = model if isinstance(model, LayerModule) else Sequential(model)  # as fit runs a Python module
    X = np.ascontiguousarray(X, dtype=runner.dtype)
    if X.ndim < 2 or len(X) < 2:
        raise ValueError(f"recompute_bn_statistics: X must hold at least 2 samples, got shape {X.shape}")
    names = {id(m): name for name, m in model.named_modules()}
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    model.eval()
    if not bns:
        return model

    def sweep(targets):
        """{id(bn): (tick, count, shift, sum, sum of squares)} of one eval pass over X (that ends
        at the BatchNorm when there is one)."""
        for bn in targets:
            bn._layer.collect_statistics(True, len(targets) == 1)
        try:
            for start in range(0, len(X), batch_size):
                try:
                    runner._layer.forward(X[start:start + batch_size], False, 0, 0, True)
                except _C.StopForward:
                    pass
        finally:
            for bn in targets:
                bn._layer.collect_statistics(False)
        out = {}
        for bn in targets:
            out[id(bn)] = bn._layer.collected_statistics()
            if out[id(bn)][1] < 2:
                raise RuntimeError(f"recompute_bn_statistics: {type(bn).__name__} {names[id(bn)]!r} did not run "
                                   "in the model's eval-mode forward, so its input is unknown")
        return out

    def update(bn, stats):
        _, n, shift, s1, s2 = stats
        bn.running_mean[...] = shift + s1 / n
        bn.running_var[...] = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)

    # The first pass collects at all of them and tells the order they run in; its result is
    # exact for the first one only.
    first = sweep(bns)
    bns.sort(key=lambda bn: first[id(bn)][0])
    update(bns[0], first[id(bns[0])])
    for bn in bns[1:]:
        update(bn, sweep([bn])[id(bn)])
    return model


def fold_batchnorm(model):
    """An inference model: every BatchNorm that directly follows a Linear (BatchNorm1d) or a
    Conv2d (BatchNorm2d) in a Sequential is folded into it, inside any container.

    W' = scale * W and b' = scale * b + shift per output unit or channel, with
    scale = gamma / sqrt(var + eps) and shift = beta - mean * scale from the running statistics.
    Nested Sequentials are flattened into one; other containers keep their structure with their
    children folded; other layers are copied as they are. Returns a new model in eval mode; the
    given model is not changed.
    """
    return _fold(model).eval()


def _fold(module):
    from .container import Container, Sequential

    if type(module) is Sequential:
        layers = _flat_sequence(module)
        out = []
        i = 0
        while i < len(layers):
            folded = _fold_pair(layers[i], layers[i + 1]) if i + 1 < len(layers) else None
            if folded is not None:
                out.append(folded)
                i += 2
            else:
                out.append(_fold(layers[i]))
                i += 1
        return Sequential(*out)
    if isinstance(module, Container) and module._composed:
        children = [(name, _fold(child)) for name, child in module.named_children()]
        return type(module)._from_children(module._config(), children, module.dtype)
    return _copy_layer(module)


def _flat_sequence(model):
    """The children of nested Sequentials (exactly Sequential, not subclasses), in order."""
    from .container import Sequential

    if type(model) is Sequential:
        return [m for child in model.children() for m in _flat_sequence(child)]
    return [model]


def _fold_pair(layer, bn):
    """`layer` with `bn` folded into it, or None when they do not fold."""
    from .linear import Linear

    try:
        from .conv import Conv2d
    except ImportError:  # before nn.Conv2d exists
        Conv2d = ()
    if not (isinstance(bn, _BatchNorm) and bn.track_running_stats):
        return None
    if type(layer) is Linear and type(bn) is BatchNorm1d and layer.activation == "none":
        pass  # a Linear with a fused activation applies it before the BatchNorm: nothing to fold
    elif Conv2d and type(layer) is Conv2d and type(bn) is BatchNorm2d:
        pass
    else:
        return None
    w = layer.weight.data.astype(np.float64)
    gamma = bn.weight.data.astype(np.float64) if bn.affine else 1.0
    beta = bn.bias.data.astype(np.float64) if bn.affine else 0.0
    scale = gamma / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    shift = beta - bn.running_mean * scale
    folded = type(layer)(**{**layer._config(), "bias": True}, dtype=layer.dtype)
    folded.weight.data[...] = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    bias = layer.bias.data.astype(np.float64) if layer.bias is not None else 0.0
    folded.bias.data[...] = bias * scale + shift
    return folded


def _copy_layer(layer):
    from ..io import _LAYERS

    cls = type(layer)
    if _LAYERS.get(cls.__name__) is not cls:
        raise TypeError(f"fold_batchnorm: cannot copy {cls.__name__} (only built-in layers)")
    copy = cls(**layer._config(), dtype=layer.dtype)
    copy.load_state_dict(layer.state_dict())
    return copy
