"""What a loaded dataset is (validated arrays and their digests), and the error a user's file can raise."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cleaner.server.errors import CleanerError

REQUIRED_KEYS = ("embeddings", "labels", "image_paths")
SAVE_HINT = "np.savez_compressed('x.npz', embeddings=..., labels=..., image_paths=...)"  # in messages


class DatasetError(CleanerError, ValueError):
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
    _path_order: np.ndarray | None = field(init=False, default=None, repr=False)  # argsort of image_paths, once

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

    def rows_with_paths(self, paths: Iterable[str]) -> np.ndarray:
        """The rows whose image path is one of `paths`, ascending (a path listed twice in the dataset gives both).

        A binary search in the paths sorted once per dataset: a membership test against every path instead costs
        time in the number of rows on every call, and every tick and decision asks again.
        """
        wanted = np.asarray(list(paths), dtype=str)
        if not wanted.size:
            return np.array([], dtype=np.int64)
        order = self._path_order
        if order is None:  # computed at most a few times by racing sessions, each time the same
            order = np.argsort(self.image_paths, kind="stable")
            order.setflags(write=False)
            object.__setattr__(self, "_path_order", order)
        first = np.searchsorted(self.image_paths, wanted, side="left", sorter=order)
        counts = np.searchsorted(self.image_paths, wanted, side="right", sorter=order) - first
        # every position from first to first + count - 1, for each wanted path
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        return np.unique(order[np.repeat(first, counts) + offsets]).astype(np.int64)


def content_digest(*arrays: np.ndarray) -> str:
    """A digest of the arrays' dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))  # the same bytes as .tobytes(), without a copy
    return h.hexdigest()


def dataset_digests(embeddings: np.ndarray, labels: np.ndarray, paths: np.ndarray) -> tuple[str, str]:
    """(digest of all three arrays, digest of the embeddings alone), computed side by side: hashlib lets go of the
    interpreter lock on large buffers, so on a large dataset the two take the time of one."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        embeddings_only = pool.submit(content_digest, embeddings)
        everything = content_digest(embeddings, labels, paths)
        return everything, embeddings_only.result()
