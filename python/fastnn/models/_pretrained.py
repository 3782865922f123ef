"""The model zoo's shipped weights: models/weights/<name>.fnn, fastnn model files written by
tools/train_zoo.py, whose ``extra`` holds the builder's arguments ("config") and the test accuracy."""

from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ZOO = ("mlp", "simple_cnn")


def weights_path(name):
    """The shipped weights file of zoo model `name`."""
    if name not in ZOO:
        raise ValueError(f"no pretrained weights for {name!r}; the zoo has {list(ZOO)}")
    return WEIGHTS_DIR / f"{name}.fnn"


def _read(name):
    """(model, extra) of the shipped file."""
    from .. import io  # io builds on nn; models are above both

    path = weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"[{name}] the pretrained weights {path} are missing (a fastnn installed without its "
                                "package data?); tools/train_zoo.py writes them")
    model, _, extra = io.load(path, with_optimizer=True)
    return model, extra


def pretrained_info(name):
    """What the shipped weights of zoo model `name` ("mlp", "simple_cnn") were trained with and
    reach: {"config": the builder's arguments, "test_accuracy": on the 10,000 Fashion-MNIST test
    images, "epochs", "lr", "schedule", "batch_size", "seed", "train_images", "seconds"}."""
    return _read(name)[1]


def _same(a, b):
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def load_pretrained(model, name, config):
    """Copies the shipped weights of `name` into `model`, built with `config` (the builder's
    shape-determining arguments); a ValueError names every argument that differs from the weights'.

    Parameters and running statistics are matched in order (the model may differ from the weights'
    in parameter-free layers only, e.g. dropout=0 drops the Dropout children and renumbers the rest)."""
    source, extra = _read(name)
    trained = extra.get("config", {})
    differ = [f"{k}={config[k]!r} (the weights have {trained[k]!r})" for k in config
              if k in trained and not _same(config[k], trained[k])]
    if differ:
        raise ValueError(f"[{name}] pretrained=True: the shipped weights do not fit {', '.join(differ)}. Build the "
                         f"model with the weights' arguments and then change it (e.g. model[-1] = nn.Linear(..., "
                         "num_classes); model.double()), or use pretrained=False")
    theirs, ours = source.state_dict(), model.state_dict()
    shapes = lambda sd: [np.shape(v) for v in sd.values()]  # noqa: E731
    if shapes(theirs) != shapes(ours):
        raise ValueError(f"[{name}] pretrained=True: the shipped weights' tensors {shapes(theirs)} do not match the "
                         f"model's {shapes(ours)}")
    model.load_state_dict(dict(zip(ours, theirs.values())))
    return model
