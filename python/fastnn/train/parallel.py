"""How fit, evaluate and predict divide their work between processes: the plan of one process.

fit's `distributed=` takes a plan; None is this one, under which every hook does nothing and
fit trains as it always has. fastnn.distributed.DataParallel is the plan of data-parallel training
over MPI: it overrides these hooks (shards of each global batch, the gradient average, reduced
statistics, rank 0's output and files), so that the loop itself is written once, in fit.py.
"""

import functools
import math

_STAT_KEYS = ("samples", "loss_sum", "correct", "top_k_correct", "abs_error", "sq_error")
EMPTY_STATS = {"loss_sum": 0.0, "correct": 0, "samples": 0, "batches": 0, "nonfinite_batch": -1,
               "top_k_correct": 0, "abs_error": 0.0, "sq_error": 0.0}


class SingleProcess:
    """fit's plan in one process (``distributed=None``)."""

    rank, size = 0, 1
    is_writer = True  # prints, writes checkpoints and logs

    def run(self, what, fn):
        """Runs one public call (fit, evaluate, predict)."""
        return fn()

    def prepare_model(self, model):
        """Before the optimizer is made: what the plan changes in the model (none here)."""

    def start(self, model, optimizer, n, batch_size, seed):
        """Before the first epoch, once the optimizer exists; returns the seed every process uses."""
        return seed

    def batches(self, n, batch_size, drop_last=False):
        """Optimizer steps per epoch: global batches of batch_size samples per process, the last one
        partial unless drop_last (as net/train.h epoch_batches counts them)."""
        global_batch = batch_size * self.size
        return n // global_batch if drop_last else math.ceil(n / global_batch)

    def batch_counts(self, n, batch_size, drop_last=False):
        """The distinct sample counts of an epoch's global batches, each with its shards' (one per
        process, as net/train.h shard_begin cuts them: equal slices, the first count % processes one
        sample longer; a process whose shard is empty skips that batch's forward and backward):
        [(global count, (count of process 0, 1, ...))], the full batches' first."""
        global_batch = batch_size * self.size
        counts = [global_batch] if n >= global_batch else []
        if n % global_batch and not drop_last:
            counts.append(n % global_batch)
        return [(c, tuple(c // self.size + (r < c % self.size) for r in range(self.size))) for c in counts]

    def check_batches(self, model, n, batch_size, drop_last, keep_eval):
        """Before the first epoch: what the plan cannot train with these batches raises (nothing here).
        keep_eval: the modules fit keeps in eval mode."""

    def rows(self, n):
        """This process's rows of a data set of n samples (evaluate, predict)."""
        return slice(0, n)

    def epoch_args(self, grads, reduction):
        """Extra keyword arguments of _C.train_epoch for one epoch."""
        return {}

    def running(self, running):
        """The epoch's statistics so far, as the progress bar shows them."""
        return running

    def epoch_stats(self, stats):
        """The epoch's statistics as the logs report them."""
        return stats

    def reduce_stats(self, stats, what):
        """evaluate's statistics of this process's rows, made those of all rows."""
        return stats

    def gather_rows(self, local, what):
        """predict's outputs of this process's rows, made those of all rows."""
        return local

    def output(self, verbose, callbacks):
        """(verbose, callbacks) of this process."""
        return verbose, callbacks

    def finish(self):
        """After the last epoch."""


LOCAL = SingleProcess()


def nearest_batch_size(batch_size, n, works):
    """The batch size nearest `batch_size` in [1, n] (the larger first) for which works(b), or None:
    what an error about the batches suggests instead."""
    return next((b for k in range(1, n) for b in (batch_size + k, batch_size - k) if 1 <= b <= n and works(b)), None)


def plan_of(distributed, fn):
    """The plan of `distributed` (None: one process)."""
    if distributed is None:
        return LOCAL
    if not isinstance(distributed, SingleProcess):
        raise TypeError(f"{fn}: distributed must be a fastnn.distributed.DataParallel or None, "
                        f"got {type(distributed).__name__}")
    return distributed


def planned(what):
    """Runs the decorated fit/evaluate/predict(..., distributed=None) under its plan's run()."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, distributed=None, **kwargs):
            plan = plan_of(distributed, what)
            return plan.run(what, lambda: fn(*args, distributed=plan, **kwargs))
        return call
    return wrap


def stat_values(stats):
    """The summable statistics of an epoch or evaluation, in _STAT_KEYS order."""
    return [float(stats[k]) for k in _STAT_KEYS]


def with_stat_values(stats, values):
    """stats with its summable statistics replaced by `values` (_STAT_KEYS order)."""
    out = dict(stats)
    for k, v in zip(_STAT_KEYS, values):
        out[k] = int(round(v)) if isinstance(stats[k], int) else float(v)
    return out
