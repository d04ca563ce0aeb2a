"""Low-dimensional layouts of the embeddings: UMAP on the shared neighbour graph, PCA as a quick preview."""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .neighbours import NeighbourGraph

PACKAGED_LAYOUTS = Path(__file__).parent / "assets" / "layouts"


@dataclass(frozen=True)
class LayoutParams:
    """Everything besides the embeddings that decides a layout: the cache key."""

    n_components: int = 3
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    seed: int = 42

    def key(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def pca_projection(embeddings: np.ndarray, n_components: int = 3) -> np.ndarray:
    """Project onto the top principal components: a layout in well under a second, even at 100k rows."""
    x = np.asarray(embeddings, dtype=np.float32)
    centered = x - x.mean(axis=0, keepdims=True)
    # The DxD covariance is cheap for any N; its eigenvectors are the principal axes.
    cov = centered.T @ centered
    _, vecs = np.linalg.eigh(cov.astype(np.float64))
    axes = vecs[:, ::-1][:, :n_components].astype(np.float32)
    out = centered @ axes
    scale = np.abs(out).max() or 1.0
    return np.ascontiguousarray(out / scale * 10.0, dtype=np.float32)


def umap_layout(embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams) -> np.ndarray:
    """UMAP layout that reuses the precomputed neighbour graph instead of searching again."""
    import umap  # heavy (numba); imported only when a layout must really be computed

    n_neighbors = max(2, min(params.n_neighbors, graph.k + 1))
    if graph.metric != params.metric:
        raise ValueError(f"graph metric {graph.metric!r} differs from layout metric {params.metric!r}")
    reducer = umap.UMAP(
        n_components=params.n_components,
        n_neighbors=n_neighbors,
        min_dist=params.min_dist,
        metric=params.metric,
        random_state=params.seed,
        precomputed_knn=graph.with_self(),
        low_memory=True,
    )
    with warnings.catch_warnings():
        # Both are expected here: a fixed seed runs single-threaded, and we pass no search index.
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        coords = reducer.fit_transform(np.asarray(embeddings, dtype=np.float32))
    return np.ascontiguousarray(coords, dtype=np.float32)


class LayoutStore:
    """Layouts on disk keyed by (embedding digest, params), so a restart or another user gets them at once."""

    def __init__(self, folder: Path, max_bytes: int = 2 * 1024**3, packaged: Path = PACKAGED_LAYOUTS):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.packaged = Path(packaged)

    @staticmethod
    def file_name(embedding_digest: str, params: LayoutParams) -> str:
        return f"{embedding_digest}_{params.key()}.npy"

    def get(self, embedding_digest: str, params: LayoutParams, n_rows: int) -> np.ndarray | None:
        name = self.file_name(embedding_digest, params)
        for folder in (self.folder, self.packaged):
            path = folder / name
            try:
                arr = np.load(path, allow_pickle=False)  # our own cache files, still never pickled
            except (OSError, ValueError):
                continue
            if arr.shape == (n_rows, params.n_components) and np.isfinite(arr).all():
                if folder == self.folder:
                    os.utime(path)  # recently used layouts are evicted last
                return arr.astype(np.float32, copy=False)
        return None

    def put(self, embedding_digest: str, params: LayoutParams, coords: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.asarray(coords, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, self.folder / self.file_name(embedding_digest, params))
            self._evict()
        except OSError:
            pass  # a cache that cannot be written only costs time, never correctness

    def _evict(self) -> None:
        files = sorted(self.folder.glob("*.npy"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
