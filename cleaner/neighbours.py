"""The k-nearest-neighbour graph of the embeddings: computed once, shared by the layout, selection and scores.

Three searches, chosen by size (thresholds measured with bench/knn_threshold.py and bench/scale.py):
- up to EXACT_MAX_ROWS rows: exact, blockwise float32 matrix products;
- up to CLUSTERED_MAX_ROWS rows: an inverted-file search (k-means cells, each cell compared with its
  nearest cells by the same matrix products). Plain numpy and BLAS, so no numba compilation: a cold
  process has the graph of 100k x 512 in seconds, where pynndescent first compiles for 30-50 s.
  Its recall is checked on a sample of rows against the exact answer and the search widens (or hands
  over to pynndescent) when it falls short, so unclustered data is never silently served a poor graph;
- above that, pynndescent.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .diskcache import store_file

METRICS = ("cosine", "euclidean")
# Up to this many rows the exact search is fast enough (about 1 s at 10k x 512 on 2 cores).
EXACT_MAX_ROWS = 10_000
# The inverted-file search costs O(N^1.5 D); beyond this pynndescent's O(N log N) wins.
CLUSTERED_MAX_ROWS = 400_000
# Recall of the inverted-file graph, checked on RECALL_SAMPLE rows, below which the search widens.
MIN_RECALL = 0.97
RECALL_SAMPLE = 300
_BLOCK_FLOATS = 1 << 24  # at most 64 MB of float32 distances in flight per block
# Part of the disk cache key: bump when a search, or a bound above that picks one, changes the graphs it
# serves for worse (a stricter bound needs no bump: graphs stored under the looser one are still served).
GRAPH_VERSION = 1


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


def _prepare(embeddings: np.ndarray, metric: str) -> np.ndarray:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
    return x


def _to_metric(d2: np.ndarray, metric: str) -> np.ndarray:
    """Squared euclidean distances of prepared rows as the metric's distances (for unit vectors 1 - cos = d^2 / 2)."""
    d2 = np.maximum(d2, 0.0)
    return (d2 / 2.0 if metric == "cosine" else np.sqrt(d2)).astype(np.float32)


_THREADS_LOCK = threading.Lock()


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


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
    """Serialise numba work (layouts, pynndescent) when numba's only threading layer is workqueue, which aborts
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


def _single_threaded_blas():
    """One BLAS thread while our own threads share the cores. threadpoolctl sets this for the whole process,
    so a layout running meanwhile in another thread also gets one BLAS thread; it uses numba, not BLAS."""
    try:
        from threadpoolctl import threadpool_limits  # comes with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _run_on_all_cores(tasks: list[Callable[[], None]]) -> None:
    """Run independent numpy tasks, one Python thread per core, each with single-threaded BLAS.

    Measured on the shared 2-core machine: OpenBLAS's own two threads on these medium-sized products took
    15-23 s for the 100k graph where one thread took 7 s (a descheduled BLAS thread stalls its partner);
    independent tasks per thread do not wait for each other. numpy releases the GIL in the heavy calls.
    """
    workers = min(len(tasks), _cores())
    with _THREADS_LOCK, _single_threaded_blas():  # one search at a time: it already uses every core
        if workers <= 1:
            for task in tasks:
                task()
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleaner-knn") as pool:
            for future in [pool.submit(task) for task in tasks]:
                future.result()


def _nearest(queries: np.ndarray, cand_x: np.ndarray, half_sq: np.ndarray, self_pos: np.ndarray,
             k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest candidates of each query: positions in cand_x, closest first, and their squared distances
    less |q|^2. half_sq holds |c|^2 / 2 of the candidates; self_pos each query's own position in cand_x (or -1)."""
    d = queries @ cand_x.T
    np.subtract(half_sq[None, :], d, out=d)  # (|q - c|^2 - |q|^2) / 2: one pass, same order as the distance
    own = self_pos >= 0
    d[np.flatnonzero(own), self_pos[own]] = np.inf  # never your own neighbour
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    part_d = np.take_along_axis(d, part, axis=1)
    order = np.argsort(part_d, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), 2.0 * np.take_along_axis(part_d, order, axis=1)


def exact_neighbours(embeddings: np.ndarray, k: int, metric: str = "cosine") -> NeighbourGraph:
    """Exact kNN by blockwise float32 matrix products (fast and simple for small N)."""
    x = _prepare(embeddings, metric)
    n = x.shape[0]
    k = min(k, n - 1)
    sq = np.einsum("ij,ij->i", x, x)
    half_sq = 0.5 * sq
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    block = max(16, min(1024, _BLOCK_FLOATS // max(n, 1)))

    def search(start: int) -> None:
        rows = np.arange(start, min(start + block, n))
        idx, d2 = _nearest(x[rows], x, half_sq, rows, k)
        indices[rows] = idx
        distances[rows] = _to_metric(d2 + sq[rows, None], metric)

    _run_on_all_cores([lambda s=start: search(s) for start in range(0, n, block)])
    return NeighbourGraph(indices=indices, distances=distances, metric=metric, exact=True)


def _kmeans(x: np.ndarray, n_cells: int, rng: np.random.Generator, iterations: int = 8) -> np.ndarray:
    """Lloyd's k-means on a sample of the rows: the cells of the inverted file."""
    sample = x[np.sort(rng.choice(len(x), size=min(len(x), 40 * n_cells), replace=False))]
    centers = sample[rng.choice(len(sample), size=n_cells, replace=False)].copy()
    for _ in range(iterations):
        assign = _assign(sample, centers)
        counts = np.bincount(assign, minlength=n_cells)
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, sample)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
        if not filled.all():  # an empty cell restarts at a random row
            centers[~filled] = sample[rng.choice(len(sample), size=int((~filled).sum()), replace=False)]
    return centers


def _assign(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    half = 0.5 * np.einsum("ij,ij->i", centers, centers)
    out = np.empty(len(x), dtype=np.int64)
    step = max(1, _BLOCK_FLOATS // max(len(centers), 1))
    for start in range(0, len(x), step):
        out[start:start + step] = np.argmax(x[start:start + step] @ centers.T - half, axis=1)
    return out


def _recall(x: np.ndarray, half_sq: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> float:
    """Share of the graph's neighbours of the sampled rows that are among their exact k nearest.

    A neighbour counts when it is no farther than the exact k-th nearest: with duplicates or ties the graph
    may pick a different but equally near row, which is just as good and must not read as a miss.
    """
    k = indices.shape[1]
    hits = np.zeros(len(rows), dtype=np.int64)

    def check(start: int) -> None:
        chunk = rows[start:start + 64]
        _, truth_d = _nearest(x[chunk], x, half_sq, chunk, k)
        found = indices[chunk]
        # Same shifted distance as _nearest: |q - c|^2 - |q|^2.
        found_d = 2.0 * (half_sq[found] - np.einsum("ij,ikj->ik", x[chunk], x[found]))
        tolerance = 1e-4 * (np.abs(truth_d[:, -1:]) + 2.0 * half_sq[chunk, None] + 1e-12)
        hits[start:start + 64] = (found_d <= truth_d[:, -1:] + tolerance).sum(axis=1)

    _run_on_all_cores([lambda s=start: check(s) for start in range(0, len(rows), 64)])
    return float(hits.sum()) / (len(rows) * k)


def clustered_neighbours(embeddings: np.ndarray, k: int, metric: str = "cosine", seed: int = 42,
                         n_probe: int = 12, min_recall: float = MIN_RECALL) -> NeighbourGraph | None:
    """Approximate kNN by an inverted file: rows fall into ~sqrt(N) k-means cells; the rows of each cell are
    compared exactly with the rows of its n_probe nearest cells. Deterministic for a seed.

    The recall is measured on a sample against the exact search; below min_recall the search is rerun once
    with three times as many cells probed, and None is returned if even that falls short (the caller then
    uses pynndescent).
    """
    x = _prepare(embeddings, metric)
    n = x.shape[0]
    k = min(k, n - 1)
    rng = np.random.default_rng(seed)
    n_cells = max(1, int(round(np.sqrt(n))))
    centers = _kmeans(x, n_cells, rng)
    cell_of = _assign(x, centers)
    order = np.argsort(cell_of, kind="stable")
    bounds = np.searchsorted(cell_of[order], np.arange(n_cells + 1))
    members = [order[bounds[c]:bounds[c + 1]] for c in range(n_cells)]
    sizes = np.diff(bounds)
    center_d2 = -2.0 * (centers @ centers.T) + np.einsum("ij,ij->i", centers, centers)[None, :]
    cells_by_distance = np.argsort(center_d2, axis=1, kind="stable")
    sq = np.einsum("ij,ij->i", x, x)
    half_sq = 0.5 * sq
    check_rows = np.sort(rng.choice(n, size=min(n, RECALL_SAMPLE), replace=False))
    indices = np.empty((n, k), dtype=np.int32)
    d2_out = np.empty((n, k), dtype=np.float32)

    def search_cell(c: int, probe: int) -> None:
        queries = members[c]
        # The cell itself first, then its nearest cells; more if they hold too few rows to supply k neighbours.
        near = np.concatenate([[c], cells_by_distance[c][cells_by_distance[c] != c]])
        enough = int(np.searchsorted(np.cumsum(sizes[near]), k + 1)) + 1
        cand = np.concatenate([members[j] for j in near[:max(probe, enough)]])
        cand_x, cand_half_sq = x[cand], half_sq[cand]
        step = max(1, _BLOCK_FLOATS // len(cand))
        for start in range(0, len(queries), step):
            rows = queries[start:start + step]
            own = np.arange(start, start + len(rows))  # the cell's own rows lead the candidates
            pos, d2 = _nearest(x[rows], cand_x, cand_half_sq, own, k)
            indices[rows] = cand[pos]
            d2_out[rows] = d2 + sq[rows, None]

    widened = False
    while True:
        # Largest cells first, so no thread is left with a big one at the end.
        _run_on_all_cores([lambda c=c, p=n_probe: search_cell(c, p) for c in np.argsort(-sizes) if sizes[c]])
        if _recall(x, half_sq, indices, check_rows) >= min_recall:
            break
        if n_probe >= n_cells or widened:
            return None
        n_probe, widened = min(n_cells, n_probe * 3), True
    return NeighbourGraph(indices=indices, distances=_to_metric(d2_out, metric), metric=metric, exact=False)


def approximate_neighbours(embeddings: np.ndarray, k: int, metric: str = "cosine", seed: int = 42) -> NeighbourGraph:
    """Approximate kNN with pynndescent, for large N."""
    from pynndescent import NNDescent  # heavy import (numba); only on this path

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = x.shape[0]
    k = min(k, n - 1)
    with numba_guard():
        index = NNDescent(x, n_neighbors=k + 1, metric=metric, random_state=seed, low_memory=True)
    idx, dist = index.neighbor_graph
    indices = idx[:, 1 : k + 1].astype(np.int32)
    distances = dist[:, 1 : k + 1].astype(np.float32)
    # Rows where a duplicate, not the point itself, came first: drop the point wherever it is.
    for i in np.flatnonzero(idx[:, 0] != np.arange(n)):
        keep = (idx[i] != i) & (idx[i] >= 0)
        row_idx, row_d = idx[i][keep][:k], dist[i][keep][:k]
        fill = k - len(row_idx)
        indices[i] = np.concatenate([row_idx, np.repeat(row_idx[-1:] if len(row_idx) else [(i + 1) % n], fill)])
        distances[i] = np.concatenate([row_d, np.repeat(row_d[-1:] if len(row_d) else [np.inf], fill)])
    return NeighbourGraph(indices=indices, distances=distances.astype(np.float32), metric=metric, exact=False)


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
        if (indices.shape != expected or distances.shape != expected or indices.dtype != np.int32
                or indices.min(initial=0) < 0 or indices.max(initial=0) >= n_rows):
            return None
        with contextlib.suppress(OSError):  # another process may have just evicted it; we hold the data
            os.utime(path)  # recently used graphs are evicted last
        return NeighbourGraph(indices=indices, distances=distances.astype(np.float32, copy=False),
                              metric=metric, exact=exact)

    def put(self, embedding_digest: str, k: int, graph: NeighbourGraph) -> None:
        def write(fh) -> None:
            np.savez(fh, indices=graph.indices, distances=graph.distances, exact=np.bool_(graph.exact))

        store_file(self.folder, self.file_name(embedding_digest, k, graph.metric), write, "graph_*.npz",
                   self.max_bytes)


def neighbour_graph(embeddings: np.ndarray, k: int = 20, metric: str = "cosine", *,
                    store: GraphStore | None = None, embedding_digest: str | None = None) -> NeighbourGraph:
    """The kNN graph: exact for small N, an inverted-file search up to CLUSTERED_MAX_ROWS, pynndescent above.

    With a store and the embeddings' digest, a graph computed before (by any process) is read from disk.
    """
    n = embeddings.shape[0]
    if store is not None and embedding_digest is not None:
        cached = store.get(embedding_digest, k, metric, n)
        if cached is not None:
            return cached
    graph = None
    if n <= EXACT_MAX_ROWS:
        graph = exact_neighbours(embeddings, k, metric)
    elif n <= CLUSTERED_MAX_ROWS:
        graph = clustered_neighbours(embeddings, k, metric)
    if graph is None:
        graph = approximate_neighbours(embeddings, k, metric)
    if store is not None and embedding_digest is not None:
        store.put(embedding_digest, k, graph)
    return graph
