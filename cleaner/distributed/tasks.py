"""What runs on a worker: plain functions of arrays (no dask here), each one task of the distributed scan.

The rows of the dataset live on the workers in parts (a shard, or a slice of one); a part's rows are `Rows` as
read, then prepared as cleaner's search compares them (`ComparedRows`: unit length for cosine, less the dataset's
mean for euclidean). The inverted file's lists live in groups of consecutive lists, each group's member rows
gathered on one worker; a group is searched against the queries (rows of every part) that probe one of its lists,
as `cleaner.graph.inverted_file.probe` does on one machine, and the partial nearest found per query are merged
part by part. Row numbers are global (the dataset's order) everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from cleaner.graph.knn_backends import FaissBackend
from cleaner.graph.knn_rows import drop_self, faiss_knn, prepared, to_metric
from cleaner.io.dataset_types import Dataset
from cleaner.io.shards import ShardInfo, load_shard, shard_info

_PLACE_CHUNK = 131_072  # rows placed per block, as cleaner.layout.landmarks does


def _one_thread() -> None:
    """One OpenMP thread per task: the worker runs as many tasks at once as it has threads."""
    import faiss

    faiss.omp_set_num_threads(1)


class Rows(NamedTuple):
    """A part's rows as read: the three arrays of its slice of a shard."""

    embeddings: np.ndarray
    labels: np.ndarray
    image_paths: np.ndarray


class Found(NamedTuple):
    """Nearest rows found for some queries: their rows (local to the part, or positions in a sample), global ids
    (-1: none) and squared distances (inf: none), nearest first."""

    rows: np.ndarray
    ids: np.ndarray
    d2: np.ndarray


class Members(NamedTuple):
    """One group of consecutive lists: its member rows' global ids and prepared rows, sorted by list."""

    lo: int
    hi: int
    ids: np.ndarray
    x: np.ndarray
    bounds: np.ndarray  # list lo + j holds positions bounds[j]:bounds[j + 1]


# ---------------------------------------------------------------- reading


def load_whole(path: str, max_bytes: int, max_rows: int, max_dims: int) -> tuple[Dataset, ShardInfo]:
    dataset = load_shard(path, max_bytes, max_rows, max_dims)
    return dataset, shard_info(path, dataset)


def info_of(loaded: tuple[Dataset, ShardInfo]) -> ShardInfo:
    return loaded[1]


def whole_rows(loaded: tuple[Dataset, ShardInfo]) -> Rows:
    d = loaded[0]
    return Rows(d.embeddings, d.labels, d.image_paths)


def read_part(path: str, start: int, stop: int, max_bytes: int, max_rows: int, max_dims: int) -> Rows:
    """A slice of a shard, read by the worker that will hold it (the shard's other rows are dropped)."""
    d = load_shard(path, max_bytes, max_rows, max_dims)
    return Rows(d.embeddings[start:stop].copy(), d.labels[start:stop].copy(), d.image_paths[start:stop].copy())


def labels_and_paths(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    return rows.labels, rows.image_paths


def summary(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(the rows `auto_metric` decides on: the one holding the lowest value, the shortest and the longest;
    the float64 sum of the rows, for the dataset's mean)."""
    emb = rows.embeddings
    lengths = np.einsum("ij,ij->i", emb, emb, dtype=np.float64)
    picks = [int(np.argmin(emb.min(axis=1))), int(np.argmin(lengths)), int(np.argmax(lengths))]
    return np.ascontiguousarray(emb[picks]), emb.sum(axis=0, dtype=np.float64)


def prepare(rows: Rows, metric: str, mean: np.ndarray | None) -> np.ndarray:
    """The rows as `ComparedRows` gives them to the search (the mean is the whole dataset's)."""
    x = prepared(rows.embeddings, metric, slice(None))
    return x - mean if mean is not None else x


def take(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x[rows])


# ---------------------------------------------------------------- the inverted file


def train_centroids(pieces: Sequence[np.ndarray], n_lists: int, seed: int) -> np.ndarray:
    """k-means centroids of the training rows, trained as the single-machine search trains them."""
    _one_thread()
    train = np.concatenate(pieces)
    index = FaissBackend(seed=seed)._train_quantizer(train, n_lists)
    return index.reconstruct_n(0, index.ntotal)


def _quantizer(centroids: np.ndarray):
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(centroids)
    return index


def nearest_lists(x: np.ndarray, centroids: np.ndarray, nprobe: int) -> np.ndarray:
    """[n, nprobe] the lists each row probes, nearest first (the first is the row's own list)."""
    _one_thread()
    return _quantizer(centroids).search(x, min(nprobe, len(centroids)))[1]


def list_counts(lists: np.ndarray, n_lists: int) -> np.ndarray:
    return np.bincount(lists[:, 0], minlength=n_lists)


def member_bucket(x: np.ndarray, lists: np.ndarray, offset: int, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    """This part's rows of the lists lo..hi - 1: (global ids, prepared rows, their lists)."""
    own = lists[:, 0]
    rows = np.flatnonzero((own >= lo) & (own < hi))
    return rows + offset, x[rows], own[rows]


def group_members(lo: int, hi: int, buckets: Sequence[tuple[np.ndarray, ...]]) -> Members:
    """The group's members from every part, sorted by list (and, within a list, by global row, as on one machine)."""
    ids = np.concatenate([b[0] for b in buckets])
    x = np.concatenate([b[1] for b in buckets])
    lists = np.concatenate([b[2] for b in buckets])
    order = np.argsort(lists, kind="stable")
    bounds = np.searchsorted(lists[order], np.arange(lo, hi + 1))
    return Members(lo, hi, ids[order], np.ascontiguousarray(x[order]), bounds)


def query_bucket(x: np.ndarray, probes: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The part's rows that probe a list of lo..hi - 1: (local rows, prepared rows, their probes there, -1 elsewhere)."""
    inside = (probes >= lo) & (probes < hi)
    rows = np.flatnonzero(inside.any(axis=1))
    return rows, x[rows], np.where(inside[rows], probes[rows], -1)


def search_group(members: Members, bucket: tuple[np.ndarray, np.ndarray, np.ndarray], k: int) -> Found:
    """Each list of the group against the queries that probe it, in one flat kNN call per list; the k nearest per
    query over the group's lists (as `cleaner.graph.inverted_file.probe`)."""
    import faiss

    _one_thread()
    rows, queries, probes = bucket
    heap = faiss.ResultHeap(len(rows), k)
    if len(rows):
        flat = probes.ravel()
        by_list = np.argsort(flat, kind="stable")
        numbers, firsts = np.unique(flat[by_list], return_index=True)
        ends = np.append(firsts[1:], len(flat))
        for number, first, end in zip(numbers, firsts, ends, strict=True):
            if number < 0:
                continue
            a, b = members.bounds[number - members.lo], members.bounds[number - members.lo + 1]
            if b > a:
                which = by_list[first:end] // probes.shape[1]
                d, i = faiss_knn(queries[which], members.x[a:b], int(min(k, b - a)))
                heap.add_result_subset(which, d, members.ids[a:b][i])
    heap.finalize()
    return Found(rows, heap.I, heap.D)


def search_flat(base: np.ndarray, offset: int, queries: np.ndarray, k: int) -> Found:
    """The exact k nearest rows of a part for every query."""
    _one_thread()
    d, i = faiss_knn(queries, base, min(k, len(base)))
    ids = np.where(i >= 0, i + offset, -1)
    return Found(np.arange(len(queries)), ids, d)


def search_flat_rows(base: np.ndarray, offset: int, x: np.ndarray, k: int) -> Found:
    """Exact: every row of a query part (x) against a base part."""
    return search_flat(base, offset, x, k)


# ---------------------------------------------------------------- merging


def merge(n: int, k: int, pieces: Sequence[Found]) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest per query over every piece (pieces in a fixed order: ties go to the earlier)."""
    ids = np.full((n, k), -1, dtype=np.int64)
    d2 = np.full((n, k), np.inf, dtype=np.float32)
    for piece in pieces:
        if not len(piece.rows):
            continue
        both_d = np.hstack([d2[piece.rows], piece.d2.astype(np.float32)])
        both_i = np.hstack([ids[piece.rows], piece.ids.astype(np.int64)])
        both_d[both_i < 0] = np.inf
        nearest = np.argsort(both_d, axis=1, kind="stable")[:, :k]
        d2[piece.rows] = np.take_along_axis(both_d, nearest, 1)
        ids[piece.rows] = np.take_along_axis(both_i, nearest, 1)
    return ids, d2


def part_graph(n: int, offset: int, k: int, pieces: Sequence[Found]) -> tuple[np.ndarray, np.ndarray]:
    """A part's rows' k nearest other rows (int32 global ids, -1 where fewer were found; squared distances)."""
    ids, d2 = merge(n, k + 1, pieces)
    ids, d2 = drop_self(ids, d2, np.arange(offset, offset + n), k)
    return ids.astype(np.int32), d2


def missing_rows(graph: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.flatnonzero((graph[0] < 0).any(axis=1))


def graph_rows(graph: tuple[np.ndarray, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return graph[0][rows], graph[1][rows]


def patched(
    graph: tuple[np.ndarray, np.ndarray], rows: np.ndarray, ids: np.ndarray, d2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    g_ids, g_d2 = graph[0].copy(), graph[1].copy()
    g_ids[rows], g_d2[rows] = ids, d2
    return g_ids, g_d2


def in_metric(graph: tuple[np.ndarray, np.ndarray], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(int32 ids, distances in the metric's units), as the graph's consumers read it."""
    return graph[0], to_metric(graph[1], metric)


# ---------------------------------------------------------------- the layout


def landmark_map(embeddings: np.ndarray, params, n_neighbors: int) -> np.ndarray:
    """The landmarks' own map: cleaner's landmark layout run on the landmarks alone (every row a landmark, no
    refinement), on their own kNN graph."""
    from cleaner.graph.neighbours import neighbour_graph
    from cleaner.layout.layouts import landmark_layout

    sub = neighbour_graph(embeddings, k=min(n_neighbors - 1, len(embeddings) - 1), metric=params.metric)
    return landmark_layout(embeddings, sub, params, count=len(embeddings), refine_epochs=0)


def weights_of(graph: tuple[np.ndarray, np.ndarray], n_neighbors: int) -> np.ndarray:
    from cleaner.layout.landmarks import membership_strengths

    return membership_strengths(graph[1], n_neighbors)


def place_round(
    graph: tuple[np.ndarray, np.ndarray], weights: np.ndarray, offset: int, coords: np.ndarray, placed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One round of `cleaner.layout.landmarks.place_from_neighbours` on a part's rows: each row not yet placed
    that has placed neighbours goes to their mean weighted by membership strength. (global rows, coordinates)."""
    indices = graph[0][:, : weights.shape[1]]
    pending = np.flatnonzero(~placed[offset : offset + len(indices)])
    new_rows, new_coords = [np.zeros(0, dtype=np.int64)], [np.zeros((0, coords.shape[1]), dtype=np.float32)]
    for start in range(0, pending.size, _PLACE_CHUNK):
        rows = pending[start : start + _PLACE_CHUNK]
        nbrs = indices[rows]
        w = weights[rows] * placed[nbrs]
        total = w.sum(axis=1)
        ok = total > 0
        if ok.any():
            mean = np.einsum("ij,ijk->ik", w[ok], coords[nbrs[ok]], dtype=np.float64) / total[ok, None]
            new_rows.append(rows[ok] + offset)
            new_coords.append(mean.astype(np.float32))
    return np.concatenate(new_rows), np.concatenate(new_coords)


def refined_map(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    coords: np.ndarray,
    landmarks: np.ndarray,
    params,
    epochs: int,
    exact: bool,
) -> np.ndarray:
    """The landmark layout's refinement (`cleaner.layout.layouts.refine_placed`) on one worker: the parts of the
    graph joined into the whole graph, then umap-learn's optimiser over every row from the placed coordinates."""
    from cleaner.graph.neighbours import NeighbourGraph
    from cleaner.layout.layouts import refine_placed

    graph = NeighbourGraph(
        indices=np.concatenate([p[0] for p in parts]),
        distances=np.concatenate([p[1] for p in parts]),
        metric=params.metric,
        exact=exact,
    )
    return refine_placed(coords, landmarks, graph, params, epochs)
