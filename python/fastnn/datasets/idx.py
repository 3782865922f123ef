"""IDX files (the MNIST format): a 4-byte magic, big-endian uint32 dimensions, then the raw data.

Format (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"):
    bytes 0-1  0x00 0x00
    byte  2    element type (see IDX_DTYPES)
    byte  3    number of dimensions
    then       one big-endian uint32 per dimension, then the elements, big-endian, C order.

Files may be gzip-compressed; that is recognised from the first two bytes (0x1f 0x8b), not from
the file name. Only bytes are parsed, nothing is unpickled or executed.
"""

import contextlib
import gzip
import os
import zlib

import numpy as np

# IDX type code -> big-endian element dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"


@contextlib.contextmanager
def _open(path):
    """A binary file object over the decompressed content of path (gzip detected by magic bytes)."""
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != _GZIP_MAGIC:
            yield f
            return
        # GzipFile does not close a fileobj it was given; the outer `with` does.
        with gzip.GzipFile(fileobj=f, mode="rb") as gz:
            yield gz


_CHUNK = 1 << 24


def _read_exactly(f, n, path, what):
    """n bytes from f, read in chunks so that a header claiming a huge size allocates nothing up front."""
    data = bytearray()
    try:
        while len(data) < n:
            chunk = f.read(min(_CHUNK, n - len(data)))
            if not chunk:
                break
            data += chunk
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"[load_idx] {path}: truncated or corrupt gzip stream while reading the {what}: {e}") from None
    if len(data) < n:
        raise ValueError(f"[load_idx] {path}: truncated: the {what} needs {n} bytes, found {len(data)}")
    return data


def load_idx(path):
    """Read an IDX file (plain or gzip-compressed) into a NumPy array.

    Args:
        path: str or os.PathLike, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        A new, writable C-contiguous array in native byte order with the file's dtype
        (uint8, int8, int16, int32, float32 or float64) and shape.

    Raises:
        ValueError: bad magic or type code, a truncated or corrupt file, or trailing bytes after
            the data; the message names the file and the problem.
    """
    path = os.fspath(path)
    with _open(path) as f:
        magic = _read_exactly(f, 4, path, "4-byte magic number")
        if magic[0] != 0 or magic[1] != 0:
            raise ValueError(
                f"[load_idx] {path}: not an IDX file: magic must start with 00 00, got {magic.hex(' ')}"
            )
        code, ndim = magic[2], magic[3]
        if code not in IDX_DTYPES:
            known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
            raise ValueError(f"[load_idx] {path}: unknown IDX type code 0x{code:02X} (known: {known})")
        dtype = IDX_DTYPES[code]
        shape = tuple(int(d) for d in np.frombuffer(_read_exactly(f, 4 * ndim, path, f"{ndim} dimensions"), ">u4"))
        count = 1
        for d in shape:
            count *= d
        nbytes = count * dtype.itemsize
        data = _read_exactly(f, nbytes, path, f"data of shape {shape} {dtype.newbyteorder('=').name}")
        try:
            extra = f.read(1)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ValueError(f"[load_idx] {path}: truncated or corrupt gzip stream after the array: {e}") from None
        if extra:
            raise ValueError(
                f"[load_idx] {path}: size mismatch: trailing bytes after the {nbytes} data bytes of shape {shape}"
            )
    # astype copies: the result is writable, owns its memory and is in native byte order.
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def save_idx(path, array):
    """Write an array as an IDX file, gzip-compressed when path ends in ``.gz``.

    The gzip header carries no file name or time stamp, so equal arrays give equal files.

    Args:
        path: str or os.PathLike.
        array: array_like of dtype uint8, int8, int16, int32, float32 or float64, at most 255 dims.

    Raises:
        TypeError: the dtype has no IDX type code (e.g. int64, bool).
        ValueError: more than 255 dimensions or a dimension of 2**32 or more.
    """
    path = os.fspath(path)
    a = np.asarray(array)
    native = a.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        names = ", ".join(dt.newbyteorder("=").name for dt in IDX_DTYPES.values())
        raise TypeError(f"[save_idx] {path}: dtype {a.dtype} has no IDX type code (supported: {names})")
    if a.ndim > 255 or any(d >= 2**32 for d in a.shape):
        raise ValueError(f"[save_idx] {path}: shape {a.shape} does not fit an IDX header")
    header = bytes([0, 0, _IDX_CODES[native], a.ndim]) + np.asarray(a.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(a, dtype=native.newbyteorder(">")).tobytes()
    with open(path, "wb") as f:
        if path.endswith(".gz"):
            with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
                gz.write(payload)
        else:
            f.write(payload)
