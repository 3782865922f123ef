"""fastnn._loader.load_core: which compiled module a source build and a portable (dispatch) build
load, with the importer replaced by a table of fake modules (a real portable build is tested by
tools/portable-check, which runs tests/kernels against each variant)."""

import types

import pytest

from fastnn import _loader


def fake_modules(monkeypatch, names, cpu=()):
    """Makes fastnn.<name> importable for each name; _cpu answers supports() from `cpu`. Returns
    the list of the modules imported, in order."""
    mods = {f"fastnn.{n}": types.SimpleNamespace(__name__=f"fastnn.{n}", supports=lambda isa: isa in cpu)
            for n in names}
    imported = []

    def import_module(name):
        if name not in mods:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        imported.append(name)
        return mods[name]

    monkeypatch.setattr(_loader.importlib, "import_module", import_module)
    monkeypatch.delenv("FASTNN_ISA", raising=False)
    return imported


VARIANTS = ["_cpu", "_C_base", "_C_avx2", "_C_avx512"]


@pytest.mark.parametrize("cpu,picked", [(("avx2", "avx512"), "_C_avx512"), (("avx2",), "_C_avx2"), ((), "_C_base")])
def test_portable_build_imports_the_best_variant_the_cpu_runs_and_no_other(monkeypatch, cpu, picked):
    imported = fake_modules(monkeypatch, VARIANTS, cpu)
    assert _loader.load_core().__name__ == f"fastnn.{picked}"
    assert imported == ["fastnn._cpu", f"fastnn.{picked}"]  # a second core would register its classes twice


def test_source_build_module_comes_first(monkeypatch):
    fake_modules(monkeypatch, ["_C"] + VARIANTS, ("avx2", "avx512"))
    assert _loader.load_core().__name__ == "fastnn._C"


@pytest.mark.parametrize("isa", ["avx512", "avx2", "base"])
def test_fastnn_isa_forces_a_variant(monkeypatch, isa):
    fake_modules(monkeypatch, VARIANTS, ("avx2", "avx512"))
    monkeypatch.setenv("FASTNN_ISA", isa)
    assert _loader.load_core().__name__ == f"fastnn._C_{isa}"


def test_fastnn_isa_the_cpu_cannot_run_is_an_import_error_not_a_crash(monkeypatch):
    fake_modules(monkeypatch, VARIANTS, ("avx2",))
    monkeypatch.setenv("FASTNN_ISA", "avx512")
    with pytest.raises(ImportError, match="FASTNN_ISA=avx512, but this CPU does not support avx512"):
        _loader.load_core()
    monkeypatch.setenv("FASTNN_ISA", "sse9")
    with pytest.raises(ImportError, match="FASTNN_ISA must be avx512, avx2 or base, got 'sse9'"):
        _loader.load_core()


@pytest.mark.parametrize("present", [[], ["_C_base", "_C_avx2", "_C_avx512"]])
def test_no_core_or_no_cpu_query_says_reinstall(monkeypatch, present):
    fake_modules(monkeypatch, present)
    with pytest.raises(ImportError, match=r"fastnn's compiled core is missing; reinstall with `pip install .`"):
        _loader.load_core()
