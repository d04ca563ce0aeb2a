"""The k-nearest-neighbour search behind cleaner's one graph, behind a small interface (`KnnBackend`).

`FaissBackend` runs on the CPU: the exact search (cleaner/graph/exact.py) while it costs at most EXACT_MAX_WORK
multiply-adds (N^2 D), and above that the inverted-file search (cleaner/graph/inverted_file.py), whose number of
probed lists is calibrated and checked on samples of rows against the exact answer
(cleaner/graph/calibration.py); the search turns exact when only a scan of most of the data reaches MIN_RECALL.
The pieces they share (rows as compared, recall, tasks on every core) are in cleaner/graph/knn_rows.py.

This module is the one import path for the search's public names (`FaissBackend`, `KnnResult`, `KnnBackend`,
`METRICS`, `EXACT_MAX_WORK`, `MIN_RECALL`, `RECALL_SAMPLE`).

A GPU backend is one class more: subclass FaissBackend and override `_flat_knn` (faiss.knn_gpu) and
`_train_quantizer` (and the list probing: a GPU flat index over the centroids), running the searches from one
thread instead of `in_parallel`'s pool; calibration and checks stay.
"""

from __future__ import annotations

import ctypes
import threading
from typing import NamedTuple, Protocol

import numpy as np

from cleaner.graph.calibration import RECALL_SAMPLE, calibrated_graph
from cleaner.graph.exact import exact_rows
from cleaner.graph.inverted_file import build_lists
from cleaner.graph.knn_rows import ComparedRows, cores, faiss_knn, to_metric

__all__ = [
    "EXACT_MAX_WORK",
    "FIRST_NPROBE",
    "METRICS",
    "MIN_RECALL",
    "RECALL_SAMPLE",
    "FaissBackend",
    "KnnBackend",
    "KnnResult",
    "release_freed_memory",
]

METRICS = ("cosine", "euclidean")
# The exact search costs N^2 D multiply-adds; up to this many it is about as fast as building, calibrating
# and probing the inverted file (the crossover bench/knn_threshold.py measures on clustered data; data that
# needs most lists probed never crosses over).
EXACT_MAX_WORK = 10_000**2 * 512
# Recall, on RECALL_SAMPLE rows against the exact answer, below which the index search widens.
MIN_RECALL = 0.97
FIRST_NPROBE = 2
_SEARCH_LOCK = threading.Lock()  # one search at a time: each uses every core


class KnnResult(NamedTuple):
    """The graph: [N, k] int32 rows, never the row itself; [N, k] float32 distances in the metric's units,
    ascending; whether it is the exact answer."""

    indices: np.ndarray
    distances: np.ndarray
    exact: bool


class KnnBackend(Protocol):
    def search(self, embeddings: np.ndarray, k: int, metric: str) -> KnnResult:
        """Each row's k nearest other rows (k < N) under the metric."""
        ...


def release_freed_memory() -> None:
    """Hand memory that C and C++ code has freed back to the system, where the C library is glibc.

    glibc keeps freed heap pages mapped: after a 1M-row search the process would hold the gigabytes of its
    prepared query blocks and gathered lists while the layout allocates on top of them. malloc_trim returns free
    pages anywhere in the heap. Elsewhere (musl, macOS) nothing is done.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (AttributeError, OSError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


class FaissBackend:
    """Exact search on small data, a recall-checked inverted-file search above; CPU, every core."""

    def __init__(
        self,
        exact_max_work: float | None = None,
        min_recall: float = MIN_RECALL,
        first_nprobe: int = FIRST_NPROBE,
        seed: int = 42,
    ):
        self.exact_max_work = EXACT_MAX_WORK if exact_max_work is None else exact_max_work
        self.min_recall = min_recall
        self.first_nprobe = first_nprobe
        self.seed = seed
        self.last_nprobe: int | None = None  # of the last inverted-file search, for benchmarks and tests

    # -- the two primitives a GPU backend would replace
    def _flat_knn(self, queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return faiss_knn(queries, base, k)

    def _train_quantizer(self, train: np.ndarray, n_lists: int):
        """A faiss index over n_lists k-means centroids of the training rows."""
        import faiss

        kmeans = faiss.Kmeans(train.shape[1], n_lists, niter=10, seed=self.seed)
        kmeans.train(train)
        return kmeans.index

    # -- the search
    def search(self, embeddings: np.ndarray, k: int, metric: str) -> KnnResult:
        import faiss

        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        n, dims = embeddings.shape
        if not 0 < k < n:
            raise ValueError(f"k must be between 1 and {n - 1}, got {k}")
        data = ComparedRows(embeddings, metric, self._flat_knn)
        with _SEARCH_LOCK:
            faiss.omp_set_num_threads(cores())
            graph = None
            if n * n * dims > self.exact_max_work:
                graph = self._inverted_file_search(data, k)
                release_freed_memory()  # the search's query blocks and gathered lists go back to the system
            if graph is None:
                ids, d2 = exact_rows(data, np.arange(n), k)
                graph = KnnResult(ids, to_metric(d2, metric), True)
        return graph

    def _inverted_file_search(self, data: ComparedRows, k: int) -> KnnResult | None:
        """The inverted-file graph, or None when only a scan of most of the data reaches MIN_RECALL."""
        lists = build_lists(data, self._train_quantizer, self.seed)
        calibrated = calibrated_graph(lists, data, k, self.first_nprobe, self.min_recall, self.seed)
        if calibrated is None:
            return None
        self.last_nprobe, ids, d2 = calibrated
        missing = np.flatnonzero((ids < 0).any(axis=1))  # rows whose probed lists held fewer than k others
        if len(missing):
            ids[missing], d2[missing] = exact_rows(data, missing, k)
        return KnnResult(ids, to_metric(d2, data.metric), False)
