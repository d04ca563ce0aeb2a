"""The pieces every kNN search here shares: rows as the search compares them (`ComparedRows`), the nearest found
kept without the row itself, the recall of a graph against the exact answer, and independent tasks on every core."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHUNK_BYTES = 256 << 20  # prepared float32 rows per chunk or block of queries: a 1M-row search copies no full matrix


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def prepared(embeddings: np.ndarray, metric: str, rows: slice | np.ndarray) -> np.ndarray:
    """The rows as contiguous float32, unit length for cosine (then squared euclidean distance = 2 - 2 cos)."""
    x = np.ascontiguousarray(embeddings[rows], dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)  # a new array: the caller's embeddings are never changed
    return x


# The one comparison of rows a search makes: the k nearest base rows of each query, as (squared distances, ids).
FlatKnn = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def faiss_knn(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss's blockwise BLAS kNN on the CPU: squared euclidean distances and int64 ids."""
    import faiss

    return faiss.knn(queries, base, k, faiss.METRIC_L2)


class ComparedRows:
    """The embeddings as one search compares them, and the flat kNN it compares them with.

    `rows[selection]` is `prepared`, and for euclidean less the data's mean: faiss's BLAS search computes
    |x|^2 + |y|^2 - 2 x.y, which loses the small distance between two long, nearly equal rows (features with a
    large common offset, as non-negative activations have) to rounding. Subtracting one vector from every row
    changes no euclidean distance and keeps the lengths small.
    """

    def __init__(self, embeddings: np.ndarray, metric: str, flat_knn: FlatKnn = faiss_knn):
        self.embeddings = embeddings
        self.metric = metric
        self.flat_knn = flat_knn
        self.n, self.dims = embeddings.shape
        self._mean = np.mean(embeddings, axis=0, dtype=np.float64).astype(np.float32) if metric == "euclidean" else None

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        x = prepared(self.embeddings, self.metric, rows)
        if self._mean is not None:
            x = x - self._mean  # a new array: prepared may return a view of the caller's rows
        return x


def to_metric(d2: np.ndarray, metric: str) -> np.ndarray:
    """Squared euclidean distances of prepared rows in the metric's units (cosine distance = d^2 / 2)."""
    d2 = np.maximum(d2, 0.0)
    return (np.minimum(d2 / 2.0, 2.0) if metric == "cosine" else np.sqrt(d2)).astype(np.float32)


def drop_self(ids: np.ndarray, d2: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k of k + 1 found neighbours: without the row itself, or, where duplicates crowded it out, the farthest."""
    own = ids == rows[:, None]
    own[~own.any(axis=1), -1] = True
    keep = ~own
    return ids[keep].reshape(len(rows), k), d2[keep].reshape(len(rows), k)


def chunk_rows(dims: int) -> int:
    return max(256, CHUNK_BYTES // (4 * max(dims, 1)))


def blocks(n: int, most: int) -> range:
    """Starts of blocks of rows: at least four per core, so no core idles at the end; at most `most` rows."""
    size = max(64, min(most, -(-n // (4 * cores()))))
    return range(0, n, size)


def in_parallel(tasks: list[Callable[[], None]]) -> None:
    """Independent tasks on one Python thread per core, each with a single faiss (OpenMP) thread.

    On a shared machine a descheduled OpenMP thread stalls its partner at every barrier of a parallel
    region; independent tasks do not wait for each other. faiss releases the GIL in its calls.
    """
    import faiss

    workers = min(len(tasks), cores())
    if workers <= 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(
        workers, thread_name_prefix="cleaner-knn", initializer=faiss.omp_set_num_threads, initargs=(1,)
    ) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


def recall(found: np.ndarray, found_d2: np.ndarray, truth_d2: np.ndarray) -> float:
    """Share of found neighbours no farther than the exact k-th nearest, so a different but equally near
    duplicate counts as found; a missing neighbour (-1) never does."""
    kth = truth_d2[:, -1:]
    tolerance = 1e-4 * (np.abs(kth) + 1.0)
    return float(((found >= 0) & (found_d2 <= kth + tolerance)).mean())
