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


@pytest.mark.parametrize("model,options,size,least", [
    ("cnn", [], 1000, 0.6),  # 32 steps: 0.78 measured; chance is 0.1
    ("resnet", ["--depth", "8", "--width", "8"], 64, 0.0),  # these two only run (learning: tests/models)
    ("densenet", ["--growth-rate", "6", "--blocks", "1,1"], 64, 0.0),
])
def test_train_a_cnn_on_images(capsys, model, options, size, least):
    """The CNNs train on (N, 1, 28, 28) images: a quick run on the first bundled images."""
    assert main(["train", "--model", model, *options, "--epochs", "1", "--train-size", str(size), "--data", "bundled",
                 "--quiet", "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    assert f"{size} train / 1000 test images" in out and re.search(r"\n[\d,]+ parameters\n", out)
    assert re.search(r"epoch 1/1: loss \d\.\d+ accuracy \d\.\d+ val_loss", out)
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert accuracy >= least


@pytest.mark.parametrize("options,message", [
    (["--model", "resnet", "--depth", "21"], "--depth: must be 6n + 2"),
    (["--model", "densenet", "--blocks", "6,x"], "--blocks: must be positive integers"),
])
def test_bad_cnn_options_are_usage_errors(capsys, options, message):
    with pytest.raises(SystemExit) as e:
        main(["train", *options])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_cosine_schedule(monkeypatch, capsys):
    import fastnn

    seen = []
    real_fit = fastnn.fit

    def fit(*args, **kwargs):
        history = real_fit(*args, **kwargs)
        seen.append(history["lr"])
        return history

    monkeypatch.setattr(fastnn, "fit", fit)
    assert main(["train", "--model", "linear", "--epochs", "3", "--lr", "0.01", "--schedule", "cosine",
                 "--train-size", "100", "--data", "bundled", "--quiet"]) == 0
    assert seen[0] == pytest.approx([0.01, 0.0075, 0.0025])  # lr of each epoch: (1 + cos(pi e / 3)) / 2 * 0.01
