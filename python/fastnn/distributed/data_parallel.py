"""DataParallel: synchronous data-parallel training over MPI, as fit's ``distributed=`` plan.

Every rank holds the whole data set and the same model. Each epoch's seeded permutation is the
same on every rank; global batch b is samples [b B W, (b + 1) B W) of it (B = fit's batch_size,
W = ranks) and rank r trains on slice r of it (kernels: net/train.h shard_begin). After each
batch's backward the C++ loop calls the gradient hook (_GradientAverage): one sync carries each
rank's sample count, loss and running metric sums (and a failure flag, channel.py), then one
in-place allreduce sums the flat gradient, each rank's weighted by its share of the batch's
samples for a mean loss, so that the average is the gradient of the global batch (also for the
last, partial one). Every rank then takes the same optimizer step on the same gradient, so the
parameters stay bit-identical.
"""

import math

import numpy as np

from ..train import progress as _progress
from ..train.parallel import SingleProcess, nearest_batch_size, stat_values, with_stat_values
from . import world as _world
from .broadcast import broadcast_parameters
from .channel import DistributedError
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm
from .threads import share_cores

_SEED_BITS = 21  # a 63-bit seed travels as three float64-exact pieces


def _all_ranks(error):
    """Marks an error that every rank raises alike (no failure to announce)."""
    error._fastnn_all_ranks = True
    return error


class DataParallel(SingleProcess):
    """fit(..., distributed=DataParallel()): train on every rank of `comm`, one shard each.

    Args:
        comm: an mpi4py communicator (default: the one fastnn.distributed.init() set up, else
            MPI.COMM_WORLD).
        timeout: seconds each collective may wait for the other ranks before DistributedError.
        sync_batchnorm: False (default, as PyTorch DDP): each BatchNorm normalizes with its rank's
            shard statistics; True: fit first converts the model's BatchNorms to SyncBatchNorm
            (in place, keeping the parameters), whose training statistics are those of the global batch.
        broadcast: at the start of fit, copy rank 0's parameters, running statistics and optimizer
            state to the other ranks (as DDP does when it wraps a model).
        threads: this rank's fastnn threads (set_num_threads). None (default): at most its share of
            the cores it shares with the other ranks of its node (threads.py): unchanged when the
            launcher bound each rank to its own cores (mpirun's default), 1 each for 2 unbound
            ranks on 2 cores.

    Constructing it is a collective (one sync): every rank of `comm` constructs its DataParallel.

    evaluate(..., distributed=) and predict(..., distributed=) split the samples between the
    ranks and return the whole result on every rank. Only rank 0 prints (progress, epoch lines,
    callbacks' messages) and runs ModelCheckpoint and CSVLogger; every rank runs the other
    callbacks, on the reduced logs, so that EarlyStopping stops all ranks at the same epoch.
    """

    def __init__(self, comm=None, timeout=300.0, sync_batchnorm=False, broadcast=True, threads=None):
        if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0
                and math.isfinite(timeout)):
            raise ValueError(f"DataParallel: timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(sync_batchnorm, bool) or not isinstance(broadcast, bool):
            raise TypeError("DataParallel: sync_batchnorm and broadcast must be True or False")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"DataParallel: threads must be None or an int >= 1, got {threads!r}")
        self.channel = _world.channel(comm, timeout)
        self.rank, self.size = self.channel.rank, self.channel.size
        self.threads = share_cores(self.channel, threads)
        self.is_writer = self.rank == 0
        self.sync_batchnorm = sync_batchnorm
        self.broadcast = broadcast
        self._hook = None
        self._model = None
        self._depth = 0  # nested public calls (fit's validation runs evaluate's code) guard once

    # --- a public call ----------------------------------------------------------------------------

    def run(self, what, fn):
        """fn() on every rank; a rank that raises makes every rank raise (channel.py)."""
        if self._depth:
            return fn()
        self._depth += 1
        muted = _progress.muted
        _progress.muted = muted or not self.is_writer
        try:
            result = fn()
            self.channel.sync(f"{what} (finishing)")
            return result
        except BaseException as e:
            if isinstance(e, DistributedError) or getattr(e, "_fastnn_all_ranks", False):
                raise
            told = self.channel.fail(what, e)  # the other ranks raise DistributedError naming this one
            if hasattr(e, "add_note"):
                e.add_note(f"fastnn.distributed: {told}")
            raise
        finally:
            _progress.muted = muted
            self._depth -= 1

    # --- fit --------------------------------------------------------------------------------------

    def prepare_model(self, model):
        self._model = model
        if self.sync_batchnorm:
            convert_sync_batchnorm(model, self)

    def start(self, model, optimizer, n, batch_size, seed):
        pieces = [(seed >> (_SEED_BITS * i)) & ((1 << _SEED_BITS) - 1) for i in range(3)]
        n_params = int(model.flat_parameters().size)
        table = self.channel.sync("fit (checking the ranks agree)", [n, batch_size, n_params] + pieces)
        for column, name in ((0, "samples in X"), (1, "batch_size"), (2, "parameters")):
            if len(set(table[:, column])) > 1:
                values = ", ".join(f"rank {r}: {int(v)}" for r, v in enumerate(table[:, column]))
                raise _all_ranks(ValueError(f"fit: every rank must train on the same data and model, but the "
                                            f"{name} differ ({values})"))
        if self.broadcast:
            broadcast_parameters(model, optimizer, root=0, distributed=self)
        root = table[0, 3:6].astype(np.int64)
        return int(sum(int(p) << (_SEED_BITS * i) for i, p in enumerate(root)))

    def check_batches(self, model, n, batch_size, drop_last, keep_eval):
        """A SyncBatchNorm that trains is a collective in every batch's forward and backward, which
        every rank must join: refuse, before any training, the batches that would leave a rank an
        empty shard (the C++ loop skips that rank's forward) or give a SyncBatchNorm one value per
        channel over the global batch; the batches that drop_last drops do not count."""
        frozen = {id(m) for m in keep_eval}
        synced = [(name, m) for name, m in model.named_modules() if isinstance(m, SyncBatchNorm) and id(m) not in frozen]
        if not synced:
            return
        # values per channel per sample (an (N, C) input: 1); unknown before the module's first forward
        per_sample = min(m.values_per_sample or 1 for _, m in synced)

        def fails(b, drop_last):
            return next((c for c, shards in self.batch_counts(n, b, drop_last)
                         if 0 in shards or c * per_sample <= 1), None)
        bad = fails(batch_size, drop_last)
        if bad is None:
            return
        good = nearest_batch_size(batch_size, n, lambda b: fails(b, False) is None)
        fix = f"use e.g. batch_size={good} or drop_last=True" if good else "use drop_last=True"
        need = ("samples on every rank" if bad < self.size else "more than 1 value per channel")
        raise _all_ranks(ValueError(
            f"fit: SyncBatchNorm ({synced[0][0] or 'the model'}) synchronizes every batch and needs {need}, but the "
            f"last global batch of {n} samples by {batch_size} x {self.size} ranks has {bad}: {fix}"))

    def epoch_args(self, grads, reduction):
        self._hook = _GradientAverage(self.channel, grads, reduction == "mean")
        for m in self._model.modules():
            if isinstance(m, SyncBatchNorm):
                m.loss_reduction = reduction
        return {"shard": self.rank, "shards": self.size, "grad_hook": self._hook}

    def running(self, running):
        return self._hook.stats(running)

    def epoch_stats(self, stats):
        if not self.sync_batchnorm:
            self._average_running_statistics()
        return self._hook.stats(stats)

    def _average_running_statistics(self):
        """Local BatchNorm statistics make each rank's running averages its own; at the end of each
        epoch they become the ranks' mean (the same on every rank, so that validation, checkpoints
        and the next epoch agree; DDP instead copies rank 0's before every forward). The sum is
        taken in float64: ranks with equal values (a frozen BatchNorm) keep them exactly."""
        states = [get() for _, get in self._model._named_states()]
        if not states:
            return
        flat = np.concatenate([s.ravel() for s in states]).astype(np.float64)
        self.channel.sync("fit: averaging the BatchNorm running statistics")
        self.channel.allreduce_(flat, "fit: averaging the BatchNorm running statistics")
        flat /= self.size
        at = 0
        for s in states:
            s[...] = flat[at:at + s.size].reshape(s.shape)
            at += s.size

    def output(self, verbose, callbacks):
        if self.is_writer:
            return verbose, callbacks
        return 0, [cb for cb in callbacks if not getattr(cb, "writes_files", False)]

    def finish(self):
        self._hook = None

    # --- evaluate and predict --------------------------------------------------------------------

    def rows(self, n):
        begin = self.rank * (n // self.size) + min(self.rank, n % self.size)
        end = (self.rank + 1) * (n // self.size) + min(self.rank + 1, n % self.size)
        return slice(begin, end)

    def reduce_stats(self, stats, what):
        return with_stat_values(stats, self.channel.sync(what, stat_values(stats)).sum(axis=0))

    def gather_rows(self, local, what):
        counts = self.channel.sync(what, [local.shape[0]])[:, 0].astype(np.int64)
        return self.channel.allgatherv(local, counts, what)


class _GradientAverage:
    """The C++ loop's gradient hook for one epoch: (batch, count, loss, running correct, top-k,
    absolute and squared error sums) -> the global batch loss, after averaging the gradient."""

    def __init__(self, channel, grads, mean):
        self.channel, self.grads, self.mean = channel, grads, mean
        self.samples = self.loss_sum = 0.0
        self.running = [0.0] * 4  # correct, top_k_correct, abs_error, sq_error: the epoch's, all ranks

    def __call__(self, batch, count, loss, correct, top_k, abs_error, sq_error):
        what = f"fit: batch {batch + 1}"
        share = loss * count if self.mean else loss
        total = self.channel.sync(what, [count, share, correct, top_k, abs_error, sq_error]).sum(axis=0)
        samples = total[0]
        self.samples += samples
        self.loss_sum += total[1]
        self.running = list(total[2:6])
        loss = total[1] / samples if self.mean else total[1]
        if not math.isfinite(loss):
            return loss  # no rank steps
        if self.grads is not None and self.grads.size:
            if self.mean and count != samples:  # this rank's gradient is the mean over its `count` samples
                self.grads *= self.grads.dtype.type(count / samples)
            self.channel.allreduce_(self.grads, what + " (gradient allreduce)")
        return loss

    def stats(self, local):
        """local (the C++ loop's statistics of this rank) with the sums of all ranks."""
        return with_stat_values(local, [self.samples, self.loss_sum] + self.running)
