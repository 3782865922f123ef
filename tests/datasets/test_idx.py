"""load_idx / save_idx against IDX bytes written here by hand (struct), so a shared bug cannot hide."""

import gzip
import re
import struct

import numpy as np
import pytest

from fastnn.datasets import load_idx, save_idx

# IDX type code, big-endian struct/NumPy type, as in the format description (not from idx.py).
TYPES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}
SHAPES = [(7,), (3, 4, 5), (2, 0, 3)]


def idx_bytes(a, code=None, shape=None):
    """The IDX encoding of array a, written independently of fastnn."""
    code = TYPES[a.dtype.type] if code is None else code
    shape = a.shape if shape is None else shape
    header = bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path, data, compress):
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def sample(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        a = rng.standard_normal(shape).astype(dtype) * 1e3
        if a.size >= 3:  # the extremes round-trip too
            a.flat[:3] = [np.inf, -0.0, np.finfo(dtype).max]
        return a
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", list(TYPES), ids=lambda t: np.dtype(t).name)
def test_load_round_trip(tmp_path, rng, dtype, shape, compress):
    a = sample(rng, dtype, shape)
    path = write(tmp_path / "a.idx", idx_bytes(a), compress)
    b = load_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == shape
    assert b.flags.c_contiguous and b.flags.writeable and b.flags.owndata
    np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(load_idx(str(path)), a)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", list(TYPES), ids=lambda t: np.dtype(t).name)
def test_save_matches_hand_written_bytes(tmp_path, rng, dtype, shape):
    a = sample(rng, dtype, shape)
    save_idx(tmp_path / "a.idx", a)
    assert (tmp_path / "a.idx").read_bytes() == idx_bytes(a)
    save_idx(tmp_path / "a.idx.gz", a)
    assert gzip.decompress((tmp_path / "a.idx.gz").read_bytes()) == idx_bytes(a)
    np.testing.assert_array_equal(load_idx(tmp_path / "a.idx.gz"), a)


def test_save_is_deterministic_and_accepts_any_layout(tmp_path, rng):
    a = sample(rng, np.int16, (6, 5)).astype(">i2")[:, ::2]  # big-endian, non-contiguous
    save_idx(tmp_path / "1.gz", a)
    save_idx(tmp_path / "2.gz", a)
    assert (tmp_path / "1.gz").read_bytes() == (tmp_path / "2.gz").read_bytes()
    np.testing.assert_array_equal(load_idx(tmp_path / "1.gz"), a)


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.bool_, np.complex64])
def test_save_rejects_dtypes_without_type_code(tmp_path, dtype):
    with pytest.raises(TypeError, match="no IDX type code"):
        save_idx(tmp_path / "a.idx", np.zeros(3, dtype))


def test_compression_is_detected_by_magic_bytes_not_name(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_plain = write(tmp_path / "plain.gz", idx_bytes(a), compress=False)
    plain_named_gz = write(tmp_path / "compressed-idx3-ubyte", idx_bytes(a), compress=True)
    np.testing.assert_array_equal(load_idx(gz_named_plain), a)
    np.testing.assert_array_equal(load_idx(plain_named_gz), a)


GOOD = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))  # 4 + 12 header bytes, 48 data bytes

BAD = {
    "empty": (b"", "truncated"),
    "short magic": (b"\x00\x00\x08", "truncated"),
    "bad magic": (b"\x01\x00\x08\x01" + GOOD[4:], "magic"),
    "pickle": (b"\x80\x04\x95" + GOOD[3:], "magic"),
    "unknown type": (b"\x00\x00\x0a" + GOOD[3:], "type code 0x0A"),
    "short dims": (GOOD[:10], "truncated"),
    "short data": (GOOD[:-1], r"truncated: the data of shape \(2, 3, 4\) int16 needs 48 bytes, found 47"),
    "no data": (GOOD[:16], "truncated"),
    "trailing bytes": (GOOD + b"\x00", "size mismatch"),
    "wrong dims": (GOOD[:4] + struct.pack(">III", 2, 3, 5) + GOOD[16:], "truncated"),
    "huge dims": (GOOD[:4] + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1) + GOOD[16:], "truncated"),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_raise_value_error_naming_file_and_problem(tmp_path, case, compress):
    data, problem = BAD[case]
    path = write(tmp_path / "bad-file.idx", data, compress)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + problem):
        load_idx(path)


def test_truncated_gzip_stream(tmp_path):
    a = np.arange(5000, dtype=np.int32)
    data = gzip.compress(idx_bytes(a))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*corrupt gzip"):
        load_idx(path)


def test_corrupt_gzip_stream(tmp_path, rng):
    a = rng.integers(0, 255, size=5000, dtype=np.uint8)
    data = bytearray(gzip.compress(idx_bytes(a)))
    data[len(data) // 2 :: 7] = bytes(b ^ 0xFF for b in data[len(data) // 2 :: 7])
    path = tmp_path / "flipped.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_idx(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope.gz")
