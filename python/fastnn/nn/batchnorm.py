"""BatchNorm1d / BatchNorm2d (PyTorch's arguments, names and defaults: eps 1e-5, momentum 0.1)."""

import numpy as np

from ._layer_module import LayerModule, layer_factory


class _BatchNorm(LayerModule):
    _spatial = 0
    _config_keys = ("num_features", "eps", "momentum", "affine", "track_running_stats")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        if momentum is None:
            raise ValueError(f"{type(self).__name__}: momentum=None (cumulative average) is not supported")
        factory = layer_factory("BatchNorm", int(num_features), float(eps), float(momentum), bool(affine),
                                bool(track_running_stats), self._spatial)
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
