"""The k-nearest-neighbour graph of the embeddings: computed once, shared by the layout, selection and scores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("cosine", "euclidean")
# Above this many rows the exact O(N^2) search is slower than pynndescent (see bench/knn_threshold.py).
EXACT_MAX_ROWS = 20_000
_BLOCK = 1024


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


def exact_neighbours(embeddings: np.ndarray, k: int, metric: str = "cosine") -> NeighbourGraph:
    """Exact kNN by blockwise float32 matrix products (fast and simple for small N)."""
    x = _prepare(embeddings, metric)
    n = x.shape[0]
    k = min(k, n - 1)
    sq = np.einsum("ij,ij->i", x, x)
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        # squared euclidean; for unit vectors 1 - cos = d^2 / 2
        d2 = sq[start:stop, None] + sq[None, :] - 2.0 * (x[start:stop] @ x.T)
        np.maximum(d2, 0.0, out=d2)
        rows = np.arange(stop - start)
        d2[rows, start + rows] = np.inf  # never your own neighbour
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        part_d = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
        best = np.take_along_axis(part_d, order, axis=1)
        distances[start:stop] = best / 2.0 if metric == "cosine" else np.sqrt(best)
    return NeighbourGraph(indices=indices, distances=distances, metric=metric, exact=True)


def approximate_neighbours(embeddings: np.ndarray, k: int, metric: str = "cosine", seed: int = 42) -> NeighbourGraph:
    """Approximate kNN with pynndescent, for large N."""
    from pynndescent import NNDescent  # heavy import (numba); only on this path

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = x.shape[0]
    k = min(k, n - 1)
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


def neighbour_graph(embeddings: np.ndarray, k: int = 20, metric: str = "cosine") -> NeighbourGraph:
    """The kNN graph, exact for small N and approximate above EXACT_MAX_ROWS."""
    if embeddings.shape[0] <= EXACT_MAX_ROWS:
        return exact_neighbours(embeddings, k, metric)
    return approximate_neighbours(embeddings, k, metric)
