"""Saving and loading models (architecture + weights + optimizer state) without pickle.

A model file is a zip archive holding ``fastnn.json`` (format version, architecture as
constructor arguments, optimizer class and hyperparameters, user extras) and one ``.npy`` array
per tensor, read with ``allow_pickle=False``: loading a file never executes code. Only built-in
layers can be saved (a layer written in Python has no description to rebuild it from).
"""

import io as _io
import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

from . import nn
from . import optim as _optim

FORMAT = "fastnn-model"
VERSION = 1

_LAYERS = {cls.__name__: cls for cls in (
    nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU,
    nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.Softmax, nn.LogSoftmax, nn.Maxout)}
_OPTIMIZERS = {cls.__name__: cls for cls in (_optim.SGD, _optim.Adam, _optim.AdamW, _optim.RMSprop, _optim.Adagrad)}


class ModelFileError(ValueError):
    """A model file that is not a valid fastnn model (truncated, corrupted, or from elsewhere)."""


def _architecture(module):
    if isinstance(module, nn.Sequential):
        return {"class": "Sequential", "children": [[name, _architecture(m)] for name, m in module.named_children()]}
    name = type(module).__name__
    if _LAYERS.get(name) is not type(module):
        raise TypeError(f"save: {name} is not a built-in layer and cannot be described in a model file "
                        "(save its state_dict() instead)")
    return {"class": name, "config": module._config()}


def _build(arch, dtype):
    if not isinstance(arch, dict) or "class" not in arch:
        raise ModelFileError(f"architecture entry is malformed: {arch!r:.100}")
    cls = arch["class"]
    if cls == "Sequential":
        children = arch.get("children")
        if not isinstance(children, list):
            raise ModelFileError("Sequential entry has no list of children")
        from collections import OrderedDict

        return nn.Sequential(OrderedDict((str(name), _build(child, dtype)) for name, child in children))
    if cls not in _LAYERS:
        raise ModelFileError(f"unknown layer class {cls!r} (known: {sorted(_LAYERS)})")
    config = arch.get("config", {})
    if not isinstance(config, dict):
        raise ModelFileError(f"{cls} config is malformed")
    try:
        return _LAYERS[cls](**config, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"cannot rebuild {cls} from {config}: {e}") from e


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def save(path, model, optimizer=None, extra=None):
    """Writes `model` (and `optimizer`'s state) to `path` atomically (a temporary file, then rename)."""
    meta = {"format": FORMAT, "version": VERSION, "dtype": str(model.dtype), "architecture": _architecture(model),
            "extra": _jsonable(extra or {})}
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        sd = optimizer.state_dict()
        meta["optimizer"] = {"class": type(optimizer).__name__,
                             "param_groups": [{k: _jsonable(v) for k, v in g.items()} for g in sd["param_groups"]]}
        arrays.update({f"optimizer/{k}": v for k, v in sd["state"].items()})
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastnn-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("fastnn.json", json.dumps(meta))
            for name, array in arrays.items():
                buf = _io.BytesIO()
                np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
                z.writestr(name + ".npy", buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read(path):
    path = os.fspath(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "fastnn.json" not in names:
                raise ModelFileError(f"{path}: not a fastnn model file (no fastnn.json inside)")
            meta = json.loads(z.read("fastnn.json").decode("utf-8"))
            arrays = {}
            for name in names - {"fastnn.json"}:
                if not name.endswith(".npy"):
                    raise ModelFileError(f"{path}: unexpected member {name!r}")
                arrays[name[:-4]] = np.load(_io.BytesIO(z.read(name)), allow_pickle=False)
    except FileNotFoundError:
        raise
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, UnicodeDecodeError,
            json.JSONDecodeError, ValueError, KeyError, NotImplementedError, RuntimeError) as e:
        # zlib.error: damaged compressed data; NotImplementedError / RuntimeError: a compression
        # method zipfile lacks, or an encrypted member
        raise ModelFileError(f"{path}: not a readable fastnn model file (truncated or corrupted?): {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastnn model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {meta.get('version')!r}, this fastnn reads version {VERSION}")
    return meta, arrays


def load(path, with_optimizer=False):
    """Reads a model saved by :func:`save`.

    Returns the model (in eval mode), or ``(model, optimizer, extra)`` with ``with_optimizer=True``
    (optimizer None when the file has none). Raises ModelFileError (a ValueError) for a file that
    is truncated, corrupted, or not a fastnn model.
    """
    meta, arrays = _read(path)
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: unsupported dtype {dtype!r}")
    try:
        model = _build(meta.get("architecture"), np.dtype(dtype))
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError) as e:
        raise ModelFileError(f"{path}: weights do not match the architecture: {e}") from e
    model.eval()
    if not with_optimizer:
        return model
    opt = None
    if "optimizer" in meta:
        info = meta["optimizer"]
        cls = _OPTIMIZERS.get(info.get("class") if isinstance(info, dict) else None)
        if cls is None:
            raise ModelFileError(f"{path}: unknown optimizer {info!r:.100}")
        groups = [dict(g) for g in info.get("param_groups", [])]
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        params = list(model.parameters())
        opt = cls(params, lr=groups[0].get("lr", 1e-3) if groups else 1e-3)
        try:
            opt.load_state_dict({"state": {k[len("optimizer/"):]: v for k, v in arrays.items()
                                           if k.startswith("optimizer/")}, "param_groups": groups})
        except (KeyError, ValueError, TypeError) as e:
            raise ModelFileError(f"{path}: optimizer state does not match: {e}") from e
    return model, opt, meta.get("extra", {})
