"""Imports the compiled core: `_C` for source builds, or the best ISA variant of a portable wheel."""

import importlib
import os

# libgomp threads spin ~300k iterations at each barrier before sleeping. When another process
# holds a core, the spinning thread burns the time slice its partner needs and every parallel
# region waits a scheduler tick: measured here, a small MLP epoch went from 0.1 s to 4 s. A short
# spin costs nothing measurable on an idle machine. Only a default, and only effective if no
# OpenMP runtime is loaded yet (import fastnn before torch, or set it yourself).
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def load_core():
    try:
        return importlib.import_module("fastnn._C")
    except ModuleNotFoundError as native_error:
        # Portable installs ship _C_base/_C_avx2/_C_avx512 and _cpu, which says what the CPU runs
        # *before* a variant whose init code may use those instructions is imported. Only one
        # variant may be imported: a second would register the same pybind11 classes again.
        try:
            cpu = importlib.import_module("fastnn._cpu")
        except ImportError:
            raise ImportError(
                "fastnn's compiled core is missing; reinstall with `pip install .` "
                f"({native_error})"
            ) from native_error
        forced = os.environ.get("FASTNN_ISA")
        if forced:
            if forced not in ("avx512", "avx2", "base"):
                raise ImportError(f"FASTNN_ISA must be avx512, avx2 or base, got {forced!r}")
            if forced != "base" and not cpu.supports(forced):  # its first instruction would kill the process
                raise ImportError(f"FASTNN_ISA={forced}, but this CPU does not support {forced}")
            isa = forced
        else:
            isa = next((isa for isa in ("avx512", "avx2") if cpu.supports(isa)), "base")
        return importlib.import_module(f"fastnn._C_{isa}")
