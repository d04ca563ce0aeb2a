"""The zip container of an NPZ: its table of contents bounded before zipfile parses it, members read bounded.

zipfile itself would parse a central directory of any declared size (millions of entries from a small file)
and inflate members without checking their declared sizes; both are checked here first.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable

import numpy as np

from cleaner.io.bounded_read import CHUNK
from cleaner.io.dataset_types import SAVE_HINT, DatasetError
from cleaner.io.npy_header import MAX_HEADER_BYTES, declared_nbytes, read_npy_header
from cleaner.server.text import mb, one_line

MAX_DIRECTORY_BYTES = 1 << 20  # the zip's table of contents: three members need ~200 bytes
MAX_DEFLATE_RATIO = 1100  # deflate cannot expand data more than ~1032 times
_COMPRESSION_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA", 99: "AES encryption"}

# The end records, as the zip format (APPNOTE 4.3.14-4.3.16) lays them out, little-endian.
_END = struct.Struct("<4s4H2LH")  # signature, disk numbers and entry counts, directory size, its offset, comment
_END_SIGNATURE = b"PK\x05\x06"
_SEARCH_BACK = 1 << 16  # a comment holds at most 64 KiB - 1; zipfile searches this far back, so must we
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk of the zip64 record, its offset, number of disks
_ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
_ZIP64_END = struct.Struct("<4sQ2H2L4Q")  # signature, record size, versions, disks, entry counts, size, offset
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_SEE_ZIP64 = 0xFFFFFFFF  # a 32-bit field's "the zip64 record holds the value"
_LOCAL = struct.Struct("<4s5H3L2H")  # a member's local header (APPNOTE 4.3.7), up to its name and extra field
_LOCAL_SIGNATURE = b"PK\x03\x04"
_HEADER_PEEK = 12 + MAX_HEADER_BYTES  # enough of a member for the longest .npy header read_npy_header accepts


def end_record_offset(data: bytes) -> int | None:
    """Where the end-of-central-directory record starts, found as zip readers find it.

    The last 22 bytes when the archive has no comment; otherwise the last signature within the final
    64 KiB + 22 bytes, since a comment of up to 64 KiB may follow the record.
    """
    tail = len(data) - _END.size
    if tail < 0:
        return None
    if data[tail : tail + 4] == _END_SIGNATURE and data[-2:] == b"\0\0":
        return tail
    found = data.rfind(_END_SIGNATURE, max(0, tail - _SEARCH_BACK))
    return found if 0 <= found <= tail else None


def declared_directory_sizes(data: bytes) -> list[int]:
    """Every size the archive's end records declare for its central directory, zip64 ones included.

    Readers differ in where they look for the zip64 record (just before its locator, or where the locator
    points), so each place that holds one counts: a guard must see what any of them would read.
    """
    at = end_record_offset(data)
    if at is None:
        return []
    classic = _END.unpack_from(data, at)[5]
    zip64 = []
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and data[locator : locator + 4] == _ZIP64_LOCATOR_SIGNATURE:
        record_offset = _ZIP64_LOCATOR.unpack_from(data, locator)[2]
        for record in {locator - _ZIP64_END.size, record_offset}:
            if 0 <= record <= len(data) - _ZIP64_END.size and data[record : record + 4] == _ZIP64_END_SIGNATURE:
                zip64.append(_ZIP64_END.unpack_from(data, record)[8])
    if zip64 and classic == _SEE_ZIP64:
        return zip64
    return zip64 + [classic]


class _BufferFile(io.RawIOBase):
    """A read-only, seekable file over bytes in memory, never copying them whole (io.BytesIO copies a
    bytearray; a file of gigabytes would then be in memory twice)."""

    def __init__(self, data: bytes | bytearray | memoryview):
        super().__init__()
        self._view = memoryview(data).cast("B")
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._at = base + offset
        return self._at

    def readinto(self, target) -> int:
        start = min(self._at, len(self._view))
        n = min(len(target), len(self._view) - start)
        target[:n] = self._view[start : start + n]
        self._at = start + n
        return n


def open_zip(data: bytes | bytearray) -> zipfile.ZipFile:
    """The archive opened for reading, once its declared table of contents is known to be small."""
    directory = max(declared_directory_sizes(data), default=0)
    if directory > MAX_DIRECTORY_BYTES:
        raise DatasetError(
            f"The zip's table of contents declares {mb(directory)}; an NPZ of three arrays needs a few hundred "
            "bytes. Refusing to read it."
        )
    try:
        return zipfile.ZipFile(_BufferFile(data))
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile, struct and decoding errors: all mean 'not a usable zip'
        raise DatasetError(
            f"This is not an NPZ file (it is not a valid zip archive: {one_line(exc)}). Save your arrays with "
            f"{SAVE_HINT}."
        ) from exc


def _check_entry(info: zipfile.ZipInfo, key: str, budget: int) -> None:
    """What the zip's directory says about a member, checked before reading any of it."""
    if info.flag_bits & 0x1:
        raise DatasetError(
            f"'{key}' is encrypted (password-protected) inside the zip; save the NPZ without a password."
        )
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise DatasetError(
            f"'{key}' is compressed with {method}; cleaner reads only NumPy's own formats (stored or deflate). "
            f"Save with {SAVE_HINT}."
        )
    if info.file_size > budget:
        raise DatasetError(
            f"'{key}' would take {mb(info.file_size)} once decompressed; this server's limit is {mb(budget)} "
            "for the arrays still to read."
        )
    if (info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size) or (
        info.file_size > info.compress_size * MAX_DEFLATE_RATIO + 1024
    ):
        raise DatasetError(
            f"'{key}' inside the NPZ is corrupt: the zip says {mb(info.compress_size)} hold "
            f"{mb(info.file_size)}, which is impossible."
        )


def _check_declared(key: str, nbytes: int, budget: int, room: int, shape: tuple, dtype: np.dtype) -> None:
    """The array's header against the budget and against what its zip entry can hold."""
    if nbytes > budget:
        raise DatasetError(
            f"'{key}' declares {mb(nbytes)} of data (shape {shape}, {dtype}); this server's limit is "
            f"{mb(budget)} for the arrays still to read."
        )
    if nbytes > room:
        raise DatasetError(
            f"'{key}' is truncated: its header promises {mb(nbytes)} of data but the zip entry holds "
            f"only {mb(max(room, 0))}."
        )


def _read_data(fh: io.BufferedIOBase, key: str, nbytes: int) -> np.ndarray:
    """Exactly nbytes of array data, then the member's rest (so zipfile checks its CRC; bounded by its size)."""
    raw = np.empty(nbytes, dtype=np.uint8)  # bounded by the member's declared size, itself bounded
    got = 0
    while got < nbytes:
        chunk = fh.read(min(CHUNK, nbytes - got))
        if not chunk:
            break
        raw[got : got + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        got += len(chunk)
    if got < nbytes:
        raise DatasetError(
            f"'{key}' is truncated: its header promises {mb(nbytes)} of data but only {mb(got)} is there."
        )
    while fh.read(CHUNK):
        pass
    return raw


def _stored_member(whole: bytes, info: zipfile.ZipInfo, key: str) -> memoryview:
    """A stored (uncompressed) member's bytes inside the whole archive, found through its local header and
    checked against the directory's CRC: no copy of a large member is made."""
    at = info.header_offset
    if at < 0 or at + _LOCAL.size > len(whole) or whole[at : at + 4] != _LOCAL_SIGNATURE:
        raise DatasetError(f"'{key}' inside the NPZ is corrupt (its local header is missing).")
    name_length, extra_length = _LOCAL.unpack_from(whole, at)[-2:]
    local_name = bytes(whole[at + _LOCAL.size : at + _LOCAL.size + name_length])
    if local_name.decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace") != info.orig_filename:
        raise DatasetError(f"'{key}' inside the NPZ is corrupt (its local header names another file).")
    start = at + _LOCAL.size + name_length + extra_length
    if start + info.compress_size > len(whole):
        raise DatasetError(f"'{key}' is truncated: the zip says {mb(info.compress_size)} but the file ends before.")
    member = memoryview(whole)[start : start + info.compress_size]
    if zlib.crc32(member) != info.CRC:
        raise DatasetError(f"'{key}' inside the NPZ is corrupt (its CRC-32 checksum does not match its data).")
    return member


def _as_array(raw: np.ndarray, key: str, shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> np.ndarray:
    """The array data's bytes as the array its header declares."""
    try:
        return raw.view(dtype).reshape(shape, order="F" if fortran else "C")
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"'{key}' has a shape {shape} that its data type {dtype} cannot take.") from exc


def _stored_array(
    whole: bytes, info: zipfile.ZipInfo, key: str, budget: int, check: Callable[[tuple[int, ...], np.dtype], None]
) -> np.ndarray:
    """A stored member's array as a read-only view of the archive's bytes (a copy only when misaligned)."""
    member = _stored_member(whole, info, key)
    shape, fortran, dtype, header_bytes = read_npy_header(io.BytesIO(member[:_HEADER_PEEK]), key)
    nbytes = declared_nbytes(key, shape, dtype)
    check(shape, dtype)
    _check_declared(key, nbytes, budget, len(member) - header_bytes, shape, dtype)
    raw = np.frombuffer(member, dtype=np.uint8, count=nbytes, offset=header_bytes)
    if dtype.alignment > 1 and raw.ctypes.data % dtype.alignment:
        raw = raw.copy()  # numpy and faiss want aligned rows; a fresh buffer is aligned
    return _as_array(raw, key, shape, fortran, dtype)


def read_member(
    zf: zipfile.ZipFile,
    key: str,
    budget: int,
    check: Callable[[tuple[int, ...], np.dtype], None],
    whole: bytes | None = None,
) -> np.ndarray:
    """Read one .npy member, checking its zip entry and header before inflating a single array byte.

    Given the archive's bytes (`whole`), a stored member is not copied: its array is a read-only view of them.
    """
    info = zf.getinfo(key + ".npy")
    _check_entry(info, key, budget)
    if whole is not None and info.compress_type == zipfile.ZIP_STORED:
        return _stored_array(whole, info, key, budget, check)
    try:
        with zf.open(info) as fh:
            shape, fortran, dtype, header_bytes = read_npy_header(fh, key)
            nbytes = declared_nbytes(key, shape, dtype)
            check(shape, dtype)
            _check_declared(key, nbytes, budget, info.file_size - header_bytes, shape, dtype)
            raw = _read_data(fh, key, nbytes)
    except (DatasetError, MemoryError):
        raise
    except Exception as exc:  # CRC and zlib errors, bad local headers, truncated streams
        raise DatasetError(f"'{key}' inside the NPZ is corrupt ({one_line(exc)}).") from exc
    return _as_array(raw, key, shape, fortran, dtype)
