"""fastnn.load on hostile files: nothing is allocated beyond what the file's arrays declare, and
every failure is a ModelFileError (never a bare MemoryError, TypeError or TokenError).

Files whose loading could take a lot of memory are loaded in a subprocess with an address-space
limit of 2 GiB, and its peak RSS growth (ru_maxrss) during load must stay small.
"""

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.io import ModelFileError
from tests.isolation import child_env, skip_address_space_limit_under_asan

MiB = 1 << 20


def meta(architecture, dtype="float32", **extra):
    return {"format": "fastnn-model", "version": 1, "dtype": dtype, "architecture": architecture, "extra": {}, **extra}


def linear(i, o, bias=True):
    return {"class": "Sequential", "children": [["0", {"class": "Linear", "config": {
        "in_features": i, "out_features": o, "activation": "none", "negative_slope": 0.01, "bias": bias}}]]}


def npy(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def npy_header(descr, shape, fortran=False):
    """The header np.save writes for an array of this dtype and shape (no data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue()


def write(path, members, meta_json=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fastnn.json", meta_json if meta_json is not None else json.dumps(members.pop("fastnn.json")))
        for name, data in members.items():
            z.writestr(name, data)
    return path


def write_deflated_zeros(path, arch, name, header, zeros):
    """A model file whose member `name` is `header` followed by `zeros` zero bytes, deflated while
    streaming (a zip bomb: ~1 KB of compressed data per MiB)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("fastnn.json", json.dumps(meta(arch)))
        with z.open(name, "w", force_zip64=True) as f:
            f.write(header)
            block = bytes(MiB)
            for _ in range(zeros // MiB):
                f.write(block)
            f.write(bytes(zeros % MiB))
    return path


def load_in_subprocess(path, with_optimizer=False):
    """(stderr text, RSS growth in MiB during load) of fastnn.load in a child limited to 2 GiB."""
    skip_address_space_limit_under_asan()
    code = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import fastnn
from fastnn.io import ModelFileError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    fastnn.load({str(path)!r}, with_optimizer={with_optimizer})
    print("loaded", file=sys.stderr)
except ModelFileError as e:
    print("ModelFileError:", e, file=sys.stderr)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=child_env())
    assert result.returncode == 0, result.stderr
    return result.stderr, float(result.stdout.strip())


def test_a_huge_declared_architecture_is_refused_before_it_is_built(tmp_path):
    """1 KB declaring Linear(100000, 100000) (37 GiB) used to build and initialize it first."""
    path = write(tmp_path / "huge.fnn", {"fastnn.json": meta(linear(100000, 100000)),
                                          "model/0.weight.npy": npy(np.zeros((2, 2), np.float32)),
                                          "model/0.bias.npy": npy(np.zeros(2, np.float32))})
    assert path.stat().st_size < 2048
    err, grown = load_in_subprocess(path)
    assert "ModelFileError" in err and "the architecture declares about 10000000000 parameters" in err, err
    assert grown < 32, f"load grew RSS by {grown:.0f} MiB"


@pytest.mark.parametrize("cls,config", [("BatchNorm1d", {"num_features": 10**9, "affine": False,
                                                             "track_running_stats": False}),
                                        ("PReLU", {"num_parameters": 10**9})])
def test_other_huge_layers_are_refused(tmp_path, cls, config):
    arch = {"class": "Sequential", "children": [["0", {"class": cls, "config": config}]]}
    path = write(tmp_path / "huge.fnn", {"fastnn.json": meta(arch)})
    err, grown = load_in_subprocess(path)
    assert "ModelFileError" in err and "the architecture declares about 1000000000 parameters" in err, err
    assert grown < 32


def test_a_member_that_inflates_beyond_its_header_is_not_read(tmp_path):
    """The header says (2, 3) float32 (24 bytes); the member inflates to 128 MiB of zeros."""
    path = write_deflated_zeros(tmp_path / "bomb.fnn", linear(3, 2), "model/0.weight.npy",
                                npy_header("<f4", (2, 3)), 128 * MiB)
    assert path.stat().st_size < 2 * MiB
    err, grown = load_in_subprocess(path)
    assert "ModelFileError" in err and "its header declares a float32 array of shape (2, 3)" in err, err
    assert grown < 32, f"load grew RSS by {grown:.0f} MiB"


def test_a_consistent_but_oversized_member_is_not_read(tmp_path):
    """Header and member agree on 128 MiB, but the architecture wants (2, 3): refused before reading."""
    path = write_deflated_zeros(tmp_path / "big.fnn", linear(3, 2, bias=False), "model/0.weight.npy",
                                npy_header("<f4", (4096, 8192)), 128 * MiB)
    err, grown = load_in_subprocess(path)
    assert "ModelFileError" in err and "'0.weight' has shape (4096, 8192), the model expects (2, 3)" in err, err
    assert grown < 32, f"load grew RSS by {grown:.0f} MiB"


def patch_central_size(data, name, size):
    """Sets the uncompressed size of member `name` in the central directory to `size`."""
    data = bytearray(data)
    at = data.index(b"PK\x01\x02")
    while True:
        n = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + n].decode() == name:
            struct.pack_into("<I", data, at + 24, size)
            return bytes(data)
        at = data.index(b"PK\x01\x02", at + 4)


def good_file(tmp_path, opt=True):
    fastnn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = optim.Adam(model.parameters())
    X = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    fastnn.train_step(model, X, np.zeros(8, np.int64), "cross_entropy", optimizer)
    path = tmp_path / "good.fnn"
    fastnn.save(path, model, optimizer if opt else None)
    return path, model


def rewrite(src, dst, replace=(), meta_edit=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            data = dict(replace).get(name, zin.read(name))
            if name == "fastnn.json" and meta_edit:
                m = json.loads(data)
                meta_edit(m)
                data = json.dumps(m)
            zout.writestr(name, data)
    return dst


def test_impossible_declared_sizes_are_refused(tmp_path):
    path, _ = good_file(tmp_path)
    bad = tmp_path / "lie.fnn"
    bad.write_bytes(patch_central_size(path.read_bytes(), "model/0.weight.npy", 0xFFFFFFF0))
    with pytest.raises(ModelFileError, match=r"member 'model/0.weight.npy' declares 4294967280 bytes from \d+ compressed"):
        fastnn.load(bad)


BAD_FILES = {
    "deeply nested JSON": lambda: (None, "[" * 100000 + "]" * 100000),
    "JSON integer of 10**5 digits": lambda: (None, '{"format": "fastnn-model", "version": ' + "9" * 100000 + "}"),
    "architecture is a string": lambda: (meta("Sequential"), None),
    "children are not pairs": lambda: (meta({"class": "Sequential", "children": [1, 2]}), None),
    "config is a list": lambda: (meta({"class": "Sequential", "children": [["0", {"class": "Linear", "config": [3]}]]}), None),
    "config has dtype": lambda: (meta({"class": "Sequential", "children": [["0", {"class": "Identity",
                                                                                   "config": {"dtype": "float16"}}]]}), None),
    "config has a float size": lambda: (meta(linear(3.5, 2)), None),
    "not UTF-8": lambda: (None, b"\xff\xfe{}"),
    "meta is a list": lambda: (None, "[]"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_metadata_is_a_model_file_error(tmp_path, case):
    m, raw = BAD_FILES[case]()
    path = write(tmp_path / "bad.fnn", {"fastnn.json": m} if m is not None else {}, raw)
    with pytest.raises(ModelFileError, match=str(path).replace("\\", "\\\\")):
        fastnn.load(path, with_optimizer=True)


def malformed_header():
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3"  # unclosed: tokenize.TokenError
    text += b" " * (64 - 10 - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(24)


BAD_ARRAYS = {
    "complex weights": (npy(np.zeros((4, 3), np.complex64)), r"holds complex64 values, not numbers"),
    "structured dtype": (npy(np.zeros(12, [("a", "<f4")])), r"values, not numbers"),
    "huge shape in the header": (npy_header("<f4", (2**40, 2**40)) + bytes(8), r"its header declares a float32 array of shape"),
    "negative dimensions": (npy_header("<f4", (-1, -3)) + bytes(12), r"its header declares a float32 array of shape \(-1, -3\)"),
    "truncated data": (npy(np.zeros((4, 3), np.float32))[:-5], r"its header declares a float32 array of shape \(4, 3\)"),
    "extra data": (npy(np.zeros((4, 3), np.float32)) + b"xx", r"its header declares"),
    "malformed header (TokenError)": (malformed_header(), r"not a readable fastnn model file.*TokenError"),
    "not an npy file": (b"hello world, not numpy", r"not a readable fastnn model file"),
    "string dtype": (npy(np.array(["abc"] * 12).reshape(4, 3)), r"values, not numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_malformed_arrays_are_model_file_errors(tmp_path, case):
    data, pattern = BAD_ARRAYS[case]
    path, _ = good_file(tmp_path)
    bad = rewrite(path, tmp_path / "bad.fnn", replace={"model/0.weight.npy": data})
    with pytest.raises(ModelFileError, match=pattern):
        fastnn.load(bad)


def test_malformed_optimizer_arrays_are_model_file_errors(tmp_path):
    path, _ = good_file(tmp_path)
    for data, pattern in [(npy(np.zeros((3, 3), np.float32)), r"'exp_avg' has shape \(3, 3\)"),
                          (npy_header("<f4", (2**40,)), r"its header declares"),
                          (npy(np.zeros(10**6, np.float32)), r"'exp_avg' has shape \(1000000,\), the model has 34"),
                          (npy(np.zeros(34, np.complex128)), r"holds complex128 values")]:
        bad = rewrite(path, tmp_path / "bad.fnn", replace={"optimizer/exp_avg.npy": data})
        fastnn.load(bad)  # the model alone is fine
        with pytest.raises(ModelFileError, match=pattern):
            fastnn.load(bad, with_optimizer=True)
    bad = rewrite(path, tmp_path / "bad.fnn", meta_edit=lambda m: m["optimizer"].update(param_groups="x"))
    with pytest.raises(ModelFileError, match="param_groups must be a list of dicts"):
        fastnn.load(bad, with_optimizer=True)


def test_other_byte_orders_and_layouts_load_as_saved(tmp_path):
    path, model = good_file(tmp_path)
    weight = model[0].weight.numpy()
    for array in (weight.astype(">f4"), np.asfortranarray(weight)):
        good = rewrite(path, tmp_path / "other.fnn", replace={"model/0.weight.npy": npy(array)})
        loaded = fastnn.load(good)
        np.testing.assert_array_equal(loaded[0].weight.numpy(), weight)


def test_a_saved_model_still_loads_within_the_limits(tmp_path):
    """A legitimate, highly compressible file (all-zero weights of 4 MiB) is not taken for a bomb."""
    model = nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 2))
    model.flat_parameters()[:] = 0
    path = tmp_path / "zeros.fnn"
    fastnn.save(path, model)
    assert path.stat().st_size < 64 * 1024
    np.testing.assert_array_equal(fastnn.load(path).flat_parameters(), 0)


@pytest.mark.parametrize("children", [[[0]], [["0"]], [[0, {"class": "Identity"}]], "x", [["a", {"class": "Identity"}, 1]]])
def test_malformed_sequential_children_are_a_model_file_error(tmp_path, children):
    path = tmp_path / "m.fnn"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("fastnn.json", json.dumps({"format": "fastnn-model", "version": 1, "dtype": "float32",
                                              "architecture": {"class": "Sequential", "children": children}}))
    with pytest.raises(ModelFileError):
        fastnn.load(path)
