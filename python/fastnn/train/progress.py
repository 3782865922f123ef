"""Progress display of fit(): tqdm when installed, otherwise a plain line rewritten in place."""

import sys
import time


class _PlainBar:
    def __init__(self, total, desc, file):
        self.total, self.desc, self.file = total, desc, file
        self.start = time.perf_counter()
        self.interactive = hasattr(file, "isatty") and file.isatty()

    def update_to(self, done, loss):
        if not self.interactive:  # a log file gets the epoch summary only
            return
        width = 30
        filled = int(width * done / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        self.file.write(f"\r{self.desc} [{'=' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                        f"loss {loss:.4f} {elapsed:.1f}s")
        self.file.flush()

    def close(self, summary):
        self.file.write((f"\r{self.desc} {summary}" + " " * 20 if self.interactive else f"{self.desc} {summary}") + "\n")
        self.file.flush()


class _TqdmBar:
    def __init__(self, total, desc, file, tqdm):
        self.bar = tqdm(total=total, desc=desc, file=file, leave=True, dynamic_ncols=True, unit="batch")

    def update_to(self, done, loss):
        self.bar.update(done - self.bar.n)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self, summary):
        self.bar.set_postfix_str(summary, refresh=True)
        self.bar.close()


def make_bar(total, desc, verbose, file=None):
    """A bar for one epoch (verbose=1), or None (verbose=0, or 2: one summary line per epoch)."""
    if verbose != 1:
        return None
    file = file or sys.stderr
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(total, desc, file)
    return _TqdmBar(total, desc, file, tqdm)
