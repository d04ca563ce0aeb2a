"""The header of one .npy array inside an NPZ: bounded, parsed without eval, and checked before any data."""

from __future__ import annotations

import io
import math
import struct
from typing import BinaryIO

import numpy as np

from cleaner.io.bounded_read import read_up_to
from cleaner.io.dataset_types import DatasetError
from cleaner.server.text import one_line

NPY_MAGIC = b"\x93NUMPY"
MAX_HEADER_BYTES = 10_000  # numpy's own cap on a .npy header; real headers are ~100 bytes
MAX_NDIM = 32


def read_npy_header(fh: BinaryIO, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and header length in bytes.

    Parsed here far enough to bound the header, then by numpy's safe (literal_eval) parser.
    """
    magic = read_up_to(fh, 8)
    if len(magic) < 8 or magic[:6] != NPY_MAGIC:
        raise DatasetError(f"'{key}' is not a NumPy array (it lacks the .npy signature).")
    major, minor = magic[6], magic[7]
    if major == 1:
        size_field, fmt, reader = 2, "<H", np.lib.format.read_array_header_1_0
    elif major in (2, 3):
        size_field, fmt, reader = 4, "<I", np.lib.format.read_array_header_2_0
    else:
        raise DatasetError(f"'{key}' uses .npy format version {major}.{minor}, which cleaner does not read.")
    length_bytes = read_up_to(fh, size_field)
    if len(length_bytes) < size_field:
        raise DatasetError(f"'{key}' is truncated inside its .npy header.")
    header_len = struct.unpack(fmt, length_bytes)[0]
    if header_len > MAX_HEADER_BYTES:
        raise DatasetError(
            f"'{key}' has a {header_len:,}-byte .npy header; real ones are under {MAX_HEADER_BYTES:,} bytes."
        )
    header = read_up_to(fh, header_len)
    if len(header) < header_len:
        raise DatasetError(f"'{key}' is truncated inside its .npy header.")
    try:
        shape, fortran, dtype = reader(io.BytesIO(length_bytes + header), max_header_size=MAX_HEADER_BYTES)
    except Exception as exc:  # literal_eval, dtype and shape errors of a malformed header
        raise DatasetError(f"'{key}' is not a valid NumPy array (bad .npy header: {one_line(exc)}).") from exc
    return tuple(int(d) for d in shape), bool(fortran), dtype, 8 + size_field + header_len


def declared_nbytes(key: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Refuse object, empty and nested dtypes and impossible shapes; the data size the header promises."""
    if dtype.hasobject:
        raise DatasetError(
            f"'{key}' holds Python objects, which would need unpickling; cleaner never unpickles "
            "uploaded files. Save it as numbers or fixed-width strings, e.g. np.asarray(x, dtype=str)."
        )
    if dtype.subdtype is not None or dtype.itemsize == 0:
        raise DatasetError(f"'{key}' has an unusable data type ({dtype}); save plain numbers or strings.")
    if len(shape) > MAX_NDIM:
        raise DatasetError(f"'{key}' has {len(shape)} dimensions; NumPy arrays have at most {MAX_NDIM} here.")
    if any(d < 0 for d in shape):
        raise DatasetError(f"'{key}' declares a negative shape {shape}.")
    return math.prod(shape) * dtype.itemsize
