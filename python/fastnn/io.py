"""Saving and loading models (architecture + weights + optimizer state) without pickle.

A model file is a zip archive holding ``fastnn.json`` (format version, architecture as
constructor arguments, optimizer class and hyperparameters, user extras) and one ``.npy`` array
per tensor, read with ``allow_pickle=False``: loading a file never executes code. Only built-in
layers can be saved (a layer written in Python has no description to rebuild it from).
"""

import io as _io
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from . import _validate
from . import nn
from . import optim as _optim

FORMAT = "fastnn-model"
VERSION = 1

_LAYERS = {cls.__name__: cls for cls in (
    nn.Sequential, nn.Residual, nn.Concat, nn.DenseBlock, nn.Transition, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Flatten, nn.Identity, nn.Sigmoid, nn.Tanh, nn.ReLU,
    nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.Softmax, nn.LogSoftmax, nn.Maxout,
    nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.GlobalAvgPool2d)}
_OPTIMIZERS = {cls.__name__: cls for cls in (_optim.SGD, _optim.Adam, _optim.AdamW, _optim.RMSprop, _optim.Adagrad)}


class ModelFileError(ValueError):
    """A model file that is not a valid fastnn model (truncated, corrupted, or from elsewhere)."""


def _architecture(module):
    """{"class", "config"} of a layer; a container whose children the user composes adds its named
    children, [[name, entry], ...] (the others are rebuilt from their config alone)."""
    saved_as = getattr(module, "_saved_as", None)  # fastnn.distributed.SyncBatchNorm: stored as its BatchNorm
    if saved_as is not None:
        module = saved_as()
    name = type(module).__name__
    if _LAYERS.get(name) is not type(module):
        raise TypeError(f"save: {name} is not a built-in layer and cannot be described in a model file "
                        "(save its state_dict() instead)")
    arch = {"class": name, "config": _jsonable(module._config())}
    if module._composed:
        arch["children"] = [[child, _architecture(m)] for child, m in module.named_children()]
    return arch


def _children(arch):
    """The [name, entry] pairs of a container entry (None for a layer)."""
    children = arch.get("children")
    if children is None:
        return None
    if not isinstance(children, list) or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) for c in children):
        raise ModelFileError(f"{arch.get('class')} children must be [name, entry] pairs, got {children!r:.100}")
    return children


def _build(arch, dtype):
    if not isinstance(arch, dict) or "class" not in arch:
        raise ModelFileError(f"architecture entry is malformed: {arch!r:.100}")
    cls = arch["class"]
    if not isinstance(cls, str) or cls not in _LAYERS:
        raise ModelFileError(f"unknown layer class {cls!r:.100} (known: {sorted(_LAYERS)})")
    layer = _LAYERS[cls]
    config = arch.get("config", {})
    if not isinstance(config, dict):
        raise ModelFileError(f"{cls} config is malformed")
    children = _children(arch)
    if layer._composed != (children is not None):
        raise ModelFileError(f"{cls} entry {'has no' if children is None else 'must not have a'} list of children")
    try:
        if children is not None:
            built = [(name, _build(child, dtype)) for name, child in children]
            return layer._from_children(config, built, dtype)
        return layer(**config, dtype=dtype)
    except (TypeError, ValueError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"cannot rebuild {cls} from {config}: {e}") from e


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value


def _write(f, model, optimizer, extra, fn="save", compression=zipfile.ZIP_DEFLATED):
    """The model file (zip) of `model` (and `optimizer`) into the binary file object `f`."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: model must be a fastnn.nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, _optim.Optimizer):
        raise TypeError(f"{fn}: optimizer must be a fastnn.optim.Optimizer or None, got {type(optimizer).__name__}")
    meta = {"format": FORMAT, "version": VERSION, "dtype": str(model.dtype), "architecture": _architecture(model),
            "extra": _jsonable(extra or {}),
            # what a copy needs beyond the weights (load puts the model in eval mode; from_bytes keeps these)
            "training": [m.__dict__["_training"] for _, m in model.named_modules()],
            "frozen": [name for name, p in model.named_parameters() if not p.requires_grad]}
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        model.flatten_parameters_()  # the flat state is saved in the layout load rebuilds: the model's own buffer
        names = {id(p): name for name, p in model.named_parameters()}
        held = [p for g in optimizer.param_groups for p in g["params"]]
        foreign = [p for p in held if id(p) not in names]
        if foreign:
            raise ValueError(f"{fn}: the optimizer holds {foreign[0]!r}, which is not a parameter of the model "
                             f"({len(foreign)} in all); save each model with its own optimizer")
        sd = optimizer.state_dict()
        meta["optimizer"] = {"class": type(optimizer).__name__,
                             "param_groups": [{k: _jsonable(v) for k, v in g.items()} for g in sd["param_groups"]],
                             "param_names": [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]}
        arrays.update({f"optimizer/{k}": v for k, v in sd["state"].items()})
    with zipfile.ZipFile(f, "w", compression) as z:
        z.writestr("fastnn.json", json.dumps(meta))
        for name, array in arrays.items():
            buf = _io.BytesIO()
            np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
            z.writestr(name + ".npy", buf.getvalue())


def save(path, model, optimizer=None, extra=None):
    """Writes `model` (and `optimizer`'s state) to `path` atomically (a temporary file, then rename)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastnn-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write(f, model, optimizer, extra)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def to_bytes(model, optimizer=None, extra=None):
    """The model file of `model` (and `optimizer`) as bytes: what :func:`save` writes, in memory.

    Used by pickle and copy.deepcopy (``Module.__reduce__``) and to send models to other
    processes: architecture, weights, running statistics, each module's train/eval mode, the
    frozen parameters and the optimizer's state; never code.
    """
    f = _io.BytesIO()
    # stored, not deflated: weights hardly compress, and deflating them made a copy ~10x slower
    _write(f, model, optimizer, extra, "to_bytes", zipfile.ZIP_STORED)
    return f.getvalue()


def from_bytes(data, with_optimizer=False):
    """The model (or ``(model, optimizer, extra)``) in bytes made by :func:`to_bytes`.

    As :func:`load` (the same checks; ModelFileError for bytes that are not a valid model), except
    that every module keeps the train/eval mode it had when the bytes were made.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"from_bytes: data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        with zipfile.ZipFile(_io.BytesIO(data)) as z:
            return _load("from_bytes", z, with_optimizer, len(data), keep_modes=True)
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"from_bytes: not a readable fastnn model (truncated or corrupted?): "
                             f"{type(e).__name__}: {e}") from e


# Limits that keep a hostile file from costing more than it declares (see load).
MAX_META_BYTES = 1 << 20  # fastnn.json: architecture and hyperparameters are a few KB
MAX_DEFLATE_RATIO = 1100  # deflate cannot expand more than ~1032:1, so larger declared sizes are lies
BUILD_SLACK = 1 << 16  # elements a model may declare beyond its stored arrays (parameter-free layers)
_CHUNK = 1 << 20


def _members(z, path, size):
    """name -> ZipInfo, after checking that every member's declared sizes are possible for a file
    of `size` bytes (stored as is, or deflated), so that they bound what reading can inflate to."""
    members = {}
    for info in z.infolist():
        if info.filename in members:
            raise ModelFileError(f"{path}: member {info.filename!r} appears twice")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ModelFileError(f"{path}: member {info.filename!r} uses compression method {info.compress_type} "
                                 "(fastnn writes deflate)")
        ratio = 1 if info.compress_type == zipfile.ZIP_STORED else MAX_DEFLATE_RATIO
        if info.file_size > ratio * info.compress_size + 1024 or (
                size is not None and info.header_offset + info.compress_size > size):
            raise ModelFileError(f"{path}: member {info.filename!r} declares {info.file_size} bytes from "
                                 f"{info.compress_size} compressed bytes (truncated or corrupted?)")
        members[info.filename] = info
    return members


def _read_member(z, info, limit, path):
    """The bytes of a small member, at most `limit` of them."""
    if info.file_size > limit:
        raise ModelFileError(f"{path}: member {info.filename!r} is {info.file_size} bytes, more than {limit}")
    with z.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ModelFileError(f"{path}: member {info.filename!r} is larger than it declares")
    return data


def _npy_header(z, info, path):
    """(shape, fortran_order, dtype, header bytes) of a .npy member, reading its header only; the
    member's declared size must be exactly the header plus the array it describes."""
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read(f)
        header = f.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "fiub":
        raise ModelFileError(f"{path}: not a readable fastnn model file (truncated or corrupted?): member "
                             f"{info.filename!r} holds {dtype} values, not numbers (pickled data is never loaded)")
    nbytes = math.prod(shape) * dtype.itemsize
    if any(n < 0 for n in shape) or header + nbytes != info.file_size:
        raise ModelFileError(f"{path}: member {info.filename!r} is {info.file_size} bytes, but its header declares a "
                             f"{dtype} array of shape {shape} ({header} + {nbytes} bytes): truncated or corrupted")
    return shape, fortran_order, dtype, header


def _read_array(z, info, header, path):
    """The array of a .npy member, streamed into an array of the size its header declares."""
    shape, fortran_order, dtype, skip = header
    out = np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
    view = memoryview(out.reshape(-1, order="A").view(np.uint8))
    with z.open(info) as f:
        f.read(skip)
        done = 0
        while done < len(view):
            n = f.readinto(view[done : done + _CHUNK])
            if not n:
                raise ModelFileError(f"{path}: member {info.filename!r} ends early (truncated)")
            done += n
        if f.read(1):
            raise ModelFileError(f"{path}: member {info.filename!r} holds more data than its header declares")
    return out.astype(dtype.newbyteorder("="), copy=False)


def _declared_elements(arch):
    """An upper bound on the elements building `arch` allocates, from its integer arguments alone:
    each layer holds at most a small multiple of their product (Linear in·out + out, BatchNorm ~10·C);
    a container, what its children and its own arguments declare."""
    if not isinstance(arch, dict):
        return 0
    children = arch.get("children")  # malformed entries count 0 here: _build reports them
    config = arch.get("config", {})
    sizes = [abs(v) for v in (config.values() if isinstance(config, dict) else ()) if _validate.is_int(v)]
    own = math.prod(sizes) if sizes else 0
    return own + sum(_declared_elements(c[1]) for c in (children if isinstance(children, list) else ())
                     if isinstance(c, list) and len(c) == 2)


def _read(path, z, size):
    members = _members(z, path, size)
    if "fastnn.json" not in members:
        raise ModelFileError(f"{path}: not a fastnn model file (no fastnn.json inside)")
    meta = json.loads(_read_member(z, members.pop("fastnn.json"), MAX_META_BYTES, path).decode("utf-8"))
    for name in members:
        if not name.endswith(".npy"):
            raise ModelFileError(f"{path}: unexpected member {name!r}")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastnn model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file version {meta.get('version')!r}, this fastnn reads version {VERSION}")
    return meta, {name[:-4]: info for name, info in members.items()}


def _stored(z, members, prefix, path):
    """prefix-less name -> (ZipInfo, npy header) of the members under `prefix`, headers only."""
    return {name[len(prefix):]: (info, _npy_header(z, info, path)) for name, info in members.items()
            if name.startswith(prefix)}


def load(path, with_optimizer=False):
    """Reads a model saved by :func:`save`.

    Returns the model (in eval mode), or ``(model, optimizer, extra)`` with ``with_optimizer=True``
    (optimizer None when the file has none). Raises ModelFileError (a ValueError) for a file that
    is truncated, corrupted, or not a fastnn model, or whose architecture, array headers and
    sizes disagree. Nothing is allocated beyond what the file's arrays declare: the architecture
    is checked against their sizes before it is built, and every array's header against the
    built model before its data is read (streamed, never more than its header declares).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as z:
            return _load(path, z, with_optimizer, os.fstat(f.fileno()).st_size)
    except (ModelFileError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as e:  # zipfile, zlib, json, the .npy header parser (TokenError...), MemoryError, ...
        raise ModelFileError(f"{path}: not a readable fastnn model file (truncated or corrupted?): "
                             f"{type(e).__name__}: {e}") from e


def _load(path, z, with_optimizer, size, keep_modes=False):
    meta, members = _read(path, z, size)
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: unsupported dtype {dtype!r}")
    itemsize = np.dtype(dtype).itemsize
    stored = sum(info.file_size for name, info in members.items() if name.startswith("model/")) // itemsize
    declared = _declared_elements(meta.get("architecture"))
    if declared > stored + BUILD_SLACK:
        raise ModelFileError(f"{path}: the architecture declares about {declared} parameters, the file stores "
                             f"{stored} values: weights do not match the architecture")
    try:
        model = _build(meta.get("architecture"), np.dtype(dtype))
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    headers = _stored(z, members, "model/", path)
    expected = {name: p.shape for name, p in model.named_parameters(remove_duplicate=False)}
    expected.update({name: tuple(get().shape) for name, get in model._named_states()})
    missing, unexpected = sorted(set(expected) - set(headers)), sorted(set(headers) - set(expected))
    if missing or unexpected:
        raise ModelFileError(f"{path}: weights do not match the architecture: missing keys {missing}, "
                             f"unexpected keys {unexpected}")
    for name, (_, header) in headers.items():
        if tuple(header[0]) != expected[name]:
            raise ModelFileError(f"{path}: weights do not match the architecture: {name!r} has shape {header[0]}, "
                                 f"the model expects {expected[name]}")
    state = {name: _read_array(z, info, header, path) for name, (info, header) in headers.items()}
    try:
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as e:
        raise ModelFileError(f"{path}: weights do not match the architecture: {e}") from e
    _restore_flags(path, model, meta, keep_modes)
    if not with_optimizer:
        return model
    opt = None
    if "optimizer" in meta:
        info = meta["optimizer"]
        cls = _OPTIMIZERS.get(info.get("class") if isinstance(info, dict) else None)
        if cls is None:
            raise ModelFileError(f"{path}: unknown optimizer {info!r:.100}")
        groups = info.get("param_groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ModelFileError(f"{path}: optimizer state does not match: param_groups must be a list of dicts")
        groups = [dict(g) for g in groups]
        for g in groups:
            if isinstance(g.get("betas"), list):
                g["betas"] = tuple(g["betas"])
        opt = cls(_optimizer_groups(path, model, info, groups), lr=groups[0].get("lr", 1e-3) if groups else 1e-3)
        limit = max(opt.buffer.params.size, len(groups))  # flat state, or one count per group
        headers = _stored(z, members, "optimizer/", path)
        for name, (_, header) in headers.items():
            if len(header[0]) != 1 or header[0][0] > limit:
                raise ModelFileError(f"{path}: optimizer state does not match: {name!r} has shape {header[0]}, the "
                                     f"model has {opt.buffer.params.size} parameters")
        arrays = {name: _read_array(z, i, header, path) for name, (i, header) in headers.items()}
        try:
            opt.load_state_dict({"state": arrays, "param_groups": groups})
        except (KeyError, ValueError, TypeError) as e:
            raise ModelFileError(f"{path}: optimizer state does not match: {e}") from e
    return model, opt, meta.get("extra", {})


def _restore_flags(path, model, meta, keep_modes):
    """The frozen parameters, and the modules' train/eval modes (keep_modes) or eval mode (load)."""
    frozen = meta.get("frozen", [])
    params = dict(model.named_parameters())
    if not isinstance(frozen, list) or not all(isinstance(n, str) and n in params for n in frozen):
        raise ModelFileError(f"{path}: 'frozen' must list parameter names of the model, got {frozen!r:.100}")
    if frozen:
        for name in frozen:
            params[name].requires_grad = False
        for m in model.modules():
            m._rebind()
    modes = meta.get("training")
    modules = [m for _, m in model.named_modules()]
    if not keep_modes or modes is None:
        model.eval()
        return
    if not isinstance(modes, list) or len(modes) != len(modules) or not all(isinstance(b, bool) for b in modes):
        raise ModelFileError(f"{path}: 'training' must hold one True/False per module ({len(modules)}), "
                             f"got {modes!r:.100}")
    for m, mode in zip(modules, modes):
        m.__dict__["_training"] = mode
        m._on_mode_change()


def _optimizer_groups(path, model, info, groups):
    """The optimizer's parameter groups of the rebuilt model, by the names the file lists
    (older files without names: one group of all the model's parameters)."""
    names = info.get("param_names")
    if names is None:
        return list(model.parameters())
    params = dict(model.named_parameters())
    if (not isinstance(names, list) or len(names) != len(groups)
            or not all(isinstance(g, list) and all(isinstance(n, str) and n in params for n in g) for g in names)):
        raise ModelFileError(f"{path}: optimizer state does not match: param_names must list the model's "
                             f"parameters for each of the {len(groups)} groups, got {names!r:.100}")
    return [{"params": [params[n] for n in g]} for g in names]


# --- interop: PyTorch state_dicts and safetensors -------------------------------------------------

def _import_optional(name, what):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"{what} needs the optional package {name.split('.')[0]!r} (pip install "
                          f"{name.split('.')[0]})") from None


def _torch_layout_state(model):
    """model.state_dict() plus each BatchNorm's num_batches_tracked (int64 0: fastnn does not
    count batches; PyTorch reads it only with momentum=None), so a torch twin loads it strictly."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a fastnn.nn.Module, got {type(model).__name__}")
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        out[key] = value
        if key.endswith("running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), np.int64)
    return out


def to_torch_state_dict(model):
    """The model's state_dict as torch tensors under PyTorch's names, for the torch twin's
    ``load_state_dict`` or ``torch.save`` (``torch.load(f, weights_only=True)`` reads it back).
    Imports torch only when called."""
    torch = _import_optional("torch", "to_torch_state_dict")
    from collections import OrderedDict

    return OrderedDict((k, torch.from_numpy(np.array(v, copy=True))) for k, v in _torch_layout_state(model).items())


def _as_numpy(value):
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return np.asarray(value)


def from_torch_state_dict(model, state_dict, strict=True):
    """Loads a torch state_dict (tensors or arrays, PyTorch's names) into `model`; returns model.

    Values are converted to the model's dtype; shapes must match (ValueError), and with strict
    missing or unexpected keys are a KeyError (``num_batches_tracked`` is ignored).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"from_torch_state_dict: model must be a fastnn.nn.Module, got {type(model).__name__}")
    if not hasattr(state_dict, "items"):
        raise TypeError(f"from_torch_state_dict: state_dict must be a mapping, got {type(state_dict).__name__}")
    model.load_state_dict({k: _as_numpy(v) for k, v in state_dict.items()}, strict=strict)
    return model


def save_safetensors(path, model):
    """Writes the model's state_dict (PyTorch's names, plus BatchNorm's num_batches_tracked) to a
    safetensors file, which ``safetensors.torch.load_file`` and :func:`load_safetensors` read.
    Needs the optional package safetensors."""
    st = _import_optional("safetensors.numpy", "save_safetensors")
    arrays = {k: np.ascontiguousarray(v) for k, v in _torch_layout_state(model).items()}
    st.save_file(arrays, os.fspath(path), metadata={"format": "pt", "producer": "fastnn"})


def load_safetensors(path, model, strict=True):
    """Loads a safetensors file of PyTorch-named tensors into `model` (as :func:`from_torch_state_dict`)."""
    st = _import_optional("safetensors.numpy", "load_safetensors")
    return from_torch_state_dict(model, st.load_file(os.fspath(path)), strict=strict)
