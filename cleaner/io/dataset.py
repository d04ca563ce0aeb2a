"""Load and validate an NPZ of embeddings, labels and image paths, without ever unpickling; write one back.

The steps live in their own modules: npz_source (the bytes, bounded), npz_zip (the container), npy_header
(each array's header) and npz_columns (what each array must hold). This module runs them in order.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import numpy as np

from cleaner.io.dataset_types import REQUIRED_KEYS, SAVE_HINT, Dataset, DatasetError, dataset_digests
from cleaner.io.npy_header import NPY_MAGIC
from cleaner.io.npz_columns import check_column, check_embeddings, validate_embeddings, validate_labels, validate_paths
from cleaner.io.npz_source import NpzSource, read_source, source_name
from cleaner.io.npz_zip import open_zip, read_member
from cleaner.server.limits import (
    MAX_DIMS,
    MAX_MEMBERS,
    MAX_NPZ_BYTES,
    MAX_ROWS,
)
from cleaner.server.text import shown

__all__ = ["cleaned_npz_bytes", "dataset_from_arrays", "load_npz", "npz_bytes"]

_UNEXPECTED = "unexpected problem"  # only ever in the safety net's message; the fuzz tests look for it


def load_npz(
    source: NpzSource,
    *,
    name: str | None = None,
    max_bytes: int = MAX_NPZ_BYTES,
    max_rows: int = MAX_ROWS,
    max_dims: int = MAX_DIMS,
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
        raise DatasetError(
            "The server ran out of memory reading this file; try again later or a smaller file."
        ) from exc
    except Exception as exc:  # a safety net: every known problem has its own message
        raise DatasetError(
            f"The file could not be loaded ({_UNEXPECTED}: {type(exc).__name__}). Please report it with the file."
        ) from exc


def _load_npz(source: NpzSource, name: str | None, max_bytes: int, max_rows: int, max_dims: int) -> Dataset:
    if name is None:
        name = source_name(source)
    data = read_source(source, max_bytes)
    _refuse_other_formats(data)
    with open_zip(data) as zf:
        _check_members(zf)
        arrays = _read_arrays(zf, data, max_bytes, max_rows, max_dims)
    # Each raw array is dropped as soon as its validated copy exists: peak memory stays low. Embeddings stored
    # uncompressed as float32 are not copied: they stay a view of the file's bytes, which they keep alive.
    del data
    embeddings = validate_embeddings(arrays.pop("embeddings"), max_rows, max_dims)
    labels = validate_labels(arrays.pop("labels"), embeddings.shape[0])
    paths = validate_paths(arrays.pop("image_paths"), embeddings.shape[0])
    digest, embedding_digest = dataset_digests(embeddings, labels, paths)
    return Dataset(
        embeddings=embeddings,
        labels=labels,
        image_paths=paths,
        digest=digest,
        embedding_digest=embedding_digest,
        name=str(name),
    )


def _refuse_other_formats(data: bytes) -> None:
    """Files people save by mistake instead of an NPZ, each with what to do instead."""
    if not data:
        raise DatasetError("The file is empty (0 bytes).")
    if data[:6] == NPY_MAGIC:
        raise DatasetError(f"This is a single .npy array; cleaner needs an .npz with three arrays: {SAVE_HINT}.")
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise DatasetError(
            f"This looks like a Python pickle, which cleaner never opens (unpickling can run code). Save with {SAVE_HINT}."
        )


def _check_members(zf: zipfile.ZipFile) -> None:
    """A few members, among them the three arrays cleaner needs."""
    members = zf.infolist()
    if len(members) > MAX_MEMBERS:
        raise DatasetError(
            f"The NPZ holds {len(members):,} files; cleaner reads at most {MAX_MEMBERS} "
            "(it needs only 'embeddings', 'labels' and 'image_paths')."
        )
    names = {m.filename for m in members}
    missing = [k for k in REQUIRED_KEYS if k + ".npy" not in names]
    if missing:
        keys = sorted(n[:-4] for n in names if n.endswith(".npy"))
        held = ", ".join(repr(shown(k)) for k in keys[:10]) + (", …" if len(keys) > 10 else "")
        raise DatasetError(
            f"The NPZ is missing {', '.join(repr(k) for k in missing)}. It holds: "
            f"{held or 'no arrays'}. Expected 'embeddings', 'labels', 'image_paths'."
        )


def _read_arrays(
    zf: zipfile.ZipFile, data: bytes, max_bytes: int, max_rows: int, max_dims: int
) -> dict[str, np.ndarray]:
    """The three raw arrays, each header checked before its data is read, all within max_bytes together (those
    stored uncompressed are views of `data`, the archive's bytes)."""
    budget, n_rows = max_bytes, 0
    arrays: dict[str, np.ndarray] = {}

    def check(key: str) -> Callable[[tuple[int, ...], np.dtype], None]:
        if key == "embeddings":
            return lambda shape, dtype: check_embeddings(shape, dtype, max_rows, max_dims)
        return lambda shape, dtype: check_column(key, shape, n_rows)

    for key in REQUIRED_KEYS:
        arrays[key] = read_member(zf, key, budget, check(key), whole=data)
        budget -= arrays[key].nbytes
        if key == "embeddings":
            n_rows = arrays[key].shape[0]
    return arrays


def dataset_from_arrays(embeddings: np.ndarray, labels: np.ndarray, image_paths: np.ndarray, name: str) -> Dataset:
    """Build a Dataset from in-memory arrays through the same validation as a file."""
    return load_npz(npz_bytes(embeddings, labels, image_paths), name=name)


def npz_bytes(embeddings: np.ndarray, labels: np.ndarray, image_paths: np.ndarray) -> bytes:
    """The three arrays as an NPZ file's bytes, in the format load_npz reads."""
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
