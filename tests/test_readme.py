"""The README's Python examples run as written, on a subset of the bundled data (the data loader
is replaced so that they stay fast; the code of the blocks is not changed)."""

import pathlib
import re

import pytest

import fastnn

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture
def small_data(monkeypatch):
    real = fastnn.datasets.fashion_mnist

    def subset(*args, **kwargs):
        (X, y), (Xt, yt) = real("bundled", **kwargs)
        return (X[:600], y[:600]), (Xt[:200], yt[:200])

    monkeypatch.setattr(fastnn.datasets, "fashion_mnist", subset)


def test_the_readme_has_the_examples():
    blocks = python_blocks()
    assert len(blocks) >= 2 and "validation_split" in blocks[0] and "EarlyStopping" in blocks[0]
    assert "validation_data=(X_test" not in README.read_text()  # model selection never sees the test set


def test_readme_examples_run_as_written(small_data, tmp_path, monkeypatch, capsys):
    """The blocks in order, in one namespace (the later ones continue the first)."""
    monkeypatch.chdir(tmp_path)  # the example saves model.fnn
    namespace = {}
    for index, block in enumerate(python_blocks()):
        exec(compile(block, f"README.md python block {index}", "exec"), namespace)
        if index == 0:
            out = capsys.readouterr().out
            assert "Total params" in out and "'accuracy'" in out
            assert isinstance(namespace["model"], fastnn.nn.Sequential) and (tmp_path / "model.fnn").exists()
            history = namespace["history"].history
            assert "val_loss" in history and history["loss"][-1] < history["loss"][0]
