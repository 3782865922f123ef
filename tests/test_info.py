"""fastnn.info and `python -m fastnn info`: the CPU, the variant and GEMM kernel, the FMA peak and
GEMM speed as % of it. Timing loops have no NumPy reference and no speed is asserted here: only
that every field is there and every rate is a positive, finite number."""

import json
import math
import subprocess
import sys

import pytest

import fastnn
from fastnn import info
from fastnn._config import _C
from fastnn.__main__ import main
from tests.isolation import child_env

KEYS = {"cpu", "build", "gemm_backend", "threads", "narrow_gemm", "fma_peak", "gemm"}


def positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report():
    return info.info(size=64)


def test_info_has_every_field(report):
    assert set(report) == KEYS
    assert report["cpu"]["model"] and report["cpu"]["logical_cpus"] >= 1
    assert report["build"]["module"] == _C.__name__ and report["build"]["isa"]
    assert {"name", "core", "config"} <= set(report["gemm_backend"]) and report["gemm_backend"]["name"]
    assert report["threads"] == fastnn.get_num_threads()
    assert report["narrow_gemm"] == _C._narrow_gemm_limits()


def test_fma_peak_per_dtype_at_one_and_all_threads(report):
    got = {(p["dtype"], p["threads"]) for p in report["fma_peak"]}
    assert got == {(dt, t) for dt in ("float32", "float64") for t in {1, report["threads"]}}
    assert all(positive(p["gflops"]) for p in report["fma_peak"])


def test_gemm_rates_and_percent_of_peak(report):
    shapes = [tuple(g["shape"]) for g in report["gemm"]]
    assert shapes == [(64, 64, 64), (128, 784, 256), (6272, 288, 64)]
    peak = next(p["gflops"] for p in report["fma_peak"] if (p["dtype"], p["threads"]) == ("float32", report["threads"]))
    for g in report["gemm"]:
        assert positive(g["gflops"]) and positive(g["numpy_gflops"])
        assert g["percent_of_peak"] == pytest.approx(100 * g["gflops"] / peak)


def test_fma_peak_gflops_checks_its_arguments():
    assert positive(info.fma_peak_gflops("float64", threads=1))
    with pytest.raises(ValueError, match=r"fma_peak_gflops: dtype must be float32 or float64, got 'int8'"):
        info.fma_peak_gflops("int8")
    with pytest.raises(ValueError, match=r"fma_peak_gflops: dtype must be float32 or float64, got 'nope'"):
        info.fma_peak_gflops("nope")
    with pytest.raises(ValueError, match=r"fma_peak_gflops: threads must be an integer in \[1, 1024\], got 0"):
        info.fma_peak_gflops(threads=0)
    with pytest.raises(ValueError, match=r"fma_peak_gflops: threads must be an integer in \[1, 1024\], got 1.5"):
        info.fma_peak_gflops(threads=1.5)
    with pytest.raises(TypeError, match=r"fma_peak_gflops: threads must be an integer in \[1, 1024\], got '2'"):
        info.fma_peak_gflops(threads="2")


def test_binding_errors_name_the_op():
    with pytest.raises(ValueError, match=r"\[fma_peak\] dtype must be 'float32' or 'float64', got 'float16'"):
        _C._fma_peak_gflops("float16", 1)
    with pytest.raises(ValueError, match=r"\[fma_peak\] threads must be in \[1, 1024\], got 1025"):
        _C._fma_peak_gflops("float32", 1025)
    with pytest.raises(TypeError, match=r"\[_fma_peak_gflops\] threads must be an integer"):
        _C._fma_peak_gflops("float32", "2")


def test_cpu_info_reads_model_and_isa_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD  EPYC 9R45\n"
                    "flags\t\t: fpu sse2 avx2 fma avx512f bmi2\n\nprocessor\t: 1\nmodel name\t: other\ncpu family\t: 6\n")
    cpu = info.cpu_info(str(path))
    assert cpu["model"] == "AMD EPYC 9R45" and cpu["isa_flags"] == ["sse2", "avx2", "fma", "avx512f"]
    assert (cpu["vendor"], cpu["family"], cpu["model_number"], cpu["stepping"]) == ("AuthenticAMD", None, None, None)
    other = info.cpu_info(str(tmp_path / "missing"))  # another OS: platform's name, not an error
    assert other["model"] and other["isa_flags"] == [] and other["vendor"] is None


def test_cli_prints_every_field(capsys):
    assert main(["info", "--size", "32"]) == 0
    out = capsys.readouterr().out
    for field in ("isa", "cpu", "variant", "gemm", "narrow gemm", "FMA peak", "float64", "32x32x32", "6272x288x64", "% of peak",
                  "numpy"):
        assert field in out, field


def test_cli_json_is_the_dict():
    res = subprocess.run([sys.executable, "-m", "fastnn", "info", "--size", "16", "--threads", "1", "--json"],
                         capture_output=True, text=True, timeout=120, env=child_env())
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert set(report) == KEYS and report["threads"] == 1
    assert [p["threads"] for p in report["fma_peak"]] == [1, 1]
    assert all(g["gflops"] > 0 and g["percent_of_peak"] > 0 for g in report["gemm"])
