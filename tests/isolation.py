"""Runs code that could crash the interpreter (heap overflow, segfault) in a fresh one, so a crash
fails the test with its signal instead of killing the whole run."""

import os
import subprocess
import sys
import textwrap

import fastnn

PRELUDE = """\
import numpy as np
import fastnn
from fastnn import nn, optim
from fastnn import functional as F
from fastnn._config import _C
"""

# What each `attempt(label, fn)` in a snippet prints: the error, or that there was none.
ATTEMPT = """\
def attempt(label, fn):
    try:
        fn()
    except Exception as e:
        print(f"{label}: {type(e).__name__}: {e}", flush=True)
    else:
        print(f"{label}: no error", flush=True)
"""


def skip_address_space_limit_under_asan():
    """A child with RLIMIT_AS cannot start under AddressSanitizer (its shadow memory is mapped
    first), so tests that need one are skipped in tools/sanitize's run."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        import pytest

        pytest.skip("an address-space limit leaves no room for AddressSanitizer's shadow memory")


def child_env():
    """The environment of a child interpreter that imports the fastnn being tested (installed, or
    the work tree's python/ on PYTHONPATH) and the tests package."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    tests_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, tests_root] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_isolated(code, address_space_limit=None, timeout=300):
    """Runs PRELUDE + ATTEMPT + `code` in a new interpreter; returns its stdout. Fails the test if
    the interpreter died (a negative return code is a signal) or raised outside `attempt`.

    address_space_limit: bytes of virtual memory the child may map (RLIMIT_AS), so that an
    allocation meant to fail fails at once whatever the machine's memory.
    """
    limit = ""
    if address_space_limit:
        skip_address_space_limit_under_asan()
        limit = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({int(address_space_limit)}, {int(address_space_limit)}))\n"
    script = limit + PRELUDE + ATTEMPT + textwrap.dedent(code)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout, env=child_env())
    assert r.returncode == 0, f"the interpreter exited with {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-3000:]}"
    return r.stdout


def attempts(code, **kwargs):
    """{label: 'ErrorType: message' or 'no error'} for every attempt(label, fn) in `code`."""
    out = {}
    for line in run_isolated(code, **kwargs).splitlines():
        label, sep, result = line.partition(": ")
        if sep:
            out[label] = result
    return out
