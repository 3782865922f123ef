"""SyncBatchNorm: BatchNorm whose training statistics are those of the global batch across ranks.

A module written in Python (NumPy), as PyTorch's SyncBatchNorm replaces BatchNorm: forward sums
each channel's values and squares (about the running mean, in float64) over the rank's shard,
allreduces them and normalizes with the global mean and biased variance; the running averages
are updated with the global unbiased variance, identically on every rank. Backward allreduces
the two per-channel sums that couple the samples, sum(g) and sum(g * x_hat).

The ranks' gradients are averaged after backward with weights w_r (DataParallel: n_r / n for a
mean loss, 1 for a sum), so rank r's backward carries dL/d(.) / w_r; then the exact input
gradient of the global batch (n values per channel over all ranks) is, on rank r,

    dx = gamma * invstd * (g - (G1 + x_hat * G2) / (n * w_r)),   G1 = sum_r w_r sum(g),
                                                                  G2 = sum_r w_r sum(g * x_hat)

(with one rank and w = 1 the usual BatchNorm backward), and the parameter gradients are the
rank's own sums (DataParallel weighs and adds them). In eval mode it is the running statistics'
affine, with no communication.
"""

import numpy as np

from ..nn.batchnorm import BatchNorm1d, BatchNorm2d, _BatchNorm
from ..nn.container import Container
from ..nn.module import Module


class SyncBatchNorm(Module):
    """BatchNorm1d/2d with batch statistics over every rank (see the module docstring).

    Made by convert_sync_batchnorm from a BatchNorm, whose parameters it takes over (an optimizer
    holding them keeps working); the state_dict has BatchNorm's names, and fastnn.save stores it
    as that BatchNorm (a saved model loads with plain BatchNorms, on any number of ranks). In
    training mode every rank must run it (model(x), fit): its forward and backward are collectives.
    """

    def __init__(self, bn, distributed):
        super().__init__()
        if not isinstance(bn, _BatchNorm):
            raise TypeError(f"SyncBatchNorm: expected a BatchNorm1d or BatchNorm2d, got {type(bn).__name__}")
        self._kind = type(bn)
        for key in bn._config_keys:
            object.__setattr__(self, key, getattr(bn, key))
        if bn.affine:
            for name in ("weight", "bias"):
                p = bn._parameters[name]
                p.owner = None  # no C++ layer reads it any more: it is this Python module's
                setattr(self, name, p)
        self._running = {}
        if bn.track_running_stats:
            for name in ("running_mean", "running_var"):
                self._running[name] = np.array(bn._states[name](), copy=True)
                self._states[name] = (lambda n=name: self._running[n])
        self.training = bn.training
        # values per channel that one sample gives (fit's check of the batch sizes): the shape the
        # BatchNorm's C++ layer last saw, None before any forward
        shapes = [tuple(layer.last_input_shape) for layer in bn._cpp_layers()]
        self.values_per_sample = next((int(np.prod(s[2:])) for s in shapes if len(s) >= 2), None)
        self.distributed = distributed
        self.loss_reduction = "mean"  # how DataParallel weighs this rank's gradient (fit sets it)
        self._saved = None

    def _saved_as(self):
        """The BatchNorm that fastnn.save describes in place of this module."""
        bn = self._kind(self.num_features, eps=self.eps, momentum=self.momentum, affine=self.affine,
                        track_running_stats=self.track_running_stats, dtype=self._dtype())
        bn.load_state_dict(self.state_dict())
        bn.train(self.training)
        return bn

    def _config(self):
        return {key: getattr(self, key) for key in self._kind._config_keys}

    def _dtype(self):
        if self.affine:
            return self.weight.data.dtype
        return self._running["running_mean"].dtype if self._running else np.float32

    def output_shape(self, shape):
        ok = len(shape) == 4 if self._kind is BatchNorm2d else len(shape) in (2, 3)
        if not ok or shape[1] != self.num_features:
            raise ValueError(f"SyncBatchNorm: expected input {'(N, C, H, W)' if self._kind is BatchNorm2d else '(N, C)'}"
                             f" with C = {self.num_features}, got {tuple(shape)}")
        return tuple(shape)

    def forward(self, x):
        self.output_shape(x.shape)
        n, c = x.shape[0], x.shape[1]
        self.values_per_sample = int(np.prod(x.shape[2:]))
        xs = x.reshape(n, c, -1)
        use_batch = self.training or not self.track_running_stats
        if use_batch and self.training:
            mean, var, total = self._global_moments(xs)
            if self.track_running_stats:
                m = self.momentum
                self._running["running_mean"][...] = (1 - m) * self._running["running_mean"] + m * mean
                self._running["running_var"][...] = (1 - m) * self._running["running_var"] + m * var * (total / (total - 1))
        elif use_batch:  # eval without running statistics: this rank's batch (evaluate shards differ per rank)
            d = xs.astype(np.float64)
            mean, var, total = d.mean(axis=(0, 2)), d.var(axis=(0, 2)), float(d.shape[0] * d.shape[2])
        else:
            mean = self._running["running_mean"].astype(np.float64)
            var = self._running["running_var"].astype(np.float64)
            total = None
        invstd = 1.0 / np.sqrt(var + self.eps)
        x_hat = (xs - mean[None, :, None]) * invstd[None, :, None]
        gamma, beta = self._affine()
        y = x_hat * gamma[None, :, None] + beta[None, :, None]
        self._saved = (x_hat, invstd, total, self.training and use_batch, xs.shape[0] * xs.shape[2])
        return y.astype(x.dtype, copy=False).reshape(x.shape)

    def backward(self, grad_out):
        x_hat, invstd, total, synced, local = self._saved
        n, c = grad_out.shape[0], grad_out.shape[1]
        g = grad_out.reshape(n, c, -1).astype(np.float64)
        s1 = g.sum(axis=(0, 2))
        s2 = (g * x_hat).sum(axis=(0, 2))
        if self.affine:
            if self.weight.requires_grad:
                self.weight.grad[...] += s2.astype(self.weight.grad.dtype)
            if self.bias.requires_grad:
                self.bias.grad[...] += s1.astype(self.bias.grad.dtype)
        gamma, _ = self._affine()
        if synced:
            w = local / total if self.loss_reduction == "mean" else 1.0
            sums = np.concatenate([w * s1, w * s2])
            channel = self.distributed.channel
            channel.sync("SyncBatchNorm backward")
            channel.allreduce_(sums, "SyncBatchNorm backward (allreduce)")
            scale = total * w
            dx = g - (sums[None, :c, None] + x_hat * sums[None, c:, None]) / scale
        elif total is not None:  # batch statistics of this rank alone
            dx = g - (s1[None, :, None] + x_hat * s2[None, :, None]) / total
        else:
            dx = g
        dx *= (gamma * invstd)[None, :, None]
        return dx.astype(grad_out.dtype, copy=False).reshape(grad_out.shape)

    def _affine(self):
        if self.affine:
            return self.weight.data.astype(np.float64), self.bias.data.astype(np.float64)
        return np.ones(self.num_features), np.zeros(self.num_features)

    def _global_moments(self, xs):
        """(mean, biased variance, values per channel) over every rank's batch."""
        shift = self._running["running_mean"].astype(np.float64) if self._running else np.zeros(xs.shape[1])
        d = xs.astype(np.float64) - shift[None, :, None]
        local = xs.shape[0] * xs.shape[2]
        sums = np.concatenate([d.sum(axis=(0, 2)), np.square(d).sum(axis=(0, 2))])
        channel = self.distributed.channel
        total = float(channel.sync("SyncBatchNorm forward", [local])[:, 0].sum())
        channel.allreduce_(sums, "SyncBatchNorm forward (allreduce)")
        if total <= 1:
            raise ValueError(f"SyncBatchNorm: expected more than 1 value per channel when training, got {int(total)} "
                             "over all ranks")
        c = xs.shape[1]
        mean_d = sums[:c] / total
        var = np.maximum(sums[c:] / total - mean_d * mean_d, 0.0)
        return shift + mean_d, var, total

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


def convert_sync_batchnorm(model, distributed=None):
    """Replaces every BatchNorm1d/BatchNorm2d child of the model's containers by a SyncBatchNorm
    that takes over its parameters and running statistics (PyTorch's
    SyncBatchNorm.convert_sync_batchnorm); returns the model. DataParallel(sync_batchnorm=True)
    does it at fit's start. distributed: the DataParallel whose communicator to use."""
    from .data_parallel import DataParallel

    plan = DataParallel() if distributed is None else distributed
    if isinstance(model, _BatchNorm):
        raise TypeError("convert_sync_batchnorm: the model is a BatchNorm itself; put it in a Sequential")
    for container in list(model.modules()):
        for name, child in list(container.named_children()):
            if not isinstance(child, (BatchNorm1d, BatchNorm2d)):
                continue
            if not isinstance(container, Container) or not container._composed:
                raise ValueError(f"convert_sync_batchnorm: the BatchNorms inside {type(container).__name__} are part "
                                 "of its C++ layer and cannot be synchronized; use sync_batchnorm=False")
            setattr(container, name, SyncBatchNorm(child, plan))
    return model
