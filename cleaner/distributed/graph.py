"""The kNN graph across the workers of a Dask cluster, by the same search cleaner runs on one machine.

Exact while N^2 D is at most EXACT_MAX_WORK (every part against every part, the partial nearest merged per row).
Above it, the inverted file (cleaner.graph.inverted_file, cleaner.graph.calibration):
1. coarse centroids trained by k-means (faiss) on one worker, on a seeded sample of rows drawn from every part;
2. every part's rows assigned to their nearest centroid's list, in parallel; the lists cut into groups of about
   equal rows, each group's members gathered on one worker (the data moves once);
3. the number of probed lists calibrated on a sample of rows against an exact search of that sample, widened until
   the recall reaches MIN_RECALL (and a margin), exactly as on one machine (`fewest`, `wider`, `widest`);
4. every part's rows bucketed by the groups they probe; each group searched, list by list, against the queries
   that probe it; the partial nearest merged per row, part by part;
5. the recall checked on a second sample; if short, the search widens and runs again; where only probing more than
   EXACT_SHARE of the lists would reach it, the exact search instead. Rows whose probed lists held fewer than k
   others get an exact search of their own.
The graph is gathered on the client (the scores and the sidecar read it) and stays on the workers, part by part,
for the layout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass, field

import numpy as np

from cleaner.distributed import tasks
from cleaner.graph.calibration import CALIBRATION_MARGIN, RECALL_SAMPLE, fewest, wider, widest
from cleaner.graph.inverted_file import TRAIN_ROWS_PER_LIST
from cleaner.graph.knn_backends import EXACT_MAX_WORK, FIRST_NPROBE, MIN_RECALL
from cleaner.graph.knn_rows import drop_self, recall
from cleaner.graph.neighbours import NeighbourGraph


def _wait(futures) -> None:
    from distributed import wait

    wait(futures)


@dataclass(frozen=True)
class Part:
    """A slice of a shard: rows start..stop - 1 of the shard, rows offset.. of the dataset."""

    path: str
    start: int
    stop: int
    offset: int

    @property
    def n(self) -> int:
        return self.stop - self.start


@dataclass
class ClusterRows:
    """The dataset's rows on the workers: one future of prepared rows per part."""

    client: object
    parts: list[Part]
    prepared: list  # futures of [n_part, D] float32
    metric: str
    dims: int

    @property
    def n(self) -> int:
        return self.parts[-1].offset + self.parts[-1].n if self.parts else 0

    def submit(self, fn: Callable, *args, **kwargs):
        return self.client.submit(fn, *args, **kwargs)

    def gather_rows(self, rows: np.ndarray) -> np.ndarray:
        """The prepared rows of these global row numbers, in this order, on the client."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dims), dtype=np.float32)
        wanted = []
        for part, fut in zip(self.parts, self.prepared, strict=True):
            hit = np.flatnonzero((rows >= part.offset) & (rows < part.offset + part.n))
            if len(hit):
                wanted.append((hit, self.submit(tasks.take, fut, rows[hit] - part.offset)))
        for hit, fut in wanted:
            out[hit] = fut.result()
        return out


@dataclass
class DistributedGraph:
    graph: NeighbourGraph  # gathered on the client
    parts: list  # futures of (int32 ids, distances in the metric's units), one per part, on the workers
    nprobe: int | None  # lists probed (None: exact)
    seconds: dict = field(default_factory=dict)


def _exact_of(rows: ClusterRows, queries: np.ndarray, query_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact k nearest other rows of a few rows (their prepared rows given), every part searched for them."""
    for attempt in range(3):
        q = rows.client.scatter(queries, broadcast=True, hash=False)
        pieces = [
            rows.submit(tasks.search_flat, fut, part.offset, q, min(k + 1, rows.n))
            for part, fut in zip(rows.parts, rows.prepared, strict=True)
        ]
        try:
            found = rows.client.gather(pieces)
            break
        except CancelledError:  # a worker died holding the only copy of the queries yet: scatter them again
            if attempt == 2:
                raise
    ids, d2 = tasks.merge(len(queries), min(k + 1, rows.n), found)
    ids, d2 = drop_self(ids, d2, query_rows, k)
    return ids.astype(np.int32), d2


def _exact_parts(rows: ClusterRows, k: int) -> list:
    """Every part's graph by the exact search: each part's rows against every part."""
    out = []
    for part, fut in zip(rows.parts, rows.prepared, strict=True):
        pieces = [
            rows.submit(tasks.search_flat_rows, base, other.offset, fut, k + 1)
            for other, base in zip(rows.parts, rows.prepared, strict=True)
        ]
        out.append(rows.submit(tasks.part_graph, part.n, part.offset, k, pieces))
    return out


class _InvertedFile:
    """The lists on the workers, and the searches through them."""

    def __init__(self, rows: ClusterRows, seed: int, groups: int):
        self.rows = rows
        n = rows.n
        self.n_lists = max(1, min(int(round(math.sqrt(n))), n // 39))
        rng = np.random.default_rng(seed)
        train = np.sort(rng.choice(n, size=min(n, TRAIN_ROWS_PER_LIST * self.n_lists), replace=False))
        pieces = []
        for part, fut in zip(rows.parts, rows.prepared, strict=True):
            hit = train[(train >= part.offset) & (train < part.offset + part.n)] - part.offset
            if len(hit):
                pieces.append(rows.submit(tasks.take, fut, hit))
        self.centroids_future = rows.submit(tasks.train_centroids, pieces, self.n_lists, seed)
        self.centroids = self.centroids_future.result()
        own = [rows.submit(tasks.nearest_lists, fut, self.centroids_future, 1) for fut in rows.prepared]
        counts = np.sum(rows.client.gather([rows.submit(tasks.list_counts, o, self.n_lists) for o in own]), axis=0)
        # Groups of consecutive lists holding about equal numbers of rows.
        cuts = np.searchsorted(np.cumsum(counts), np.linspace(0, n, groups + 1)[1:-1], side="left") + 1
        edges = np.unique(np.concatenate([[0], np.clip(cuts, 1, self.n_lists), [self.n_lists]]))
        self.groups = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
        self.members = []
        for lo, hi in self.groups:
            buckets = [
                rows.submit(tasks.member_bucket, fut, o, part.offset, lo, hi)
                for part, fut, o in zip(rows.parts, rows.prepared, own, strict=True)
            ]
            self.members.append(rows.submit(tasks.group_members, lo, hi, buckets))

    def sample_search(self, queries_future, probes: np.ndarray, query_rows: np.ndarray, k: int):
        """The inverted-file graph of a few rows (their prepared rows scattered, their probed lists given)."""
        pieces = []
        for (lo, hi), members in zip(self.groups, self.members, strict=True):
            bucket = self.rows.submit(_sample_bucket, queries_future, probes, lo, hi)
            pieces.append(self.rows.submit(tasks.search_group, members, bucket, k + 1))
        ids, d2 = tasks.merge(len(query_rows), k + 1, self.rows.client.gather(pieces))
        return drop_self(ids, d2, query_rows, k)

    def search(self, k: int, nprobe: int) -> list:
        """Every part's graph by probing nprobe lists (futures; -1 where the probed lists held fewer than k others)."""
        rows = self.rows
        out = []
        for part, fut in zip(rows.parts, rows.prepared, strict=True):
            probes = rows.submit(tasks.nearest_lists, fut, self.centroids_future, nprobe)
            pieces = []
            for (lo, hi), members in zip(self.groups, self.members, strict=True):
                bucket = rows.submit(tasks.query_bucket, fut, probes, lo, hi)
                pieces.append(rows.submit(tasks.search_group, members, bucket, k + 1))
            out.append(rows.submit(tasks.part_graph, part.n, part.offset, k, pieces))
        return out


def _sample_bucket(queries: np.ndarray, probes: np.ndarray, lo: int, hi: int):
    return tasks.query_bucket(queries, probes, lo, hi)


def _rows_of(rows: ClusterRows, graphs: list, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graph's rows `which` (global), gathered from the parts' futures."""
    found = []
    for part, g in zip(rows.parts, graphs, strict=True):
        hit = np.flatnonzero((which >= part.offset) & (which < part.offset + part.n))
        if len(hit):
            found.append((hit, rows.submit(tasks.graph_rows, g, which[hit] - part.offset)))
    ids, d2 = None, None
    for hit, fut in found:
        i, d = fut.result()
        if ids is None:
            ids = np.empty((len(which), i.shape[1]), dtype=i.dtype)
            d2 = np.empty((len(which), i.shape[1]), dtype=d.dtype)
        ids[hit], d2[hit] = i, d
    return ids, d2


def _calibrated(
    rows: ClusterRows, ivf: _InvertedFile, k: int, first_nprobe: int, min_recall: float, seed: int, seconds: dict
) -> tuple[int, list] | None:
    """As `cleaner.graph.calibration.calibrated_graph`, the searches on the workers."""
    import faiss

    rng = np.random.default_rng(seed + 1)
    sample = rng.choice(rows.n, size=min(rows.n, 2 * RECALL_SAMPLE), replace=False)
    cal_rows, check_rows = sample[: len(sample) // 2], sample[len(sample) // 2 :]
    cal_x = rows.gather_rows(cal_rows)
    cal_d2 = _exact_of(rows, cal_x, cal_rows, k)[1]
    cal_future = rows.client.scatter(cal_x, broadcast=True, hash=False)
    quantizer = faiss.IndexFlatL2(ivf.centroids.shape[1])
    quantizer.add(ivf.centroids)
    check_d2 = None
    nprobe = first_nprobe
    while True:
        t0 = time.perf_counter()

        def reaches(probed: int) -> bool:
            probes = quantizer.search(cal_x, min(probed, ivf.n_lists))[1]
            ids, d2 = ivf.sample_search(cal_future, probes, cal_rows, k)
            return recall(ids, d2, cal_d2) >= min_recall + CALIBRATION_MARGIN

        nprobe = fewest(reaches, nprobe, widest(ivf.n_lists))
        seconds["calibration"] = seconds.get("calibration", 0.0) + time.perf_counter() - t0
        if nprobe is None:
            return None
        t0 = time.perf_counter()
        graphs = ivf.search(k, nprobe)
        if check_d2 is None:
            check_d2 = _exact_of(rows, rows.gather_rows(check_rows), check_rows, k)[1]
        ids, d2 = _rows_of(rows, graphs, check_rows)
        seconds["search"] = seconds.get("search", 0.0) + time.perf_counter() - t0
        if recall(ids, d2, check_d2) >= min_recall:
            return nprobe, graphs
        nprobe = wider(nprobe, widest(ivf.n_lists))


def distributed_graph(
    rows: ClusterRows,
    k: int,
    *,
    exact_max_work: float = EXACT_MAX_WORK,
    min_recall: float = MIN_RECALL,
    first_nprobe: int = FIRST_NPROBE,
    seed: int = 42,
    groups: int | None = None,
) -> DistributedGraph:
    """The kNN graph of the rows on the cluster (see the module's description)."""
    n, metric = rows.n, rows.metric
    k = min(k, n - 1)
    seconds: dict = {}
    t0 = time.perf_counter()
    graphs, nprobe = None, None
    if n * n * rows.dims > exact_max_work:
        ivf = _InvertedFile(rows, seed, groups or len(rows.parts))
        seconds["lists"] = time.perf_counter() - t0
        calibrated = _calibrated(rows, ivf, k, first_nprobe, min_recall, seed, seconds)
        if calibrated is not None:
            nprobe, graphs = calibrated
    if graphs is None:
        t1 = time.perf_counter()
        graphs = _exact_parts(rows, k)
        _wait(graphs)
        seconds["exact"] = time.perf_counter() - t1
    else:  # rows whose probed lists held fewer than k others: an exact search of their own
        missing = rows.client.gather([rows.submit(tasks.missing_rows, g) for g in graphs])
        for i, (part, local) in enumerate(zip(rows.parts, missing, strict=True)):
            if len(local):
                glob = local + part.offset
                ids, d2 = _exact_of(rows, rows.gather_rows(glob), glob, k)
                graphs[i] = rows.submit(tasks.patched, graphs[i], local, ids, d2)
    t2 = time.perf_counter()
    finished = [rows.submit(tasks.in_metric, g, metric) for g in graphs]
    gathered = rows.client.gather(finished)
    indices = np.concatenate([g[0] for g in gathered]) if gathered else np.empty((0, k), np.int32)
    distances = np.concatenate([g[1] for g in gathered]) if gathered else np.empty((0, k), np.float32)
    seconds["gather"] = time.perf_counter() - t2
    graph = NeighbourGraph(indices=indices, distances=distances, metric=metric, exact=nprobe is None)
    return DistributedGraph(graph, finished, nprobe, seconds)
