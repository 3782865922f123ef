"""python -m fastnn: the main job (train) and the configuration report (info)."""

import re
import subprocess
import sys

import pytest

from fastnn.__main__ import build_model, main


def test_train_on_the_bundled_subset_prints_test_accuracy(capsys, tmp_path):
    path = tmp_path / "model.fnn"
    assert main(["train", "--model", "linear", "--epochs", "2", "--data", "bundled", "--quiet", "--save", str(path)]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert accuracy > 0.6  # softmax regression on 5000 images: well above chance (0.1)
    assert "5000 train / 1000 test images" in out and path.exists()


def test_info_prints_config_and_gemm(capsys):
    assert main(["info", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert "isa" in out and "FMA peak" in out and "% of peak" in out  # the fields: tests/test_info.py


@pytest.mark.parametrize("name,n_params", [("mlp-s", 784 * 32 + 32 + 64 + 32 * 32 + 32 + 64 + 330), ("linear", 7850)])
def test_models_have_the_documented_sizes(name, n_params):
    assert build_model(name).flat_parameters().size == n_params


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "fastnn", "train", "--model", "nope"], capture_output=True, text=True)
    assert res.returncode != 0 and "invalid choice" in res.stderr


@pytest.mark.parametrize("model,options", [
    ("cnn", []),
    ("resnet", ["--depth", "8", "--width", "4"]),
    ("densenet", ["--growth-rate", "4", "--blocks", "2,2"]),
])
def test_train_a_cnn_on_images(capsys, model, options):
    """The CNNs train on (N, 1, 28, 28) images: a quick run on 500 bundled images."""
    assert main(["train", "--model", model, *options, "--epochs", "1", "--train-size", "500", "--data", "bundled",
                 "--quiet", "--batch-size", "50"]) == 0
    out = capsys.readouterr().out
    assert "500 train / 1000 test images" in out and "parameters" in out
    assert re.search(r"epoch 1/1: loss \d\.\d+ accuracy", out)
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert accuracy > 0.3  # one epoch on 500 images: well above chance (0.1)


@pytest.mark.parametrize("options,message", [
    (["--model", "resnet", "--depth", "21"], "--depth: must be 6n + 2"),
    (["--model", "densenet", "--blocks", "6,x"], "--blocks: must be positive integers"),
])
def test_bad_cnn_options_are_usage_errors(capsys, options, message):
    with pytest.raises(SystemExit) as e:
        main(["train", *options])
    assert e.value.code == 2 and message in capsys.readouterr().err
