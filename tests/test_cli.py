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
    assert "4500 train / 500 validation (10% of the training set, stratified) / 1000 test images" in out and path.exists()


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
    n_train, n_val = map(int, re.search(r"(\d+) train / (\d+) validation", out).groups())
    assert n_train + n_val == size and abs(n_val - size * 0.1) <= 5  # 10%, rounded in each of the classes
    assert re.search(r"\n[\d,]+ parameters\n", out)
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


def test_epochs_0_scores_the_untrained_model(capsys):
    assert main(["train", "--model", "linear", "--epochs", "0", "--data", "bundled", "--quiet"]) == 0
    assert "(0 epochs, 0.0s" in capsys.readouterr().out


def test_missing_data_is_one_line_and_exit_code_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "fastnn", "train", "--data", str(tmp_path / "nonexistent")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "error: --data" in res.stderr and "Traceback" not in res.stderr


def test_every_option_has_help_text():
    import argparse

    from fastnn import __main__ as cli

    parsers = []
    real = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = lambda self, *a, **k: parsers.append(self) or real(self, *a, **k)
    try:
        with pytest.raises(SystemExit):
            cli.main(["train", "--help"])
    finally:
        argparse.ArgumentParser.parse_args = real
    train = parsers[0]._subparsers._group_actions[0].choices["train"]
    for sub in parsers[0]._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            assert action.help, f"{sub.prog} {action.option_strings} has no help"
    assert "the seeds' 784-32-32-10 MLP" in next(a.help for a in train._actions if "--model" in a.option_strings)


def test_val_split_validates_on_the_training_set_and_tests_once(monkeypatch, capsys):
    import fastnn

    calls = []
    real_fit, real_evaluate = fastnn.fit, fastnn.evaluate
    monkeypatch.setattr(fastnn, "fit", lambda *a, **k: calls.append(("fit", len(a[1]), k)) or real_fit(*a, **k))
    monkeypatch.setattr(fastnn, "evaluate", lambda *a, **k: calls.append(("evaluate", len(a[1]), k)) or
                        real_evaluate(*a, **k))
    assert main(["train", "--model", "linear", "--epochs", "2", "--train-size", "400", "--val-split", "0.25",
                 "--data", "bundled", "--quiet"]) == 0
    (fit_call, evaluate_call) = calls
    split = fit_call[2]["validation_split"]
    assert fit_call[1] == 400 and "validation_data" not in fit_call[2]
    assert (split.fraction, split.shuffle, split.stratify) == (0.25, True, True)
    assert evaluate_call[:2] == ("evaluate", 1000)  # the test set, once, at the end
    out = capsys.readouterr().out
    n_train, n_val = map(int, re.search(r"(\d+) train / (\d+) validation", out).groups())
    assert n_train + n_val == 400 and abs(n_val - 100) <= 5 and out.count("val_loss") == 2 and out.count("test accuracy") == 1
    assert main(["train", "--model", "linear", "--epochs", "1", "--train-size", "100", "--val-split", "0",
                 "--data", "bundled", "--quiet"]) == 0
    assert "val_loss" not in capsys.readouterr().out


def test_val_split_too_small_for_the_data_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--train-size", "3", "--val-split", "0.1", "--data", "bundled"])
    assert e.value.code == 2
    assert "--val-split 0.1 of 3 training images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--val-split", "1.5"])


def test_plot_writes_the_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert main(["train", "--model", "linear", "--epochs", "2", "--train-size", "200", "--data", "bundled",
                 "--quiet", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"curves written to {path}" in capsys.readouterr().out


def test_plot_without_matplotlib_is_a_clear_message(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "1", "--data", "bundled", "--plot", "x.png"])
    assert e.value.code == 2
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_summary_prints_the_layer_table(capsys):
    assert main(["train", "--model", "mlp-s", "--epochs", "0", "--data", "bundled", "--summary", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Output Shape" in out and "(None, 32)" in out and f"Total params: {build_model('mlp-s').count_params():,}" in out
