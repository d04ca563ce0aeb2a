"""The inverted-file search: the rows split by their nearest k-means centroid into about sqrt(N) lists, and each
row's k nearest sought in the `nprobe` lists whose centroids are nearest to it.

The lists are searched as faiss's big-batch search does (faiss.contrib.big_batch_search): in each block of
queries, those that probe one list are gathered and matched against that list's rows by one flat kNN call
(matrix products once the batch is large enough), instead of one scan per query, which is memory-bound: each
distance reads a whole row for a single multiply-add per value. The lists hold row numbers, not copies of the
rows, so the search needs no second copy of the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from cleaner.graph.knn_rows import ComparedRows, blocks, chunk_rows, drop_self, in_parallel

TRAIN_ROWS_PER_LIST = 40  # faiss's k-means wants at least 39 per list

# Trains a faiss index over n_lists k-means centroids of the given training rows.
TrainQuantizer = Callable[[np.ndarray, int], object]


class InvertedLists(NamedTuple):
    """The rows split by their nearest centroid: list l holds the rows order[bounds[l]:bounds[l + 1]]."""

    quantizer: object  # a faiss index over the centroids
    order: np.ndarray
    bounds: np.ndarray

    @property
    def nlist(self) -> int:
        return len(self.bounds) - 1

    def members(self, number: int) -> np.ndarray:
        return self.order[self.bounds[number] : self.bounds[number + 1]]


def build_lists(data: ComparedRows, train_quantizer: TrainQuantizer, seed: int) -> InvertedLists:
    """Centroids trained on a seeded sample of rows, and every row assigned to its nearest centroid's list."""
    n, dims = data.n, data.dims
    n_lists = max(1, min(int(round(math.sqrt(n))), n // 39))
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(n, size=min(n, TRAIN_ROWS_PER_LIST * n_lists), replace=False))
    quantizer = train_quantizer(data[train], n_lists)
    lists = np.empty(n, dtype=np.int64)
    starts = blocks(n, max(256, chunk_rows(dims) // 16))

    def assign(start: int) -> None:
        block = slice(start, start + starts.step)
        lists[block] = quantizer.search(data[block], 1)[1][:, 0]

    in_parallel([lambda s=start: assign(s) for start in starts])
    order = np.argsort(lists, kind="stable")
    bounds = np.searchsorted(lists[order], np.arange(n_lists + 1))
    return InvertedLists(quantizer, order, bounds)


def probe(
    lists: InvertedLists, data: ComparedRows, rows: np.ndarray, k: int, nprobe: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows (the row itself among them) within each row's nprobe nearest lists: ids and
    squared distances, nearest first; -1 where the probed lists held fewer than k rows."""
    import faiss

    queries = data[rows]
    probes = lists.quantizer.search(queries, min(nprobe, lists.nlist))[1]
    flat = probes.ravel()
    by_list = np.argsort(flat, kind="stable")
    numbers, firsts = np.unique(flat[by_list], return_index=True)
    ends = np.append(firsts[1:], len(flat))
    heap = faiss.ResultHeap(len(rows), k)
    for number, first, end in zip(numbers, firsts, ends, strict=True):
        members = lists.members(number) if number >= 0 else ()
        if len(members):
            which = by_list[first:end] // probes.shape[1]
            d, i = data.flat_knn(queries[which], data[members], min(k, len(members)))
            heap.add_result_subset(which, d, members[i])
    heap.finalize()
    return heap.I, heap.D


def probe_all(lists: InvertedLists, data: ComparedRows, k: int, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row's k nearest other rows by the inverted file, queried in blocks of the lists' order: the rows
    of one block probe mostly the same lists, so each list meets many queries in one matrix product."""
    n, dims = data.n, data.dims
    ids = np.empty((n, k), dtype=np.int32)
    d2 = np.empty((n, k), dtype=np.float32)
    starts = blocks(n, chunk_rows(dims))

    def task(start: int) -> None:
        rows = lists.order[start : start + starts.step]
        found, found_d = probe(lists, data, rows, k + 1, nprobe)
        ids[rows], d2[rows] = drop_self(found, found_d, rows, k)

    in_parallel([lambda s=start: task(s) for start in starts])
    return ids, d2
