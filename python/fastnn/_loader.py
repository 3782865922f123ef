"""Imports the compiled core: `_C` for source builds, or the best ISA variant of a portable wheel."""

import importlib
import os


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
            order = [forced]
        else:
            order = [isa for isa in ("avx512", "avx2") if base._cpu_supports(isa)] + ["base"]
        return base if order[0] == "base" else importlib.import_module(f"fastnn._C_{order[0]}")
