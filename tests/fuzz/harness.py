"""Runs a family of generated cases through a Worker and judges each reply.

Oracle: a case passes when the call succeeded with a sane result (the case's own ok_* checks),
or raised one of the expected exception types with a message that names the problem. It fails
when the process died (signal, sanitizer report, exit), hung, returned an impossible result
("insane"), accepted an input the case marks invalid ("accepted"), refused a case of only valid
inputs ("refused"), raised an unexpected type,
or raised with a bad message: pybind11's "incompatible function arguments", C++ internals
(std::...), an empty text, or a huge number the case never contained (leaked memory).
"""

import collections
import re

from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings

from tests.fuzz.worker import Worker, reproducer

EXPECTED = {"ValueError", "TypeError", "MemoryError", "RuntimeError", "ModelFileError", "FloatingPointError",
            "IndexError", "OverflowError", "KeyError", "NotImplementedError", "FileNotFoundError",
            "IsADirectoryError", "NotADirectoryError", "PermissionError", "OSError", "AttributeError"}
# Per family: what may be raised. A model file's problems are ModelFileErrors (issue 7), the CLI's
# bad arguments are argparse's exit 2 or a message.
FAMILY_EXPECTED = {
    "io": {"ModelFileError", "FileNotFoundError"},
    "cli": EXPECTED | {"SystemExit"},
}
BAD_TEXT = [("incompatible function arguments", "pybind11 signature dump"), ("std::", "C++ internals"),
            ("max_size()", "C++ internals"), ("Traceback", "traceback in message")]
# ASan aborts where a normal build's operator new throws std::bad_alloc (tools/sanitize caps
# allocations at 3 GiB, as the worker's address-space limit does in a normal build).
SANITIZER_OOM = ("allocation-size-too-big", "AddressSanitizer: out of memory", "AddressSanitizer: allocator is out of memory",
                 "exceeds maximum supported size")
_BIG_NUMBER = re.compile(r"(?<![\d.e])\d{12,}(?![\d.])")


CLEAR = "a clear exception"


def judge(family, code, reply):
    """(category, detail): category "pass" (detail CLEAR when it raised), or the kind of failure."""
    status = reply["status"]
    if status == "ok":
        return "pass", ""
    if status == "crash":
        if any(t in reply.get("log", "") for t in SANITIZER_OOM):
            return "pass", "sanitizer out of memory (std::bad_alloc, a MemoryError, in a normal build)"
        how = reply.get("signal") or f"exit {reply.get('exit')}"
        return "crash", f"{how}: {_last_line(reply.get('log', ''))}"
    if status == "hang":
        return "hang", reply["message"]
    if status == "insane":
        return "insane", reply["message"]
    if status == "accepted":
        return "accepted", reply["message"]
    kind, msg = reply["type"], reply["message"]
    if code.startswith("VALID = 1") and kind != "SystemExit":
        return "refused", f"{kind}: {msg[:300]}"
    if kind not in FAMILY_EXPECTED.get(family, EXPECTED):
        return "unexpected-type", f"{kind}: {msg[:300]}"
    if kind == "SystemExit":
        code_ = reply.get("code")
        return ("pass", CLEAR) if code_ == 2 or isinstance(code_, str) else ("unexpected-type", f"SystemExit({code_!r})")
    if kind == "AttributeError" and family != "layers":
        return "unexpected-type", f"{kind}: {msg[:300]}"
    if not msg.strip() and kind != "KeyError":
        return "bad-message", f"{kind} with an empty message"
    for text, why in BAD_TEXT:
        if text in msg:
            return "bad-message", f"{why}: {kind}: {msg[:300]}"
    for number in _BIG_NUMBER.findall(msg):
        if number not in code and not _round(int(number)) and int(number) >= _largest_bound(code):
            return "bad-message", f"leaked number {number}: {kind}: {msg[:300]}"
    return "pass", CLEAR


def _largest_bound(code):
    """The largest 2**k the case writes (e.g. random integers drawn below 2**40, which a message
    may quote as they are): numbers below it may come from the inputs."""
    return max([2 ** int(k) for k in re.findall(r"2\*\*(\d+)", code)] + [0])


def _round(n):
    """A number a message may quote from an input: near a power of two (2**40, 2**31 + 7, 2**63 - 1,
    their multiples by an element size) or of ten. A leaked pointer or garbage length is neither."""
    for base in (2, 10):
        p = 1
        while p <= 2 * n:
            if abs(n - p) <= 64 or any(abs(n - k * p) <= 64 for k in (3, 4, 5, 8)):
                return True
            p *= base
    return False


def _last_line(log):
    """The one-line diagnosis of a death: a sanitizer's SUMMARY and the first frame in fastnn's
    C++ sources, glibc's heap message, or the last line printed."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    summary = next((ln for ln in lines if ln.startswith("SUMMARY:") or "runtime error:" in ln), None)
    if summary:
        frame = next((ln for ln in lines if "/cpp/" in ln and " in " in ln), "")
        where = frame.split(" in ", 1)[1][:200] if frame else ""
        return (summary[:200] + (f" at {where}" if where and where not in summary else ""))[:400]
    for ln in lines:
        if "malloc" in ln or "double free" in ln or "corrupted" in ln or "free():" in ln:
            return ln[:300]
    return lines[-1][:300] if lines else ""


class Results:
    """Counts per category, and the distinct failures with their shortest reproducer."""

    def __init__(self):
        self.counts = collections.Counter()
        self.failures = {}  # key -> (category, detail, code, count)

    def add(self, family, code, category, detail):
        self.counts["cases"] += 1
        self.counts[category] += 1
        if category == "pass":
            self.counts["clear exception" if detail == CLEAR else "succeeded"] += 1
        if category == "crash":
            self.counts["crash by " + detail.split(":")[0]] += 1
        if category == "pass":
            return
        key = (family, category, _entry(code), _normalize(detail))
        old = self.failures.get(key)
        if old is None or len(code) < len(old[2]):
            self.failures[key] = (category, detail, code, (old[3] if old else 0) + 1)
        else:
            self.failures[key] = old[:3] + (old[3] + 1,)

    def summary(self):
        c = self.counts
        crashes = sum(1 for k in self.failures if k[1] == "crash")
        lines = [f"{c['cases']} cases: {c['pass']} passed ({c['succeeded']} succeeded, {c['clear exception']} clear "
                 f"exceptions), {c['crash']} crashes, {c['hang']} hangs, "
                 f"{c['insane']} insane results, {c['accepted']} invalid inputs accepted, "
                 f"{c['unexpected-type']} unexpected exception types, {c['bad-message']} bad messages; "
                 f"{len(self.failures)} distinct failures ({crashes} crash kinds)"]
        by_signal = {k[len("crash by "):]: v for k, v in sorted(c.items()) if k.startswith("crash by ")}
        if by_signal:
            lines.append("crashes by signal: " + ", ".join(f"{k} {v}" for k, v in by_signal.items()))
        for (family, category, entry, _), (_, detail, code, count) in sorted(self.failures.items()):
            lines.append(f"- [{family}] {category} in {entry} (x{count}): {detail}")
            lines.append(f"    {reproducer(code)}")
        return "\n".join(lines)


def _entry(code):
    """The entry point a case exercises: the last fastnn call before the oracle."""
    main = re.findall(r"\b(fastnn\.(?:fit|evaluate|predict|train_step|load)|main|optim\.\w+_|lr_scheduler\.\w+)[(,]", code)
    if main:
        return main[-1]
    calls = re.findall(r"\b((?:F|C|fastnn|nn|optim|lr_scheduler)\.[A-Za-z_][\w.]*)\(", code)
    return calls[-1] if calls else "?"


def _normalize(detail):
    """A failure's detail without the numbers and quoted values that vary between cases."""
    d = re.sub(r"0x[0-9a-f]+", "ADDR", detail)
    d = re.sub(r"\(.*?\)|\[[^\]]*\]|'[^']*'", "_", d)
    d = re.sub(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "N", d)
    return d[:120]


def run_family(family, strategy, examples, worker, results, seed=None, derandomize=True):
    """Runs `examples` cases of `strategy` through `worker`, adding every verdict to `results`."""

    @settings(max_examples=examples, derandomize=derandomize and seed is None, database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(code):
        category, detail = judge(family, code, worker.run(code))
        if category == "crash" and judge(family, code, worker.run(code))[0] != "crash":
            # Not on its own in a fresh worker: an earlier case corrupted memory without dying.
            detail += f" -- only after the case before it: {previous[0]}"
        previous[0] = code
        results.add(family, code, category, detail)

    previous = [""]

    if seed is not None:
        run = hypothesis_seed(seed)(run)
    run()
    return results


# Cases per family in the test suite (about 60 s in all on 2 cores), and the weights that share out
# a big run's total (tools/fuzz --examples N, or FASTNN_FUZZ_EXAMPLES=N for the suite).
SUITE_EXAMPLES = {"functional": 300, "layers": 200, "optim": 200, "train": 350, "io": 60, "cli": 8}


def examples_for(family, total=None, families=SUITE_EXAMPLES):
    """Cases for `family`: SUITE_EXAMPLES, or its share of `total` (default $FASTNN_FUZZ_EXAMPLES)
    among `families`."""
    import os

    total = total or int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "0") or 0)
    if not total:
        return SUITE_EXAMPLES[family]
    return max(1, round(total * SUITE_EXAMPLES[family] / sum(SUITE_EXAMPLES[f] for f in families)))
