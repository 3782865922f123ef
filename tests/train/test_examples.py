"""The example scripts run (one epoch on the bundled subset), with or without matplotlib."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


@pytest.mark.parametrize("script, expected", [
    ("batchnorm_experiment.py", "best test accuracy: plain"),
    ("optimizers.py", "Nesterov"),
])
def test_example_runs(tmp_path, script, expected):
    # The fastnn under test: installed, or a work tree on PYTHONPATH (made absolute: cwd changes).
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    out = tmp_path / "curves.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--epochs", "1", "--data", "bundled", "--threads", "1",
         "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    if HAVE_MATPLOTLIB:
        assert out.stat().st_size > 0
    else:
        assert "matplotlib is not installed" in result.stdout
        assert not out.exists()


def test_second_order_example_runs(tmp_path):
    """SGD, Adam, CG, L-BFGS and Newton-CG on the bundled subset for a fraction of a second each."""
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    out = tmp_path / "second_order.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "second_order.py"), "--samples", "2000", "--seconds", "0.3",
         "--data", "bundled", "--threads", "1", "--plot", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for name in ("SGD", "Adam", "CG (PR+)", "L-BFGS", "Newton-CG"):
        assert name in result.stdout
    assert (out.stat().st_size > 0) if HAVE_MATPLOTLIB else "matplotlib is not installed" in result.stdout
