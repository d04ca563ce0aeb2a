"""Load and validate an NPZ of embeddings, labels and image paths, without ever unpickling."""
from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Union

import numpy as np

REQUIRED_KEYS = ("embeddings", "labels", "image_paths")
MIN_ROWS = 10
MAX_PATH_CHARS = 4096
MAX_LABEL_CHARS = 256
MAX_MEMBERS = 64
_CHUNK = 1 << 20

NpzSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


class DatasetError(ValueError):
    """A problem with the user's data, worded for the person who made the file."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Validated arrays of one dataset, with digests to key caches on."""

    embeddings: np.ndarray  # [N, D] float32, C-contiguous, finite
    labels: np.ndarray  # [N] int64 or str
    image_paths: np.ndarray  # [N] str
    digest: str  # of all content
    embedding_digest: str  # of the embeddings only: layouts and graphs depend on nothing else
    name: str = "dataset"
    class_names: tuple[str, ...] = field(init=False)
    label_codes: np.ndarray = field(init=False)  # [N] int32 index into class_names

    def __post_init__(self) -> None:
        uniques, codes = np.unique(self.labels, return_inverse=True)
        object.__setattr__(self, "class_names", tuple(str(u) for u in uniques))
        object.__setattr__(self, "label_codes", codes.astype(np.int32).reshape(-1))
        for arr in (self.embeddings, self.labels, self.image_paths, self.label_codes):
            arr.setflags(write=False)

    @property
    def n(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def dims(self) -> int:
        return int(self.embeddings.shape[1])

    def label_text(self, row: int) -> str:
        return self.class_names[int(self.label_codes[row])]

    def file_name(self, row: int) -> str:
        return os.path.basename(str(self.image_paths[row])) or str(self.image_paths[row])


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))  # the same bytes as .tobytes(), without a copy
    return h.hexdigest()


_SAVE_HINT = "np.savez_compressed('x.npz', embeddings=..., labels=..., image_paths=...)"
_NPY_MAGIC = b"\x93NUMPY"
_MAX_HEADER_BYTES = 10_000  # numpy's own cap on a .npy header; real headers are ~100 bytes
_MAX_NDIM = 32
_MAX_DIRECTORY_BYTES = 1 << 20  # the zip's table of contents: three members need ~200 bytes
_MAX_DEFLATE_RATIO = 1100  # deflate cannot expand data more than ~1032 times
_MAX_SHOWN_CHARS = 120
_UNEXPECTED = "unexpected problem"  # only ever in the safety net's message; the fuzz tests look for it
_COMPRESSION_NAMES = {
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "LZMA",
    99: "AES encryption",
}


def _mb(nbytes: int) -> str:
    """A byte count for people: '3.2 MB', '512 kB', '40 bytes'. MB as in the server's settings: 1024 * 1024."""
    mb = nbytes / (1024 * 1024)
    if mb >= 10:
        return f"{mb:,.0f} MB"
    if mb >= 1:
        return f"{mb:.1f} MB"
    if nbytes >= 10_000:
        return f"{nbytes / 1024:.0f} kB"
    return f"{nbytes:,} bytes"


def _shown(text: object) -> str:
    """A path or name as it may appear in a message: short, and with control characters escaped."""
    text = str(text)
    if len(text) > _MAX_SHOWN_CHARS:
        half = _MAX_SHOWN_CHARS // 2
        text = f"{text[:half]}…{text[-half:]}"
    return text if text.isprintable() else repr(text)[1:-1]


def _reason(exc: BaseException) -> str:
    """An exception's message on one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def _too_large(what: str, size: int, limit: int) -> DatasetError:
    return DatasetError(f"{what} is {_mb(size)}; this server accepts files up to {_mb(limit)}.")


def _read_bounded(source: NpzSource, limit: int) -> bytes:
    """Read the whole source, refusing anything larger than `limit` bytes without reading past it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        with memoryview(source) as view:
            if view.nbytes > limit:
                raise _too_large("The file", view.nbytes, limit)
            return source if type(source) is bytes else view.tobytes()
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, limit)
    if not callable(getattr(source, "read", None)):
        raise DatasetError(
            f"Cannot read a {type(source).__name__}: give a file path, the file's bytes or a file opened with 'rb'."
        )
    return _read_stream(source, limit)


def _read_path(source: Union[str, os.PathLike], limit: int) -> bytes:
    try:
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"That is not a usable file path ({_reason(exc)}).") from exc
    shown = _shown(path)
    if not path.strip():
        raise DatasetError("No file path was given.")
    if "\x00" in path:
        raise DatasetError(f"The path {shown} contains a NUL character, which no file name can hold.")
    # O_NONBLOCK: a FIFO put where the file was must not hang the server; fstat below refuses it.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DatasetError(f"There is no file at {shown}.") from None
    except IsADirectoryError:
        raise DatasetError(f"{shown} is a folder, not an NPZ file.") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _reason(exc)
        raise DatasetError(f"Could not open {shown}: {reason}.") from None
    try:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise DatasetError(f"Could not read {shown}: {exc.strerror or _reason(exc)}.") from None
        if stat.S_ISDIR(st.st_mode):
            raise DatasetError(f"{shown} is a folder, not an NPZ file.")
        if not stat.S_ISREG(st.st_mode):
            raise DatasetError(f"{shown} is not a regular file (it is a device, pipe or socket).")
        if st.st_size > limit:
            raise _too_large(_shown(os.path.basename(path)) or shown, st.st_size, limit)
        fh = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with fh:
        return _read_stream(fh, limit, size_hint=st.st_size)


def _read_stream(fh: BinaryIO, limit: int, size_hint: int | None = None) -> bytes:
    """Read a binary stream to its end, but never more than `limit` + 1 bytes."""
    chunks: list[bytes] = []
    total = 0
    want = size_hint + 1 if size_hint is not None else _CHUNK
    while True:
        try:
            chunk = fh.read(max(1, min(want, limit + 1 - total)))
        except OSError as exc:
            raise DatasetError(f"Could not read the file: {exc.strerror or _reason(exc)}.") from exc
        except Exception as exc:  # a broken upload stream
            raise DatasetError(f"Could not read the file ({_reason(exc)}).") from exc
        if chunk is None:
            raise DatasetError("Could not read the file: the stream has no data available.")
        if isinstance(chunk, str):
            raise DatasetError("The file was opened as text; open it in binary mode ('rb').")
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise DatasetError(f"Reading the file gave a {type(chunk).__name__}, not bytes.")
        if not len(chunk):
            break
        chunk = bytes(chunk)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise DatasetError(f"The file is larger than this server's limit of {_mb(limit)}.")
        want = _CHUNK
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    """Up to n bytes; fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        part = fh.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _directory_size(fp: BinaryIO) -> int | None:
    """The size the zip's end record declares for its table of contents, before zipfile parses it."""
    try:
        endrec = zipfile._EndRecData(fp)  # type: ignore[attr-defined]  # the same reader ZipFile uses
        return int(endrec[zipfile._ECD_SIZE]) if endrec else None  # type: ignore[attr-defined]
    except Exception:  # a missing private helper or a malformed record: ZipFile itself will judge
        return None
    finally:
        fp.seek(0)


def _open_zip(data: bytes) -> zipfile.ZipFile:
    fp = io.BytesIO(data)
    directory = _directory_size(fp)
    if directory is not None and directory > _MAX_DIRECTORY_BYTES:
        raise DatasetError(
            f"The zip's table of contents declares {_mb(directory)}; an NPZ of three arrays needs a few hundred "
            "bytes. Refusing to read it."
        )
    try:
        return zipfile.ZipFile(fp)
    except MemoryError:
        raise
    except Exception as exc:  # BadZipFile, struct and decoding errors: all mean 'not a usable zip'
        raise DatasetError(
            f"This is not an NPZ file (it is not a valid zip archive: {_reason(exc)}). "
            f"Save your arrays with {_SAVE_HINT}."
        ) from exc


def _read_npy_header(fh: BinaryIO, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and header length in bytes.

    Parsed ourselves far enough to bound the header, then by numpy's safe (literal_eval) parser.
    """
    magic = _read_exact(fh, 8)
    if len(magic) < 8 or magic[:6] != _NPY_MAGIC:
        raise DatasetError(f"'{key}' is not a NumPy array (it lacks the .npy signature).")
    major, minor = magic[6], magic[7]
    if major == 1:
        size_field, fmt, reader = 2, "<H", np.lib.format.read_array_header_1_0
    elif major in (2, 3):
        size_field, fmt, reader = 4, "<I", np.lib.format.read_array_header_2_0
    else:
        raise DatasetError(f"'{key}' uses .npy format version {major}.{minor}, which cleaner does not read.")
    length_bytes = _read_exact(fh, size_field)
    if len(length_bytes) < size_field:
        raise DatasetError(f"'{key}' is truncated inside its .npy header.")
    header_len = struct.unpack(fmt, length_bytes)[0]
    if header_len > _MAX_HEADER_BYTES:
        raise DatasetError(
            f"'{key}' has a {header_len:,}-byte .npy header; real ones are under {_MAX_HEADER_BYTES:,} bytes."
        )
    header = _read_exact(fh, header_len)
    if len(header) < header_len:
        raise DatasetError(f"'{key}' is truncated inside its .npy header.")
    try:
        shape, fortran, dtype = reader(io.BytesIO(length_bytes + header), max_header_size=_MAX_HEADER_BYTES)
    except Exception as exc:  # literal_eval, dtype and shape errors of a malformed header
        raise DatasetError(f"'{key}' is not a valid NumPy array (bad .npy header: {_reason(exc)}).") from exc
    return tuple(int(d) for d in shape), bool(fortran), dtype, 8 + size_field + header_len


def _declared_nbytes(key: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Refuse object, empty and nested dtypes and impossible shapes; the data size the header promises."""
    if dtype.hasobject:
        raise DatasetError(
            f"'{key}' holds Python objects, which would need unpickling; cleaner never unpickles "
            "uploaded files. Save it as numbers or fixed-width strings, e.g. np.asarray(x, dtype=str)."
        )
    if dtype.subdtype is not None or dtype.itemsize == 0:
        raise DatasetError(f"'{key}' has an unusable data type ({dtype}); save plain numbers or strings.")
    if len(shape) > _MAX_NDIM:
        raise DatasetError(f"'{key}' has {len(shape)} dimensions; NumPy arrays have at most {_MAX_NDIM} here.")
    if any(d < 0 for d in shape):
        raise DatasetError(f"'{key}' declares a negative shape {shape}.")
    return math.prod(shape) * dtype.itemsize


def _read_member(
    zf: zipfile.ZipFile, key: str, budget: int, check: Callable[[tuple[int, ...], np.dtype], None]
) -> np.ndarray:
    """Read one .npy member, checking its zip entry and header before inflating a single array byte."""
    info = zf.getinfo(key + ".npy")
    if info.flag_bits & 0x1:
        raise DatasetError(f"'{key}' is encrypted (password-protected) inside the zip; save the NPZ without a password.")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise DatasetError(
            f"'{key}' is compressed with {method}; cleaner reads only NumPy's own formats (stored or deflate). "
            f"Save with {_SAVE_HINT}."
        )
    if info.file_size > budget:
        raise DatasetError(
            f"'{key}' would take {_mb(info.file_size)} once decompressed; this server's limit is {_mb(budget)} "
            "for the arrays still to read."
        )
    if (info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size) or (
        info.file_size > info.compress_size * _MAX_DEFLATE_RATIO + 1024
    ):
        raise DatasetError(
            f"'{key}' inside the NPZ is corrupt: the zip says {_mb(info.compress_size)} hold "
            f"{_mb(info.file_size)}, which is impossible."
        )
    try:
        with zf.open(info) as fh:
            shape, fortran, dtype, header_bytes = _read_npy_header(fh, key)
            nbytes = _declared_nbytes(key, shape, dtype)
            check(shape, dtype)
            if nbytes > budget:
                raise DatasetError(
                    f"'{key}' declares {_mb(nbytes)} of data (shape {shape}, {dtype}); this server's limit is "
                    f"{_mb(budget)} for the arrays still to read."
                )
            room = info.file_size - header_bytes
            if nbytes > room:
                raise DatasetError(
                    f"'{key}' is truncated: its header promises {_mb(nbytes)} of data but the zip entry holds "
                    f"only {_mb(max(room, 0))}."
                )
            raw = np.empty(nbytes, dtype=np.uint8)  # bounded by the member's declared size, itself bounded
            got = 0
            while got < nbytes:
                chunk = fh.read(min(_CHUNK, nbytes - got))
                if not chunk:
                    break
                raw[got:got + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                got += len(chunk)
            if got < nbytes:
                raise DatasetError(
                    f"'{key}' is truncated: its header promises {_mb(nbytes)} of data but only {_mb(got)} is there."
                )
            while fh.read(_CHUNK):  # to the member's end, so zipfile checks its CRC; bounded by file_size
                pass
    except DatasetError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # CRC and zlib errors, bad local headers, truncated streams
        raise DatasetError(f"'{key}' inside the NPZ is corrupt ({_reason(exc)}).") from exc
    try:
        return raw.view(dtype).reshape(shape, order="F" if fortran else "C")
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"'{key}' has a shape {shape} that its data type {dtype} cannot take.") from exc


def _check_embeddings(shape: tuple[int, ...], dtype: np.dtype, max_rows: int, max_dims: int) -> None:
    """Everything about the embeddings that their header alone tells."""
    if len(shape) != 2:
        raise DatasetError(
            f"'embeddings' must be a 2-D array [N, D] (one row per image); got {len(shape)}-D with shape {shape}."
        )
    kind = dtype.kind
    if kind == "c":
        raise DatasetError("'embeddings' are complex numbers; cleaner needs real floats.")
    if kind == "b":
        raise DatasetError("'embeddings' are booleans (dtype bool); cleaner needs numeric floats.")
    if kind not in "fiu":
        raise DatasetError(f"'embeddings' must be numeric floats; got dtype {dtype}.")
    n, d = shape
    if n < MIN_ROWS:
        raise DatasetError(f"'embeddings' has {n} rows; cleaner needs at least {MIN_ROWS} images.")
    if d < 2:
        raise DatasetError(f"'embeddings' has {d} column(s); an embedding needs at least 2 dimensions.")
    if n > max_rows:
        raise DatasetError(f"The dataset has {n:,} rows; this server accepts at most {max_rows:,}.")
    if d > max_dims:
        raise DatasetError(f"The embeddings have {d:,} dimensions; this server accepts at most {max_dims:,}.")


def _check_column(key: str, shape: tuple[int, ...], n: int) -> None:
    what = "label" if key == "labels" else "path"
    if len(shape) != 1:
        raise DatasetError(f"'{key}' must be 1-D with one {what} per image; got shape {shape}.")
    if shape[0] != n:
        raise DatasetError(f"'{key}' has {shape[0]:,} entries but 'embeddings' has {n:,} rows.")


def _validate_embeddings(raw: np.ndarray, max_rows: int, max_dims: int) -> np.ndarray:
    _check_embeddings(raw.shape, raw.dtype, max_rows, max_dims)
    with np.errstate(over="ignore", invalid="ignore"):
        emb = np.ascontiguousarray(raw, dtype=np.float32)
    if raw.dtype.kind != "f":  # integers are always finite, and fit float32's range
        return emb
    del raw
    bad_rows = ~np.isfinite(emb).all(axis=1)
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows)[0])
        raise DatasetError(
            f"'embeddings' has {int(bad_rows.sum()):,} row(s) with NaN or infinite values "
            f"(or values too large for float32), the first at row {first}. Remove or fix them."
        )
    return emb


def _validate_labels(raw: np.ndarray, n: int) -> np.ndarray:
    _check_column("labels", raw.shape, n)
    kind = raw.dtype.kind
    if kind in "iub":
        if kind == "u" and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
            raise DatasetError("'labels' holds integers too large for int64; use small class ids or class names.")
        return raw.astype(np.int64)
    if kind == "f":
        with np.errstate(all="ignore"):
            wide = raw.astype(np.float64)  # 2**53 does not fit float16
            ok = np.isfinite(wide) & (wide == np.round(wide)) & (np.abs(wide) <= 2.0**53)
        if not ok.all():
            raise DatasetError(
                "'labels' are fractional, huge or NaN floats; use integer class ids or class names "
                f"(the first bad one is at row {int(np.flatnonzero(~ok)[0])})."
            )
        return raw.astype(np.int64)
    if kind in "US":
        labels = _as_text(raw, "labels", MAX_LABEL_CHARS)
        lengths = np.char.str_len(labels)
        if (lengths == 0).any():
            raise DatasetError(f"'labels' has an empty label at row {int(np.flatnonzero(lengths == 0)[0])}.")
        return labels
    if kind in "Mm":
        raise DatasetError(f"'labels' are dates or times (dtype {raw.dtype}); use integer class ids or class names.")
    if kind == "c":
        raise DatasetError("'labels' are complex numbers; use integer class ids or class names.")
    raise DatasetError(f"'labels' must be integers or strings; got dtype {raw.dtype}.")


def _code_points(text: np.ndarray) -> np.ndarray:
    """[N, width] uint32 code points of a 1-D unicode array (0 = padding at the end of each string)."""
    native = np.ascontiguousarray(text, dtype=text.dtype.newbyteorder("="))
    width = native.dtype.itemsize // 4
    return native.view(np.uint32).reshape(native.shape[0], width)


def _as_text(raw: np.ndarray, key: str, max_chars: int) -> np.ndarray:
    """1-D strings or UTF-8 bytes as a native unicode array of valid text no longer than max_chars."""
    from_bytes = raw.dtype.kind == "S"
    if from_bytes:
        if raw.dtype.itemsize > 4 * max_chars:  # a UTF-8 character takes at most 4 bytes
            nbytes = np.char.str_len(raw)
            if nbytes.max(initial=0) > 4 * max_chars:
                raise DatasetError(f"'{key}' holds an entry longer than {max_chars:,} characters.")
            raw = raw.astype(f"S{max(1, int(nbytes.max(initial=1)))}")
        try:
            text = raw.astype(f"U{raw.dtype.itemsize}")  # numpy's own cast: ASCII only, but no Python objects
        except UnicodeDecodeError:
            try:
                text = np.char.decode(raw, "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"'{key}' holds bytes that are not UTF-8 text.") from exc
        text = np.asarray(text, dtype=str) if text.dtype.kind != "U" else text
    else:
        text = raw
    if not from_bytes:  # (Python's strict UTF-8 decoder never yields these)
        codes = _code_points(text)
        # numpy stores raw UCS4: lone surrogates or numbers past U+10FFFF would break every later str().
        invalid = (codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))
        bad_rows = invalid.any(axis=1)
        if bad_rows.any():
            raise DatasetError(
                f"'{key}' row {int(np.flatnonzero(bad_rows)[0])} holds characters that are not valid Unicode text."
            )
        del codes, invalid
    lengths = np.char.str_len(text)
    if lengths.max(initial=0) > max_chars:
        raise DatasetError(f"'{key}' holds an entry longer than {max_chars:,} characters.")
    return np.ascontiguousarray(text, dtype=f"U{max(1, int(lengths.max(initial=1)))}")


def _validate_paths(raw: np.ndarray, n: int) -> np.ndarray:
    _check_column("image_paths", raw.shape, n)
    if raw.dtype.kind not in "US":
        raise DatasetError(f"'image_paths' must be strings; got dtype {raw.dtype}.")
    paths = _as_text(raw, "image_paths", MAX_PATH_CHARS)
    empty = np.char.str_len(np.char.strip(paths)) == 0
    if empty.any():
        raise DatasetError(f"'image_paths' has an empty path at row {int(np.flatnonzero(empty)[0])}.")
    codes = _code_points(paths)
    nonzero = codes != 0
    # numpy pads with NUL, so a NUL counts only if a real character follows it in the same string
    later = np.logical_or.accumulate(nonzero[:, ::-1], axis=1)[:, ::-1]
    embedded_nul = (~nonzero[:, :-1] & later[:, 1:]).any(axis=1)
    if embedded_nul.any():
        raise DatasetError(f"'image_paths' row {int(np.flatnonzero(embedded_nul)[0])} contains a NUL character.")
    line_break = ((codes == 10) | (codes == 13)).any(axis=1)
    if line_break.any():
        raise DatasetError(
            f"'image_paths' row {int(np.flatnonzero(line_break)[0])} contains a line break; paths must be one line."
        )
    return paths


def _source_name(source: object) -> str:
    try:
        if isinstance(source, (str, os.PathLike)):
            return os.path.basename(os.fsdecode(os.fspath(source))) or "dataset"
        name = getattr(source, "name", None)
        return (os.path.basename(name) or "upload.npz") if isinstance(name, str) else "upload.npz"
    except Exception:
        return "dataset"


def load_npz(
    source: NpzSource,
    *,
    name: str | None = None,
    max_bytes: int = 2048 * 1024 * 1024,
    max_rows: int = 1_000_000,
    max_dims: int = 4096,
) -> Dataset:
    """Load an NPZ (path, bytes or binary file) into a validated Dataset or raise DatasetError.

    Nothing else escapes: no other exception type, and no unpickling. max_bytes bounds the file and,
    separately, the decompressed arrays together; peak memory is a small multiple of it (the float32
    copy of int8 embeddings is 4x, and so is unicode text decoded from bytes), never what the file claims.
    """
    try:
        return _load_npz(source, name, max_bytes, max_rows, max_dims)
    except DatasetError:
        raise
    except MemoryError as exc:
        raise DatasetError("The server ran out of memory reading this file; try again later or a smaller file.") from exc
    except Exception as exc:  # a safety net: every known problem has its own message above
        raise DatasetError(
            f"The file could not be loaded ({_UNEXPECTED}: {type(exc).__name__}). Please report it with the file."
        ) from exc


def _load_npz(source: NpzSource, name: str | None, max_bytes: int, max_rows: int, max_dims: int) -> Dataset:
    if name is None:
        name = _source_name(source)
    data = _read_bounded(source, max_bytes)
    if not data:
        raise DatasetError("The file is empty (0 bytes).")
    if data[:6] == _NPY_MAGIC:
        raise DatasetError(
            f"This is a single .npy array; cleaner needs an .npz with three arrays: {_SAVE_HINT}."
        )
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise DatasetError(
            f"This looks like a Python pickle, which cleaner never opens (unpickling can run code). Save with {_SAVE_HINT}."
        )
    with _open_zip(data) as zf:
        members = zf.infolist()
        if len(members) > MAX_MEMBERS:
            raise DatasetError(
                f"The NPZ holds {len(members):,} files; cleaner reads at most {MAX_MEMBERS} "
                "(it needs only 'embeddings', 'labels' and 'image_paths')."
            )
        names = {m.filename for m in members}
        keys = sorted(n[:-4] for n in names if n.endswith(".npy"))
        missing = [k for k in REQUIRED_KEYS if k + ".npy" not in names]
        if missing:
            held = ", ".join(repr(_shown(k)) for k in keys[:10]) + (", …" if len(keys) > 10 else "")
            raise DatasetError(
                f"The NPZ is missing {', '.join(repr(k) for k in missing)}. It holds: "
                f"{held or 'no arrays'}. Expected 'embeddings', 'labels', 'image_paths'."
            )
        budget = max_bytes
        arrays: dict[str, np.ndarray] = {}
        n_rows = 0

        def check(key: str) -> Callable[[tuple[int, ...], np.dtype], None]:
            if key == "embeddings":
                return lambda shape, dtype: _check_embeddings(shape, dtype, max_rows, max_dims)
            return lambda shape, dtype: _check_column(key, shape, n_rows)

        for key in REQUIRED_KEYS:
            arrays[key] = _read_member(zf, key, budget, check(key))
            budget -= arrays[key].nbytes
            if key == "embeddings":
                n_rows = arrays[key].shape[0]
    del data  # each raw array is dropped as soon as its validated copy exists: peak memory stays low
    embeddings = _validate_embeddings(arrays.pop("embeddings"), max_rows, max_dims)
    labels = _validate_labels(arrays.pop("labels"), embeddings.shape[0])
    paths = _validate_paths(arrays.pop("image_paths"), embeddings.shape[0])
    return Dataset(
        embeddings=embeddings,
        labels=labels,
        image_paths=paths,
        digest=_digest(embeddings, labels, paths),
        embedding_digest=_digest(embeddings),
        name=str(name),
    )


def dataset_from_arrays(embeddings: np.ndarray, labels: np.ndarray, image_paths: np.ndarray, name: str) -> Dataset:
    """Build a Dataset from in-memory arrays through the same validation as a file."""
    return load_npz(npz_bytes(embeddings, labels, image_paths), name=name)


def npz_bytes(embeddings: np.ndarray, labels: np.ndarray, image_paths: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        embeddings=np.asarray(embeddings),
        labels=np.asarray(labels),
        image_paths=np.asarray(image_paths, dtype=str),
    )
    return buf.getvalue()


def cleaned_npz_bytes(dataset: Dataset, keep_rows: np.ndarray) -> bytes:
    """The dataset without the excluded rows, as an NPZ in the same format it was loaded from."""
    keep = np.asarray(keep_rows)
    return npz_bytes(dataset.embeddings[keep], dataset.labels[keep], dataset.image_paths[keep])
