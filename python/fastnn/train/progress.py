"""Progress display of fit(): a Keras-like bar (done/total, ETA, running loss and metrics) rewritten in place on
a terminal; elsewhere (logs, pipes, notebooks' captured output) only one line per epoch, with no
carriage-return frames. verbose=1 and verbose=2 write the same epoch line to the same stream
(sys.stdout, as Keras)."""

import sys
import time


# True while fit runs on a rank other than 0 of a data-parallel job (fastnn.distributed): one
# rank prints.
muted = False


def write_line(text, file=None):
    """One line of fit's or a callback's output, on the stream of the epoch lines."""
    if muted:
        return
    file = file or sys.stdout
    file.write(text + "\n")
    file.flush()


def _duration(seconds):
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


class ProgressBar:
    """One epoch's bar on a terminal: ``epoch 2/5 [=========>....] 12/40 ETA 1.2s loss 0.1234 accuracy 0.9612``."""

    width = 30

    def __init__(self, total, desc, file):
        self.total, self.desc, self.file = total, desc, file
        self.start = time.perf_counter()
        self._last_len = 0

    def update_to(self, done, running):
        """running: {name: value} of the epoch so far (loss, then fit's metrics)."""
        elapsed = time.perf_counter() - self.start
        filled = int(self.width * done / max(self.total, 1))
        arrow = ">" if 0 < filled < self.width else ""
        bar = "=" * max(filled - len(arrow), 0) + arrow + "." * (self.width - filled)
        eta = elapsed / done * (self.total - done) if done else 0.0
        shown = " ".join(f"{name} {value:.4f}" for name, value in running.items())
        text = f"{self.desc} [{bar}] {done}/{self.total} ETA {_duration(eta)} {shown}"
        self.file.write("\r" + text + " " * max(self._last_len - len(text), 0))
        self.file.flush()
        self._last_len = len(text)

    def close(self, summary):
        """Replaces the bar by the epoch line."""
        text = f"{self.desc}: {summary}"
        self.file.write("\r" + text + " " * max(self._last_len - len(text), 0) + "\n")
        self.file.flush()


def make_bar(total, desc, verbose, file=None):
    """A bar for one epoch (verbose=1 on a terminal), or None (then fit writes the epoch line itself)."""
    file = file or sys.stdout
    if muted or verbose != 1 or not (hasattr(file, "isatty") and file.isatty()):
        return None
    return ProgressBar(total, desc, file)
