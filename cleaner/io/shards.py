"""A dataset written in shards: a folder of NPZ files holding the same three arrays, as embeddings are written
batch by batch.

Each shard is read like any NPZ (`load_npz`: bounded, never unpickled, every array checked) wherever it lies: a
local or shared folder, or object storage through an fsspec URL (``s3://bucket/run/``, ``gs://...``; fsspec comes
with dask). Every shard must hold embeddings of one width and the same labels: the same kind (class ids or class
names) and the same set of classes, so a class code means one class everywhere; a shard that disagrees is named in
the one message raised.

A sharded dataset's digests are digests of its shards' digests, in the shards' order (file names sorted): the
sidecar `FOLDER.cleaner.npz` written next to the folder is keyed on them, and every reader of the folder (the
single-process scan, the distributed one, the app) computes the same.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.server.limits import MAX_DIMS, MAX_NPZ_BYTES, MAX_ROWS
from cleaner.server.text import shown

__all__ = [
    "MAX_SHARDS",
    "ShardInfo",
    "check_shards",
    "is_sharded",
    "list_shards",
    "load_shard",
    "looks_like_shards",
    "load_sharded",
    "shard_info",
    "sharded_digests",
]

MAX_SHARDS = 100_000  # files listed in one folder: 100M images in shards of a thousand
_SIDE_FILES = (".cleaner.npz",)  # sidecars and map samples written by cleaner next to a dataset: never shards


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def is_sharded(source: str | os.PathLike) -> bool:
    """Whether `source` names a folder of shards (a local folder, or a URL ending in '/')."""
    path = os.fspath(source)
    if _is_url(path):
        return path.endswith("/")
    return os.path.isdir(path)


def looks_like_shards(names: Sequence[str]) -> bool:
    """Whether a folder's NPZ file names (sidecars left out) are those of one dataset in shards: two or more, the same
    name but for their numbers (part_0000.npz, part_0001.npz, ...). The app offers such a folder as one dataset."""
    return len(names) >= 2 and len({re.sub(r"\d+", "#", n.lower()) for n in names}) == 1


def list_shards(folder: str | os.PathLike) -> list[str]:
    """The folder's NPZ files (not cleaner's own sidecars), sorted by name: the dataset's rows in that order."""
    path = os.fspath(folder)
    try:
        if _is_url(path):
            import fsspec  # with dask; only object storage needs it

            fs, root = fsspec.core.url_to_fs(path)
            protocol = path.split("://", 1)[0]
            names = [f"{protocol}://{p}" for p in fs.ls(root, detail=False)]
        else:
            names = [os.path.join(path, n) for n in os.listdir(path)]
    except (OSError, ValueError, ImportError) as exc:
        raise DatasetError(f"Could not list the shards in {shown(path)}: {exc}") from exc
    shards = sorted(n for n in names if n.lower().endswith(".npz") and not n.lower().endswith(_SIDE_FILES))
    if not shards:
        raise DatasetError(f"{shown(path)} holds no .npz shard (each with 'embeddings', 'labels' and 'image_paths').")
    if len(shards) > MAX_SHARDS:
        raise DatasetError(f"{shown(path)} holds {len(shards):,} shards; cleaner reads at most {MAX_SHARDS:,}.")
    return shards


def load_shard(
    path: str, max_bytes: int = MAX_NPZ_BYTES, max_rows: int = MAX_ROWS, max_dims: int = MAX_DIMS
) -> Dataset:
    """One shard through load_npz's checks; its problems are named with the shard."""
    name = os.path.basename(path.rstrip("/")) or path
    try:
        if _is_url(path):
            import fsspec

            with fsspec.open(path, "rb") as fh:  # read through load_npz's bounded stream reader
                return load_npz(fh, name=name, max_bytes=max_bytes, max_rows=max_rows, max_dims=max_dims)
        return load_npz(path, name=name, max_bytes=max_bytes, max_rows=max_rows, max_dims=max_dims)
    except DatasetError as exc:
        raise DatasetError(f"shard {shown(name)}: {exc}") from exc
    except (OSError, ImportError, ValueError) as exc:  # fsspec's own errors for a URL
        raise DatasetError(f"shard {shown(name)}: could not be read ({exc})") from exc


@dataclass(frozen=True)
class ShardInfo:
    """What the checks across shards need of one shard (small: no arrays of rows)."""

    path: str
    n: int
    dims: int
    label_kind: str  # "ids" or "names"
    class_names: tuple[str, ...]
    digest: str
    embedding_digest: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path.rstrip("/")) or self.path


def shard_info(path: str, dataset: Dataset) -> ShardInfo:
    kind = "names" if dataset.labels.dtype.kind == "U" else "ids"
    return ShardInfo(path, dataset.n, dataset.dims, kind, dataset.class_names, dataset.digest, dataset.embedding_digest)


def _listed(names: Sequence[str], most: int = 5) -> str:
    return ", ".join(repr(n) for n in names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_shards(infos: Sequence[ShardInfo]) -> None:
    """One DatasetError naming the first shard that disagrees with the first shard: width, kind of label, classes."""
    first = infos[0]
    for info in infos[1:]:
        where = f"shard {shown(info.name)} disagrees with {shown(first.name)}:"
        if info.dims != first.dims:
            raise DatasetError(f"{where} its embeddings have {info.dims} dimensions, not {first.dims}.")
        if info.label_kind != first.label_kind:
            raise DatasetError(f"{where} its labels are class {info.label_kind}, not class {first.label_kind}.")
        if info.class_names != first.class_names:
            extra = sorted(set(info.class_names) - set(first.class_names))
            lacking = sorted(set(first.class_names) - set(info.class_names))
            parts = ([f"it has labels the first shard lacks ({_listed(extra)})"] if extra else []) + (
                [f"it lacks labels the first shard has ({_listed(lacking)})"] if lacking else []
            )
            raise DatasetError(f"{where} {'; '.join(parts)}. Every shard must hold the same set of labels.")


def sharded_digests(infos: Sequence[ShardInfo]) -> tuple[str, str]:
    """(digest of everything, digest of the embeddings) of the dataset the shards make, in their order."""
    every = hashlib.blake2b(f"cleaner-shards,{len(infos)}".encode(), digest_size=16)
    embeddings = hashlib.blake2b(f"cleaner-shards,{len(infos)}".encode(), digest_size=16)
    for info in infos:
        every.update(info.digest.encode())
        embeddings.update(info.embedding_digest.encode())
    return every.hexdigest(), embeddings.hexdigest()


def load_sharded(
    folder: str | os.PathLike,
    max_bytes: int = MAX_NPZ_BYTES,
    max_rows: int = MAX_ROWS,
    max_dims: int = MAX_DIMS,
    total_bytes: int | None = None,
) -> Dataset:
    """Every shard of the folder in one Dataset on this machine (up to max_rows rows in all; with `total_bytes`, the
    shards' decompressed arrays at most that many bytes together, as one NPZ's are); its digests are the sharded ones.
    Beyond one machine's rows, `cleaner scan --dask` reads the shards on the workers instead."""
    paths = list_shards(folder)
    loaded, infos, total, used = [], [], 0, 0
    for path in paths:
        left = max_bytes if total_bytes is None else min(max_bytes, total_bytes - used)
        if left <= 0:
            raise DatasetError(
                f"The shards in {shown(os.fspath(folder))} hold more than {total_bytes // (1 << 20):,} MB together; "
                "this server reads at most that much (its administrator sets CLEANER_MAX_NPZ_MB)."
            )
        part = load_shard(path, left, max_rows, max_dims)
        used += part.embeddings.nbytes + part.labels.nbytes + part.image_paths.nbytes
        total += part.n
        if total > max_rows:
            raise DatasetError(
                f"The shards in {shown(os.fspath(folder))} hold more than {max_rows:,} rows; one "
                "machine reads at most that many (scan them on a cluster with --dask)."
            )
        loaded.append(part)
        infos.append(shard_info(path, part))
        check_shards(infos)
    digest, embedding_digest = sharded_digests(infos)
    labels = np.concatenate([p.labels for p in loaded])
    return Dataset(
        embeddings=np.concatenate([p.embeddings for p in loaded]),
        labels=labels,
        image_paths=np.concatenate([p.image_paths for p in loaded]),
        digest=digest,
        embedding_digest=embedding_digest,
        name=os.path.basename(os.fspath(folder).rstrip("/")) or "dataset",
    )
