"""The generalization examples run end to end with tiny sizes (slow: each trains several models,
the ensembles and searches on the local process pool), print their tables and write their figure."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
TINY = ["--train-size", "600", "--test-size", "500", "--data", "bundled", "--threads", "1"]


@pytest.mark.slow
@pytest.mark.parametrize("script, flags, expected", [
    ("regularization.py", ["--epochs", "2"], ["none", "L2", "L1", "dropout", "early stopping", "augmentation",
                                               "train-val"]),
    ("ensembles.py", ["--epochs", "2", "--members", "3"], ["voting", "averaging", "bagging", "snapshot",
                                                          "gain vs mean", "OOB score"]),
    ("search.py", ["--epochs", "2", "--trials", "4", "--grid-points", "2"],
     # 2 grid points of lr and dropout, the 3 hidden sizes: 12 trials; a grid as fine as 4 random trials: 4*3*4
     ["grid", "random", "coarse_to_fine", "12 (2^3)", "48 (4^3)"]),
    ("vanishing_gradients.py", ["--epochs", "1", "--depth", "4", "--batch", "128"],
     ["sigmoid + N(0,1)", "sigmoid + U(±1/√n)", "He + ReLU", "He + ELU", "saturated sigmoids", "L5"]),
])
def test_example_prints_its_table_and_writes_its_figure(tmp_path, script, flags, expected):
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    figure = tmp_path / "figure.png"
    args = [sys.executable, str(ROOT / "examples" / script), *TINY, *flags]
    if HAVE_MATPLOTLIB:
        args += ["--plot", str(figure)]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for text in expected:
        assert text in result.stdout, f"{text!r} not in:\n{result.stdout}"
    if HAVE_MATPLOTLIB:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
