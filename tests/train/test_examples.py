"""The example scripts run (one epoch, or tiny sizes, on the bundled subset), with or without matplotlib."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAVE_PLOT = importlib.util.find_spec("fastnn.plot") is not None and HAVE_MATPLOTLIB


def run_example(script, args, cwd, timeout=120):
    """The script's completed process, run on the bundled subset with one thread."""
    # The fastnn under test: installed, or a work tree on PYTHONPATH (made absolute: cwd changes).
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    result = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--data", "bundled", "--threads", "1",
                             *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("script, expected", [
    ("batchnorm_experiment.py", "best test accuracy: plain"),
    ("optimizers.py", "Nesterov"),
])
def test_example_runs(tmp_path, script, expected):
    out = tmp_path / "curves.png"
    result = run_example(script, ["--epochs", "1", "--out", str(out)], tmp_path)
    assert expected in result.stdout
    if HAVE_MATPLOTLIB:
        assert out.stat().st_size > 0
    else:
        assert "matplotlib is not installed" in result.stdout
        assert not out.exists()


# tiny sizes of the transfer-learning examples: (script, arguments, the table's rows)
TRANSFER_EXAMPLES = [
    ("transfer.py", ["--train-size", "1500", "--source-epochs", "1", "--epochs", "2", "--budgets", "5,20"],
     [rf"^{b} +{m} +0\.\d{{4}} +\d+\.\d\d$" for b in (5, 20)
      for m in ("scratch", r"frozen \+ cached", "fine-tuned")]),
    ("autoencoder_pretraining.py", ["--train-size", "1500", "--pretrain-epochs", "1", "--epochs", "2",
                                    "--label-fraction", "0.02"],
     [rf"^{m} +0\.\d{{4}} +\d+\.\d\d$" for m in ("scratch", r"frozen \+ cached", "fine-tuned")]),
]


@pytest.mark.slow
@pytest.mark.parametrize("script, args, rows", TRANSFER_EXAMPLES, ids=[e[0] for e in TRANSFER_EXAMPLES])
def test_transfer_example_prints_its_table(tmp_path, script, args, rows):
    plot = tmp_path / "curves.png"
    result = run_example(script, args + (["--plot", str(plot)] if HAVE_PLOT else []), tmp_path, timeout=300)
    for row in rows:
        assert re.search(row, result.stdout, re.MULTILINE), (row, result.stdout)
    if HAVE_PLOT:
        assert plot.stat().st_size > 0


def test_second_order_example_runs(tmp_path):
    """SGD, Adam, CG, L-BFGS and Newton-CG on the bundled subset for a fraction of a second each."""
    out = tmp_path / "second_order.png"
    result = run_example("second_order.py", ["--samples", "2000", "--seconds", "0.3", "--plot", str(out)], tmp_path)
    for name in ("SGD", "Adam", "CG (PR+)", "L-BFGS", "Newton-CG"):
        assert name in result.stdout
    assert (out.stat().st_size > 0) if HAVE_MATPLOTLIB else "matplotlib is not installed" in result.stdout
