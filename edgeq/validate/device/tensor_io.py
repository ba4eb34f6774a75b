"""The edgeq tensor file (``.bin``) read and written by the C++ ``.pte`` runner — numpy only, device-safe.

Layout (all integers little-endian)::

    magic   8 bytes   b"EDGEQT01"
    count   uint32    number of tensors
    count × tensor:
        name_len uint32, name (UTF-8, name_len bytes)
        dtype    uint32   0 float32, 1 int64, 2 int32, 3 uint8, 4 int8, 5 bool, 6 float16, 7 float64
        ndim     uint32, shape ndim × int64
        nbytes   uint64, data (C-contiguous, nbytes bytes)

Inputs are written in the model's input order (the runner matches by position; names are informative).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = b"EDGEQT01"
DTYPE_CODES: dict[str, int] = {"float32": 0, "int64": 1, "int32": 2, "uint8": 3, "int8": 4, "bool": 5,
                               "float16": 6, "float64": 7}
_CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}


class TensorFileError(ValueError):
    """The file is not a well-formed edgeq tensor file (bad magic, truncated, inconsistent sizes)."""


def write_tensors(path: str | Path, tensors: dict[str, np.ndarray]) -> None:
    """Write named arrays in insertion order. Arrays are made C-contiguous little-endian copies."""
    parts = [MAGIC, struct.pack("<I", len(tensors))]
    for name, arr in tensors.items():
        a = np.asarray(arr)
        if str(a.dtype) not in DTYPE_CODES:
            raise TensorFileError(f"tensor {name!r}: dtype {a.dtype} is not supported by the tensor file format")
        a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
        raw = name.encode()
        parts += [struct.pack("<I", len(raw)), raw, struct.pack("<II", DTYPE_CODES[str(a.dtype)], a.ndim),
                  struct.pack(f"<{a.ndim}q", *a.shape), struct.pack("<Q", a.nbytes), a.tobytes()]
    Path(path).write_bytes(b"".join(parts))


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read every tensor, in file order. Raises :class:`TensorFileError` on a malformed file."""
    buf = Path(path).read_bytes()
    if buf[:8] != MAGIC:
        raise TensorFileError(f"{path}: not an edgeq tensor file (bad magic)")
    pos = 8

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(buf):
            raise TensorFileError(f"{path}: truncated while reading {what}")
        out = buf[pos:pos + n]
        pos += n
        return out

    (count,) = struct.unpack("<I", take(4, "count"))
    out: dict[str, np.ndarray] = {}
    for _ in range(count):
        (name_len,) = struct.unpack("<I", take(4, "name length"))
        name = take(name_len, "name").decode()
        code, ndim = struct.unpack("<II", take(8, "dtype"))
        if code not in _CODE_DTYPES:
            raise TensorFileError(f"{path}: tensor {name!r} has unknown dtype code {code}")
        shape = struct.unpack(f"<{ndim}q", take(8 * ndim, "shape"))
        (nbytes,) = struct.unpack("<Q", take(8, "byte count"))
        dtype = np.dtype(_CODE_DTYPES[code]).newbyteorder("<")
        if nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise TensorFileError(f"{path}: tensor {name!r}: {nbytes} bytes do not match shape {shape} of {dtype}")
        out[name] = np.frombuffer(take(nbytes, f"data of {name!r}"), dtype=dtype).reshape(shape).astype(
            dtype.newbyteorder("="))
    return out
