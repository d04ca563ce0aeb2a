"""The k-nearest-neighbour search behind cleaner's one graph, behind a small interface (`KnnBackend`).

`FaissBackend` runs on the CPU: an exact search (faiss's blockwise BLAS kNN) while it costs at most
EXACT_MAX_WORK multiply-adds (N^2 D), and above that an inverted-file search: the rows are split by their
nearest k-means centroid into about sqrt(N) lists, and each row's k nearest are sought in the `nprobe` lists
whose centroids are nearest to it. The number of probed lists is calibrated on a sample of rows against the
exact answer, then checked on a second sample; the search widens until both reach MIN_RECALL, and turns
exact when so wide a search would cost more than the exact one.

The lists are searched as faiss's big-batch search does (faiss.contrib.big_batch_search): in each block of
queries, those that probe one list are gathered and matched against that list's rows by one faiss kNN call
(matrix products once the batch is large enough), instead of one scan per query, which is memory-bound: each
distance reads a whole row for a single multiply-add per value. The lists hold row numbers, not copies of the
rows, so the search needs no second copy of the data.

A GPU backend is one class more: subclass FaissBackend and override `_flat_knn` (faiss.knn_gpu), and
`_train_quantizer` and the list probing (a GPU flat index over the centroids), running the searches from one
thread instead of `in_parallel`'s pool; calibration and checks stay.
"""
from __future__ import annotations

import ctypes
import math
import threading
from typing import Callable, NamedTuple, Protocol

import numpy as np

from cleaner.graph.knn_rows import blocks, chunk_rows, cores, drop_self, in_parallel, prepared, recall, to_metric

METRICS = ("cosine", "euclidean")
# The exact search costs N^2 D multiply-adds; up to this many it is about as fast as building, calibrating
# and probing the inverted file (the crossover bench/knn_threshold.py measures on clustered data; data that
# needs most lists probed never crosses over).
EXACT_MAX_WORK = 10_000 ** 2 * 512
# Recall, on RECALL_SAMPLE rows against the exact answer, below which the index search widens.
MIN_RECALL = 0.97
RECALL_SAMPLE = 300
# The calibration sample aims this much higher, so that its sampling error does not leave the whole graph
# below MIN_RECALL.
CALIBRATION_MARGIN = 0.01
FIRST_NPROBE = 2
# Probing more than this share of the lists, with its k-means, calibration and gathering of the lists, costs
# about as much as the exact search, which is then used instead.
EXACT_SHARE = 0.4
TRAIN_ROWS_PER_LIST = 40  # faiss's k-means wants at least 39 per list
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


def _widest(nlist: int) -> int:
    """The most lists worth probing: beyond EXACT_SHARE of them the exact search costs no more."""
    return max(1, int(EXACT_SHARE * nlist))


def _wider(nprobe: int, widest: int) -> int:
    """The next number of lists to try: half as many again, and the widest allowed before going past it."""
    wider = int(math.ceil(nprobe * 1.5))
    return widest if nprobe < widest < wider else wider


class InvertedLists(NamedTuple):
    """The rows split by their nearest centroid: list l holds the rows order[bounds[l]:bounds[l + 1]]."""

    quantizer: object  # a faiss index over the centroids
    order: np.ndarray
    bounds: np.ndarray

    @property
    def nlist(self) -> int:
        return len(self.bounds) - 1

    def members(self, number: int) -> np.ndarray:
        return self.order[self.bounds[number]:self.bounds[number + 1]]


class FaissBackend:
    """Exact search on small data, a recall-checked inverted-file search above; CPU, every core."""

    def __init__(self, exact_max_work: float | None = None, min_recall: float = MIN_RECALL,
                 first_nprobe: int = FIRST_NPROBE, seed: int = 42):
        self.exact_max_work = EXACT_MAX_WORK if exact_max_work is None else exact_max_work
        self.min_recall = min_recall
        self.first_nprobe = first_nprobe
        self.seed = seed
        self.last_nprobe: int | None = None  # of the last inverted-file search, for benchmarks and tests
        self._mean_of: tuple = (None, None)  # (which array, its mean row), for the euclidean rows

    # -- the two primitives a GPU backend would replace
    def _flat_knn(self, queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        return faiss.knn(queries, base, k, faiss.METRIC_L2)

    def _train_quantizer(self, train: np.ndarray, n_lists: int):
        """A faiss index over n_lists k-means centroids of the training rows."""
        import faiss

        kmeans = faiss.Kmeans(train.shape[1], n_lists, niter=10, seed=self.seed)
        kmeans.train(train)
        return kmeans.index

    def _rows(self, embeddings: np.ndarray, metric: str, rows: slice | np.ndarray) -> np.ndarray:
        """The rows as the search compares them: `prepared`, and for euclidean less the data's mean.

        faiss's BLAS search computes |x|^2 + |y|^2 - 2 x.y, which loses the small distance between two long,
        nearly equal rows (features with a large common offset, as non-negative activations have) to rounding.
        Subtracting one vector from every row changes no euclidean distance and keeps the lengths small.
        """
        x = prepared(embeddings, metric, rows)
        if metric == "euclidean":
            x = x - self._mean(embeddings)  # a new array: prepared may return a view of the caller's rows
        return x

    def _mean(self, embeddings: np.ndarray) -> np.ndarray:
        key = (id(embeddings), embeddings.shape)  # any vector would keep the distances: a stale one is harmless
        if self._mean_of[0] != key:
            self._mean_of = (key, np.mean(embeddings, axis=0, dtype=np.float64).astype(np.float32))
        return self._mean_of[1]

    # -- the search
    def search(self, embeddings: np.ndarray, k: int, metric: str) -> KnnResult:
        import faiss

        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        n, dims = embeddings.shape
        if not 0 < k < n:
            raise ValueError(f"k must be between 1 and {n - 1}, got {k}")
        with _SEARCH_LOCK:
            faiss.omp_set_num_threads(cores())
            graph = None
            if n * n * dims > self.exact_max_work:
                graph = self._index_search(embeddings, k, metric)
                release_freed_memory()  # the search's query blocks and gathered lists go back to the system
            if graph is None:
                ids, d2 = self.exact_rows(embeddings, metric, np.arange(n), k)
                graph = KnnResult(ids, to_metric(d2, metric), True)
        return graph

    def exact_rows(self, embeddings: np.ndarray, metric: str, rows: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The exact k nearest other rows of the given rows: int32 indices and squared distances."""
        n, dims = embeddings.shape
        k1 = min(k + 1, n)
        tasks = 4 * cores()
        query_blocks = max(min(tasks, len(rows) // 1024), -(-len(rows) // 4096), 1)
        query_size = -(-len(rows) // query_blocks)
        query_starts = range(0, len(rows), query_size)
        best_d = np.full((len(rows), k1), np.inf, dtype=np.float32)
        best_i = np.full((len(rows), k1), -1, dtype=np.int64)

        def search(parts: list[tuple[int, Callable[[], np.ndarray]]]) -> None:
            """Every block of queries against every part (its first row, its prepared rows), merged into the best."""
            found: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

            def task(query_start: int, first: int, searched: Callable[[], np.ndarray]) -> None:
                queries = self._rows(embeddings, metric, rows[query_start:query_start + query_size])
                base = searched()
                d, i = self._flat_knn(queries, base, min(k1, len(base)))
                found[query_start, first] = d, i + first

            in_parallel([lambda q=q, f=f, b=b: task(q, f, b) for q in query_starts for f, b in parts])
            for query_start in query_starts:
                block = slice(query_start, query_start + query_size)
                d = np.hstack([best_d[block]] + [found[query_start, f][0] for f, _ in parts])
                i = np.hstack([best_i[block]] + [found[query_start, f][1] for f, _ in parts])
                nearest = np.argsort(d, axis=1, kind="stable")[:, :k1]
                best_d[block], best_i[block] = np.take_along_axis(d, nearest, 1), np.take_along_axis(i, nearest, 1)

        if len(query_starts) == 1:
            # A few hundred sampled queries: every task prepares and searches its own share of the rows.
            share = min(chunk_rows(dims), -(-n // tasks))
            search([(f, lambda f=f: self._rows(embeddings, metric, slice(f, f + share))) for f in range(0, n, share)])
        else:
            # Many queries: each chunk of the searched rows is prepared once, and searched by every block of them.
            step = chunk_rows(dims)
            for base_start in range(0, n, step):
                base = self._rows(embeddings, metric, slice(base_start, base_start + step))
                share = -(-len(base) // max(1, -(-tasks // len(query_starts))))
                search([(base_start + f, lambda f=f: base[f:f + share]) for f in range(0, len(base), share)])
        ids, d2 = drop_self(best_i, best_d, rows, k)
        return ids.astype(np.int32), d2

    def _build_lists(self, embeddings: np.ndarray, metric: str) -> InvertedLists:
        n, dims = embeddings.shape
        n_lists = max(1, min(int(round(math.sqrt(n))), n // 39))
        rng = np.random.default_rng(self.seed)
        train = np.sort(rng.choice(n, size=min(n, TRAIN_ROWS_PER_LIST * n_lists), replace=False))
        quantizer = self._train_quantizer(self._rows(embeddings, metric, train), n_lists)
        lists = np.empty(n, dtype=np.int64)
        starts = blocks(n, max(256, chunk_rows(dims) // 16))

        def assign(start: int) -> None:
            block = slice(start, start + starts.step)
            lists[block] = quantizer.search(self._rows(embeddings, metric, block), 1)[1][:, 0]

        in_parallel([lambda s=start: assign(s) for start in starts])
        order = np.argsort(lists, kind="stable")
        bounds = np.searchsorted(lists[order], np.arange(n_lists + 1))
        return InvertedLists(quantizer, order, bounds)

    def _index_search(self, embeddings: np.ndarray, k: int, metric: str) -> KnnResult | None:
        """The inverted-file graph, or None when only a scan of most of the data reaches MIN_RECALL."""
        n = embeddings.shape[0]
        lists = self._build_lists(embeddings, metric)
        rng = np.random.default_rng(self.seed + 1)
        sample = rng.choice(n, size=min(n, 2 * RECALL_SAMPLE), replace=False)
        calibrate, check = sample[:len(sample) // 2], sample[len(sample) // 2:]
        calibrate_d2 = self.exact_rows(embeddings, metric, calibrate, k)[1]
        check_d2 = None  # computed once the inverted file proves worth probing
        nprobe = self.first_nprobe
        while True:
            nprobe = self._calibrate(lists, embeddings, metric, calibrate, calibrate_d2, k, nprobe)
            if nprobe is None:
                return None
            ids, d2 = self._probe_all(lists, embeddings, metric, k, nprobe)
            if check_d2 is None:
                check_d2 = self.exact_rows(embeddings, metric, check, k)[1]
            if recall(ids[check], d2[check], check_d2) >= self.min_recall:
                break
            nprobe = _wider(nprobe, _widest(lists.nlist))
        self.last_nprobe = nprobe
        missing = np.flatnonzero((ids < 0).any(axis=1))  # rows whose probed lists held fewer than k others
        if len(missing):
            ids[missing], d2[missing] = self.exact_rows(embeddings, metric, missing, k)
        return KnnResult(ids, to_metric(d2, metric), False)

    def _calibrate(self, lists: InvertedLists, embeddings: np.ndarray, metric: str, rows: np.ndarray,
                   truth_d2: np.ndarray, k: int, nprobe: int) -> int | None:
        """Probed lists, from nprobe up, whose graph reaches MIN_RECALL (and the margin) on the rows; None when
        that would take more than EXACT_SHARE of the lists."""
        def reaches(probed: int) -> bool:
            ids, d2 = drop_self(*self._probe(lists, embeddings, metric, rows, k + 1, probed), rows, k)
            return recall(ids, d2, truth_d2) >= self.min_recall + CALIBRATION_MARGIN

        import faiss

        # Hundreds of small kNN calls: on a busy machine a thread team per call mostly waits for its threads.
        faiss.omp_set_num_threads(1)
        try:
            return self._fewest(reaches, nprobe, _widest(lists.nlist))
        finally:
            faiss.omp_set_num_threads(cores())

    @staticmethod
    def _fewest(reaches: Callable[[int], bool], nprobe: int, widest: int) -> int | None:
        """The first number of probed lists, widening from nprobe by half each step up to widest, that reaches the
        recall; None if even widest does not. (Not bisected back to the very fewest: that leaves the whole graph's
        recall nearer MIN_RECALL than a sample of rows can vouch for.)"""
        while nprobe <= widest:
            if reaches(nprobe):
                return nprobe
            nprobe = _wider(nprobe, widest)
        return None

    def _probe(self, lists: InvertedLists, embeddings: np.ndarray, metric: str, rows: np.ndarray, k: int,
               nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows (the row itself among them) within each row's nprobe nearest lists: ids and
        squared distances, nearest first; -1 where the probed lists held fewer than k rows."""
        import faiss

        queries = self._rows(embeddings, metric, rows)
        probes = lists.quantizer.search(queries, min(nprobe, lists.nlist))[1]
        flat = probes.ravel()
        by_list = np.argsort(flat, kind="stable")
        numbers, firsts = np.unique(flat[by_list], return_index=True)
        ends = np.append(firsts[1:], len(flat))
        heap = faiss.ResultHeap(len(rows), k)
        for number, first, end in zip(numbers, firsts, ends):
            members = lists.members(number) if number >= 0 else ()
            if len(members):
                which = by_list[first:end] // probes.shape[1]
                d, i = self._flat_knn(queries[which], self._rows(embeddings, metric, members), min(k, len(members)))
                heap.add_result_subset(which, d, members[i])
        heap.finalize()
        return heap.I, heap.D

    def _probe_all(self, lists: InvertedLists, embeddings: np.ndarray, metric: str, k: int, nprobe: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Every row's k nearest other rows by the inverted file, queried in blocks of the lists' order: the rows
        of one block probe mostly the same lists, so each list meets many queries in one matrix product."""
        n, dims = embeddings.shape
        ids = np.empty((n, k), dtype=np.int32)
        d2 = np.empty((n, k), dtype=np.float32)
        starts = blocks(n, chunk_rows(dims))

        def task(start: int) -> None:
            rows = lists.order[start:start + starts.step]
            found, found_d = self._probe(lists, embeddings, metric, rows, k + 1, nprobe)
            ids[rows], d2[rows] = drop_self(found, found_d, rows, k)

        in_parallel([lambda s=start: task(s) for start in starts])
        return ids, d2
