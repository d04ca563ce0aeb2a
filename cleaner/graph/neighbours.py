"""The k-nearest-neighbour graph of the embeddings: computed once, shared by the layout, selection and scores.

The search itself is a `KnnBackend` (cleaner/graph/knn_backends.py): by default faiss on the CPU, exact up to
EXACT_MAX_WORK multiply-adds (N^2 D) and an inverted-file index above, whose recall is checked on sampled
rows against the exact answer and widened until it reaches MIN_RECALL (bounds measured with
bench/knn_threshold.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cleaner.graph.knn_backends import (
    EXACT_MAX_WORK,
    METRICS,
    MIN_RECALL,
    RECALL_SAMPLE,
    FaissBackend,
    KnnBackend,
    KnnResult,
)
from cleaner.server.diskcache import store_file

__all__ = [
    "EXACT_MAX_WORK",
    "METRICS",
    "MIN_RECALL",
    "RECALL_SAMPLE",
    "GraphStore",
    "KnnBackend",
    "NeighbourGraph",
    "approximate_neighbours",
    "default_backend",
    "exact_neighbours",
    "neighbour_graph",
    "numba_guard",
]

# Part of the disk cache key: bump when a search, or a bound above that picks one, changes the graphs it
# serves for worse (a stricter bound needs no bump: graphs stored under the looser one are still served).
GRAPH_VERSION = 1


# Neighbours per image in the one graph every consumer shares: the label votes, outliers, duplicates, the map's
# UMAP (which uses up to this many) and the gallery's neighbour search.
GRAPH_K = 20


@dataclass(frozen=True, eq=False)
class NeighbourGraph:
    """For each row, its k nearest other rows (closest first) and their distances."""

    indices: np.ndarray  # [N, k] int32, never the row itself
    distances: np.ndarray  # [N, k] float32, ascending
    metric: str
    exact: bool

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def with_self(self) -> tuple[np.ndarray, np.ndarray]:
        """The graph in umap-learn's `precomputed_knn` form: each row starts with the point itself."""
        n = self.indices.shape[0]
        idx = np.hstack([np.arange(n, dtype=np.int32)[:, None], self.indices])
        dist = np.hstack([np.zeros((n, 1), dtype=np.float32), self.distances])
        return idx, dist


_NUMBA_LOCK = threading.Lock()


def _numba_threadsafe() -> bool:
    """numba's parallel code may run from several threads at once only on the tbb or omp threading layer."""
    from numba.core import config

    if str(config.THREADING_LAYER).lower() == "workqueue":
        return False
    for pool in ("tbbpool", "omppool"):
        try:
            importlib.import_module(f"numba.np.ufunc.{pool}")
            return True
        except ImportError:
            continue
    return False


class numba_guard:
    """Serialise numba work (the layouts) when numba's only threading layer is workqueue, which aborts
    on concurrent use."""

    def __enter__(self):
        self._lock = None if _numba_threadsafe() else _NUMBA_LOCK
        if self._lock is not None:
            self._lock.acquire()
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.release()
        return False


def default_backend() -> KnnBackend:
    """The search the graph uses: faiss on the CPU (a GPU backend would be chosen here)."""
    return FaissBackend()


def _search(embeddings: np.ndarray, k: int, metric: str, backend: KnnBackend) -> NeighbourGraph:
    """The graph of k nearest other rows (k capped at N - 1; none for a single row)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    n = embeddings.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        result = KnnResult(np.empty((n, 0), np.int32), np.empty((n, 0), np.float32), True)
    else:
        result = backend.search(embeddings, k, metric)
    return NeighbourGraph(indices=result.indices, distances=result.distances, metric=metric, exact=result.exact)


def exact_neighbours(embeddings: np.ndarray, k: int, metric: str = "cosine") -> NeighbourGraph:
    """Exact kNN (faiss's blockwise matrix products), whatever the size."""
    return _search(embeddings, k, metric, FaissBackend(exact_max_work=math.inf))


def approximate_neighbours(embeddings: np.ndarray, k: int, metric: str = "cosine", seed: int = 42) -> NeighbourGraph:
    """kNN by the recall-checked inverted-file index, whatever the size (exact where that is cheaper)."""
    return _search(embeddings, k, metric, FaissBackend(exact_max_work=0, seed=seed))


class GraphStore:
    """Neighbour graphs on disk keyed by (embedding digest, k, metric), so a restarted server skips the search."""

    def __init__(self, folder: Path, max_bytes: int = 1024**3):
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    @staticmethod
    def file_name(embedding_digest: str, k: int, metric: str) -> str:
        key = hashlib.blake2b(f"{embedding_digest},{k},{metric},v{GRAPH_VERSION}".encode(), digest_size=12)
        return f"graph_{key.hexdigest()}.npz"

    def get(self, embedding_digest: str, k: int, metric: str, n_rows: int) -> NeighbourGraph | None:
        path = self.folder / self.file_name(embedding_digest, k, metric)
        try:
            with np.load(path, allow_pickle=False) as z:  # our own files, still never pickled
                indices, distances, exact = z["indices"], z["distances"], bool(z["exact"])
        except Exception:  # a damaged or foreign file (BadZipFile, EOFError, ...) is a cache miss
            return None
        expected = (n_rows, min(k, n_rows - 1))
        if (
            indices.shape != expected
            or distances.shape != expected
            or indices.dtype != np.int32
            or indices.min(initial=0) < 0
            or indices.max(initial=0) >= n_rows
        ):
            return None
        with contextlib.suppress(OSError):  # another process may have just evicted it; we hold the data
            os.utime(path)  # recently used graphs are evicted last
        return NeighbourGraph(
            indices=indices, distances=distances.astype(np.float32, copy=False), metric=metric, exact=exact
        )

    def put(self, embedding_digest: str, k: int, graph: NeighbourGraph) -> None:
        def write(fh) -> None:
            np.savez(fh, indices=graph.indices, distances=graph.distances, exact=np.bool_(graph.exact))

        store_file(self.folder, self.file_name(embedding_digest, k, graph.metric), write, "graph_*.npz", self.max_bytes)


def neighbour_graph(
    embeddings: np.ndarray,
    k: int = GRAPH_K,
    metric: str = "cosine",
    *,
    store: GraphStore | None = None,
    embedding_digest: str | None = None,
    backend: KnnBackend | None = None,
) -> NeighbourGraph:
    """The kNN graph, by the default backend unless one is given.

    With a store and the embeddings' digest, a graph computed before (by any process) is read from disk.
    """
    n = embeddings.shape[0]
    if store is not None and embedding_digest is not None:
        cached = store.get(embedding_digest, k, metric, n)
        if cached is not None:
            return cached
    graph = _search(embeddings, k, metric, backend or default_backend())
    if store is not None and embedding_digest is not None:
        store.put(embedding_digest, k, graph)
    return graph
