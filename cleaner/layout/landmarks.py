"""The arithmetic of the landmark layout, in numpy only: which rows are landmarks, how strongly each row belongs to
its neighbours, and where every other row goes once the landmarks have their places.

The UMAP steps around it live in cleaner/layout/layouts.py (`landmark_layout`). Everything here is a plain
function of arrays (seeded, no threads, no numba), so it can run on any machine holding a slice of the rows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose_landmarks", "membership_strengths", "nearest_rows", "place_from_neighbours"]

_BISECTION_STEPS = 32  # halvings of log(sigma): ample for weights that only ever enter a weighted mean
_CHUNK_ROWS = 131_072  # rows placed per block, so the gathered neighbour coordinates stay ~20 MB


def choose_landmarks(n_rows: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct rows, sorted, drawn uniformly with `seed`: every class keeps its share of the landmarks.

    The layout's cache key is the embeddings' digest and the map settings, not the labels or the scores (a cleaned
    NPZ with new labels has the same embeddings and gets the same map), so the sample may depend on neither.
    """
    if count >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    rows = np.random.default_rng(seed).choice(n_rows, size=count, replace=False)
    rows.sort()
    return rows.astype(np.int64)


def membership_strengths(distances: np.ndarray, n_neighbors: int) -> np.ndarray:
    """UMAP's directed membership strength of each row's neighbours: exp(-(d - rho) / sigma), with rho the distance to
    the nearest neighbour (first positive one) and sigma chosen so that each row's strengths sum to log2(n_neighbors)
    (umap-learn's smooth_knn_dist, vectorised). `distances` holds the neighbours only, not the row itself;
    the first `n_neighbors - 1` columns are used, as UMAP does with `n_neighbors` counting the point itself."""
    d = np.asarray(distances[:, : max(1, n_neighbors - 1)], dtype=np.float32)
    if d.size == 0:
        return np.zeros_like(d)
    positive = np.where(d > 0, d, np.inf)
    rho = positive.min(axis=1, keepdims=True)
    rho[~np.isfinite(rho)] = 0.0
    excess = np.maximum(d - rho, 0.0)
    target = np.log2(max(n_neighbors, 2))
    # Bisection on log(sigma): the sum grows with sigma, from (number of zero excesses) towards the column count.
    scale = np.maximum(excess.mean(axis=1, keepdims=True), 1e-12)
    low, high = np.log(scale * 1e-4), np.log(scale * 1e4)
    for _ in range(_BISECTION_STEPS):
        mid = (low + high) / 2
        total = np.exp(-excess / np.exp(mid)).sum(axis=1, keepdims=True)
        too_much = total > target
        high = np.where(too_much, mid, high)
        low = np.where(too_much, low, mid)
    return np.exp(-excess / np.exp((low + high) / 2)).astype(np.float32)


def place_from_neighbours(
    landmark_coords: np.ndarray, landmarks: np.ndarray, indices: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every row's coordinates: the landmarks' own, then, in rounds, each row with placed neighbours at their mean
    weighted by membership strength (rows placed in a round are used from the next round on, so the result does not
    depend on the order of the rows).

    Returns (coords [N, d] float32, placed [N] bool); rows with no path to a landmark through the graph stay
    unplaced (coordinates 0) for the caller to put somewhere.
    """
    n, dims = indices.shape[0], landmark_coords.shape[1]
    coords = np.zeros((n, dims), dtype=np.float32)
    placed = np.zeros(n, dtype=bool)
    coords[landmarks] = landmark_coords
    placed[landmarks] = True
    indices = indices[:, : weights.shape[1]]
    pending = np.flatnonzero(~placed)
    while pending.size:
        new_rows, new_coords, still = [], [], []
        for start in range(0, pending.size, _CHUNK_ROWS):
            rows = pending[start : start + _CHUNK_ROWS]
            nbrs = indices[rows]
            w = weights[rows] * placed[nbrs]
            total = w.sum(axis=1)
            ok = total > 0
            if ok.any():
                mean = np.einsum("ij,ijk->ik", w[ok], coords[nbrs[ok]], dtype=np.float64) / total[ok, None]
                new_rows.append(rows[ok])
                new_coords.append(mean.astype(np.float32))
            still.append(rows[~ok])
        if not new_rows:
            break
        for rows, values in zip(new_rows, new_coords, strict=True):  # after the round: none sees a same-round place
            coords[rows] = values
            placed[rows] = True
        pending = np.concatenate(still)
    return coords, placed


def nearest_rows(queries: np.ndarray, candidates: np.ndarray, metric: str, block: int = 4096) -> np.ndarray:
    """For each query row, the index of its nearest candidate row (cosine or euclidean), exactly, block by block."""
    q = np.asarray(queries, dtype=np.float32)
    c = np.asarray(candidates, dtype=np.float32)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        c_sq = np.zeros(len(c), dtype=np.float32)  # argmax of the dot product
    else:
        c_sq = np.einsum("ij,ij->i", c, c)
    out = np.empty(len(q), dtype=np.int64)
    for start in range(0, len(q), block):
        score = c_sq[None, :] - 2.0 * (q[start : start + block] @ c.T)  # squared distance up to a per-row constant
        out[start : start + block] = score.argmin(axis=1)
    return out
