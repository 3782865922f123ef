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
        # Portable wheels ship _C_base/_C_avx2/_C_avx512. Ask the baseline module what the CPU
        # supports *before* importing a variant whose init code may use those instructions.
        try:
            base = importlib.import_module("fastnn._C_base")
        except ImportError:
            raise ImportError(
                "fastnn's compiled core is missing; reinstall with `pip install .` "
                f"({native_error})"
            ) from native_error
        forced = os.environ.get("FASTNN_ISA")
        if forced:
            if forced not in ("avx512", "avx2", "base"):
                raise ImportError(f"FASTNN_ISA must be avx512, avx2 or base, got {forced!r}")
            if forced != "base" and not base._cpu_supports(forced):  # its first instruction would kill the process
                raise ImportError(f"FASTNN_ISA={forced}, but this CPU does not support {forced}")
            order = [forced]
        else:
            order = [isa for isa in ("avx512", "avx2") if base._cpu_supports(isa)] + ["base"]
        return base if order[0] == "base" else importlib.import_module(f"fastnn._C_{order[0]}")
