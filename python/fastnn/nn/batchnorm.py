"""BatchNorm1d / BatchNorm2d (PyTorch's arguments, names and defaults: eps 1e-5, momentum 0.1)."""

import numpy as np

from .. import _validate as _v
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


def _flat_children(model):
    """The leaf layers of nested Sequentials, in order."""
    from .container import Sequential

    if isinstance(model, Sequential):
        out = []
        for child in model.children():
            out.extend(_flat_children(child))
        return out
    return [model]


def recompute_bn_statistics(model, X, batch_size=1024):
    """Replaces every BatchNorm's running statistics by the exact mean and (unbiased) variance of
    its input over the whole training set X, the post-training pass of the seeds ("code 2").

    Layers run in eval mode, in order, so each BatchNorm sees inputs normalized by the exact
    statistics of the ones before it. Returns the model (in eval mode).
    """
    batch_size = _v.check_int(batch_size, "recompute_bn_statistics", "batch_size", 1)
    layers = _flat_children(model)
    X = np.ascontiguousarray(X, dtype=model.dtype if hasattr(model, "dtype") else np.float32)
    if X.ndim < 2 or len(X) < 2:
        raise ValueError(f"recompute_bn_statistics: X must hold at least 2 samples, got shape {X.shape}")
    model.eval()
    for index, bn in enumerate(layers):
        if not isinstance(bn, _BatchNorm) or not bn.track_running_stats:
            continue
        total = 0
        s1 = s2 = None
        for start in range(0, len(X), batch_size):
            h = X[start:start + batch_size]
            for layer in layers[:index]:
                h = layer._layer.forward(np.ascontiguousarray(h), False, 0, 0)
            h = h.astype(np.float64).swapaxes(0, 1).reshape(bn.num_features, -1)  # (C, N*H*W)
            s1 = h.sum(1) if s1 is None else s1 + h.sum(1)
            s2 = (h * h).sum(1) if s2 is None else s2 + (h * h).sum(1)
            total += h.shape[1]
        mean = s1 / total
        var = np.maximum(s2 / total - mean * mean, 0.0) * total / (total - 1)
        bn.running_mean[...] = mean
        bn.running_var[...] = var
    return model


def fold_batchnorm(model):
    """An inference model: every BatchNorm that follows a Linear is folded into it.

    W' = scale * W and b' = scale * b + shift per output unit, with scale = gamma / sqrt(var + eps)
    and shift = beta - mean * scale from the running statistics. Other layers are copied as they
    are. Returns a new Sequential in eval mode; the given model is not changed.
    """
    from .container import Sequential
    from .linear import Linear

    layers = _flat_children(model)
    out = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, Linear) and isinstance(nxt, BatchNorm1d) and nxt.track_running_stats:
            gamma = nxt.weight.data if nxt.affine else 1.0
            beta = nxt.bias.data if nxt.affine else 0.0
            scale = gamma / np.sqrt(nxt.running_var + nxt.eps)
            shift = beta - nxt.running_mean * scale
            folded = Linear(layer.in_features, layer.out_features, bias=True, activation=layer.activation,
                            negative_slope=layer.negative_slope, dtype=layer.dtype)
            folded.weight.data[...] = layer.weight.data * scale[:, None]
            bias = layer.bias.data if layer.bias is not None else 0.0
            folded.bias.data[...] = bias * scale + shift
            out.append(folded)
            i += 2
            continue
        copy = _copy_layer(layer)
        out.append(copy)
        i += 1
    return Sequential(*out).eval()


def _copy_layer(layer):
    from ..io import _LAYERS

    cls = type(layer)
    if _LAYERS.get(cls.__name__) is not cls:
        raise TypeError(f"fold_batchnorm: cannot copy {cls.__name__} (only built-in layers)")
    copy = cls(**layer._config(), dtype=layer.dtype)
    copy.load_state_dict(layer.state_dict())
    return copy
