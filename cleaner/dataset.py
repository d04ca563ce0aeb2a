"""Load and validate an NPZ of embeddings, labels and image paths, without ever unpickling."""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

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
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _read_bounded(source: NpzSource, limit: int) -> bytes:
    """Read the whole source, refusing anything larger than `limit` bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            if not path.is_file():
                raise DatasetError(f"{path} is not a file.")
            if path.stat().st_size > limit:
                raise DatasetError(
                    f"{path.name} is {path.stat().st_size / 1e6:.0f} MB; the limit is {limit / 1e6:.0f} MB."
                )
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
        except OSError as exc:
            raise DatasetError(f"Could not read {path}: {exc.strerror or exc}.") from exc
    else:
        try:
            data = source.read(limit + 1)
        except Exception as exc:  # a broken upload stream
            raise DatasetError(f"Could not read the uploaded file: {exc}.") from exc
    if len(data) > limit:
        raise DatasetError(f"The file is larger than the limit of {limit / 1e6:.0f} MB.")
    return data


def _read_member(zf: zipfile.ZipFile, key: str, budget: int) -> np.ndarray:
    """Read one .npy member, checking its header before inflating a single array byte."""
    info = zf.getinfo(key + ".npy")
    if info.file_size > budget:
        raise DatasetError(
            f"'{key}' would take {info.file_size / 1e6:.0f} MB once decompressed; the limit is {budget / 1e6:.0f} MB."
        )
    try:
        with zf.open(info) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except DatasetError:
                raise
            except Exception as exc:
                raise DatasetError(f"'{key}' is not a valid NumPy array ({exc}).") from exc
            if dtype.hasobject:
                raise DatasetError(
                    f"'{key}' holds Python objects, which would need unpickling; cleaner never unpickles "
                    "uploaded files. Save it as numbers or fixed-width strings, e.g. np.asarray(x, dtype=str)."
                )
            if any(int(d) < 0 for d in shape):
                raise DatasetError(f"'{key}' declares a negative shape {shape}.")
            count = int(np.prod(shape, dtype=object)) if shape else 1
            nbytes = count * dtype.itemsize
            if nbytes > budget:
                raise DatasetError(
                    f"'{key}' declares {nbytes / 1e6:.0f} MB of data; the limit is {budget / 1e6:.0f} MB."
                )
            buf = bytearray()
            while len(buf) < nbytes:
                chunk = fh.read(min(_CHUNK, nbytes - len(buf)))
                if not chunk:
                    break
                buf += chunk
            if len(buf) != nbytes:
                raise DatasetError(f"'{key}' is truncated: its header promises more data than the file holds.")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        # CRC errors, bad compression streams, encrypted members and the like.
        raise DatasetError(f"'{key}' inside the NPZ is corrupt ({exc}).") from exc
    except Exception as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"'{key}' inside the NPZ could not be decompressed ({type(exc).__name__}).") from exc
    arr = np.frombuffer(bytes(buf), dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def _validate_embeddings(raw: np.ndarray, max_rows: int, max_dims: int) -> np.ndarray:
    if raw.ndim != 2:
        raise DatasetError(
            f"'embeddings' must be a 2-D array [N, D] (one row per image); got {raw.ndim}-D with shape {raw.shape}."
        )
    if raw.dtype.kind == "c":
        raise DatasetError("'embeddings' are complex numbers; cleaner needs real floats.")
    if raw.dtype.kind not in "fiu":
        raise DatasetError(f"'embeddings' must be numeric floats; got dtype {raw.dtype}.")
    n, d = raw.shape
    if n < MIN_ROWS:
        raise DatasetError(f"'embeddings' has {n} rows; cleaner needs at least {MIN_ROWS} images.")
    if d < 2:
        raise DatasetError(f"'embeddings' has {d} column(s); an embedding needs at least 2 dimensions.")
    if n > max_rows:
        raise DatasetError(f"The dataset has {n:,} rows; this server accepts at most {max_rows:,}.")
    if d > max_dims:
        raise DatasetError(f"The embeddings have {d:,} dimensions; this server accepts at most {max_dims:,}.")
    with np.errstate(over="ignore", invalid="ignore"):
        emb = np.ascontiguousarray(raw, dtype=np.float32)
    bad_rows = ~np.isfinite(emb).all(axis=1)
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows)[0])
        raise DatasetError(
            f"'embeddings' has {int(bad_rows.sum()):,} row(s) with NaN or infinite values "
            f"(or values too large for float32), the first at row {first}. Remove or fix them."
        )
    return emb


def _validate_labels(raw: np.ndarray, n: int) -> np.ndarray:
    if raw.ndim != 1:
        raise DatasetError(f"'labels' must be 1-D with one label per image; got shape {raw.shape}.")
    if raw.shape[0] != n:
        raise DatasetError(f"'labels' has {raw.shape[0]:,} entries but 'embeddings' has {n:,} rows.")
    kind = raw.dtype.kind
    if kind in "iub":
        return raw.astype(np.int64)
    if kind == "f":
        if not np.isfinite(raw).all() or not np.all(raw == np.round(raw)):
            raise DatasetError("'labels' are fractional or NaN floats; use integer class ids or class names.")
        return raw.astype(np.int64)
    if kind in "US":
        labels = _as_text(raw, "labels")
        lengths = np.char.str_len(labels)
        if lengths.max(initial=0) > MAX_LABEL_CHARS:
            raise DatasetError(f"A label is longer than {MAX_LABEL_CHARS} characters.")
        if (lengths == 0).any():
            raise DatasetError(f"'labels' has an empty label at row {int(np.flatnonzero(lengths == 0)[0])}.")
        return labels
    raise DatasetError(f"'labels' must be integers or strings; got dtype {raw.dtype}.")


def _as_text(raw: np.ndarray, key: str) -> np.ndarray:
    if raw.dtype.kind == "S":
        try:
            return np.char.decode(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"'{key}' holds bytes that are not UTF-8 text.") from exc
    return raw.astype(str)


def _validate_paths(raw: np.ndarray, n: int) -> np.ndarray:
    if raw.ndim != 1:
        raise DatasetError(f"'image_paths' must be 1-D with one path per image; got shape {raw.shape}.")
    if raw.shape[0] != n:
        raise DatasetError(f"'image_paths' has {raw.shape[0]:,} entries but 'embeddings' has {n:,} rows.")
    if raw.dtype.kind not in "US":
        raise DatasetError(f"'image_paths' must be strings; got dtype {raw.dtype}.")
    if raw.dtype.kind == "U" and raw.dtype.itemsize // 4 > MAX_PATH_CHARS or (
        raw.dtype.kind == "S" and raw.dtype.itemsize > MAX_PATH_CHARS
    ):
        raise DatasetError(f"'image_paths' holds paths longer than {MAX_PATH_CHARS} characters.")
    paths = _as_text(raw, "image_paths")
    stripped = np.char.strip(paths)
    empty = np.char.str_len(stripped) == 0
    if empty.any():
        raise DatasetError(f"'image_paths' has an empty path at row {int(np.flatnonzero(empty)[0])}.")
    for row, path in enumerate(paths.tolist()):
        if "\x00" in path:  # numpy's own string search treats NUL as padding, so ask Python
            raise DatasetError(f"'image_paths' row {row} contains a NUL character.")
    return paths


def load_npz(
    source: NpzSource,
    *,
    name: str | None = None,
    max_bytes: int = 2048 * 1024 * 1024,
    max_rows: int = 1_000_000,
    max_dims: int = 4096,
) -> Dataset:
    """Load an NPZ (path, bytes or binary file) into a validated Dataset or raise DatasetError."""
    if name is None:
        name = Path(source).name if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "upload.npz")
    data = _read_bounded(source, max_bytes)
    if not data:
        raise DatasetError("The file is empty.")
    if data[:6] == b"\x93NUMPY":
        raise DatasetError(
            "This is a single .npy array; cleaner needs an .npz with three arrays: "
            "np.savez_compressed('x.npz', embeddings=..., labels=..., image_paths=...)."
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise DatasetError(
            "This is not an NPZ file (it is not a valid zip archive). Save your arrays with "
            "np.savez_compressed('x.npz', embeddings=..., labels=..., image_paths=...)."
        ) from exc
    with zf:
        if len(members) > MAX_MEMBERS:
            raise DatasetError(f"The NPZ holds {len(members)} arrays; cleaner reads at most {MAX_MEMBERS}.")
        names = {m.filename for m in members}
        keys = sorted(n[:-4] for n in names if n.endswith(".npy"))
        missing = [k for k in REQUIRED_KEYS if k + ".npy" not in names]
        if missing:
            raise DatasetError(
                f"The NPZ is missing {', '.join(repr(k) for k in missing)}. It holds: "
                f"{', '.join(repr(k) for k in keys) or 'no arrays'}. Expected 'embeddings', 'labels', 'image_paths'."
            )
        budget = max_bytes
        arrays = {}
        for key in REQUIRED_KEYS:
            arrays[key] = _read_member(zf, key, budget)
            budget -= arrays[key].nbytes
    embeddings = _validate_embeddings(arrays["embeddings"], max_rows, max_dims)
    labels = _validate_labels(arrays["labels"], embeddings.shape[0])
    paths = _validate_paths(arrays["image_paths"], embeddings.shape[0])
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
