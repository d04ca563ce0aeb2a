"""Low-dimensional layouts of the embeddings: UMAP on the shared neighbour graph, PCA as a quick preview.

Small data (below LARGE_MIN_ROWS rows) gets umap-learn's defaults with a fixed seed: reproducible, and the
layouts shipped for the demo stay valid. Large data gets what bench/scale.py measured to be several times
faster at the same neighbourhood preservation: a PCA start instead of the spectral one, the optimisation
on all cores (umap-learn runs single-threaded whenever a seed is set) and large_data_epochs() epochs.

The seam for bigger engines is `LayoutFunction`: anything called as `layout(embeddings, graph, params)` that
returns [N, params.n_components] float32 coordinates. `LayoutService(store, layout=...)` runs it instead of
`umap_layout`; a GPU layout (cuML's UMAP takes the same precomputed kNN graph) is one such function.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import warnings
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cleaner.graph.neighbours import NeighbourGraph, numba_guard
from cleaner.layout.numba_cache import cache_umap_kernels, kernel_cache_dir, use_numba_cache
from cleaner.server.diskcache import store_file
from cleaner.server.limits import CACHE_MAX_BYTES

__all__ = [  # kernel_cache_dir and use_numba_cache: cleaner.layout.service imports them from here
    "LARGE_MIN_ROWS", "PACKAGED_LAYOUTS", "LayoutFunction", "LayoutParams", "LayoutStore", "compile_kernels", "kernel_cache_dir",
    "large_data_epochs", "pca_projection", "umap_layout", "use_numba_cache",
]

PACKAGED_LAYOUTS = Path(__file__).parent / "assets" / "layouts"
LARGE_MIN_ROWS = 10_000
# Epochs for large data: 200 (umap-learn's own choice above 10k rows) up to 50k rows, then fewer, down to 100 at
# 100k, where bench/scale.py measured about half the time for nearly the same kNN preservation (within the spread
# of plain umap-learn's own runs). At 20k, 100 epochs would lose more preservation than the second or so it saves.
LARGE_EPOCH_BUDGET = 10_000_000  # epochs x rows
LARGE_EPOCHS_RANGE = (100, 200)
UMAP_SMALL_DATA_ROWS = 4096  # umap-learn's own small-data bound


@dataclass(frozen=True)
class LayoutParams:
    """Everything besides the embeddings that decides a layout: the cache key."""

    n_components: int = 3
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    seed: int = 42  # used below LARGE_MIN_ROWS only: the large-data path runs unseeded on all cores

    def key(self) -> str:
        text = ",".join(f"{k}={v}" for k, v in sorted(asdict(self).items()))
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


_PCA_COMPONENTS = 3  # the most any map needs; fewer are the leading columns of the same projection
_pca_lock = threading.Lock()
_pca_memo: dict[int, tuple[weakref.ref, np.ndarray]] = {}  # id(array) -> (weak ref to it, its projection)


def pca_projection(embeddings: np.ndarray, n_components: int = 3) -> np.ndarray:
    """Project onto the top principal components: a layout in well under a second, even at 100k rows.

    The preview and both large-data UMAP starts ask for the same projection of the same array; it is computed
    once per array (held by weak reference, so a dropped dataset is not kept alive).
    """
    if n_components > _PCA_COMPONENTS or not isinstance(embeddings, np.ndarray):
        return _scaled(_project(embeddings, n_components))
    with _pca_lock:
        for key, (ref, _) in list(_pca_memo.items()):
            if ref() is None:
                del _pca_memo[key]
        memo = _pca_memo.get(id(embeddings))
        if memo is None or memo[0]() is not embeddings:
            memo = (weakref.ref(embeddings), _project(embeddings, _PCA_COMPONENTS))
            _pca_memo[id(embeddings)] = memo
    return _scaled(memo[1][:, :n_components])


def _project(embeddings: np.ndarray, n_components: int) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    centered = x - x.mean(axis=0, keepdims=True)
    # The DxD covariance is cheap for any N; its eigenvectors are the principal axes.
    cov = centered.T @ centered
    _, vecs = np.linalg.eigh(cov.astype(np.float64))
    axes = vecs[:, ::-1][:, :n_components].astype(np.float32)
    return centered @ axes


def _scaled(projection: np.ndarray) -> np.ndarray:
    scale = np.abs(projection).max() or 1.0
    return np.ascontiguousarray(projection / scale * 10.0, dtype=np.float32)


LayoutFunction = Callable[[np.ndarray, NeighbourGraph, "LayoutParams"], np.ndarray]


def umap_layout(embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams) -> np.ndarray:
    """UMAP layout that reuses the precomputed neighbour graph instead of searching again."""
    return _umap(embeddings, graph, params, large=len(embeddings) >= LARGE_MIN_ROWS)


def large_data_epochs(n_rows: int) -> int:
    """Optimisation epochs for the large-data path: a fixed budget of row-epochs, within LARGE_EPOCHS_RANGE."""
    low, high = LARGE_EPOCHS_RANGE
    return int(np.clip(round(LARGE_EPOCH_BUDGET / max(n_rows, 1)), low, high))


def compile_kernels() -> None:
    """Run both layout paths on a tiny graph, so numba compiles (or loads from its disk cache) every kernel
    a real layout needs, of the same types, now rather than on a user's first layout."""
    from cleaner.graph.neighbours import exact_neighbours

    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    graph = exact_neighbours(x, 10, "cosine")
    for large in (False, True):
        _umap(x, graph, LayoutParams(n_neighbors=10), large=large)


def _umap(embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams, large: bool) -> np.ndarray:
    import umap  # heavy (numba); imported only when a layout must really be computed

    cache_umap_kernels()
    n_neighbors = max(2, min(params.n_neighbors, graph.k + 1))
    if graph.metric != params.metric:
        raise ValueError(f"graph metric {graph.metric!r} differs from layout metric {params.metric!r}")
    if large:
        init = pca_projection(embeddings, params.n_components)
        # umap-learn reads the rows only for its own neighbour search and its own start, and we supply
        # both: hand it the small start instead of N x D floats it would copy and hash for nothing.
        data, options = init, dict(init=init, random_state=None, n_epochs=large_data_epochs(len(embeddings)))
    else:
        data, options = np.asarray(embeddings, dtype=np.float32), dict(random_state=params.seed)
    knn = graph.with_self()
    if len(embeddings) >= UMAP_SMALL_DATA_ROWS:
        # umap-learn cuts the graph to n_neighbors columns itself from here on (below, it uses every column);
        # cutting it here keeps the arrays contiguous, the kind warm_up compiled the kernels for.
        knn = tuple(np.ascontiguousarray(a[:, :n_neighbors]) for a in knn)
    reducer = umap.UMAP(
        n_components=params.n_components,
        n_neighbors=n_neighbors,
        min_dist=params.min_dist,
        metric=params.metric,
        precomputed_knn=knn,
        low_memory=True,
        **options,
    )
    with warnings.catch_warnings(), numba_guard():
        # Both are expected here: a fixed seed runs single-threaded, and we pass no search index.
        warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        coords = reducer.fit_transform(data)
    return np.ascontiguousarray(coords, dtype=np.float32)


class LayoutStore:
    """Layouts on disk keyed by (embedding digest, params), so a restart or another user gets them at once."""

    def __init__(self, folder: Path, max_bytes: int = CACHE_MAX_BYTES, packaged: Path = PACKAGED_LAYOUTS):
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
            except Exception:  # a damaged or foreign file (EOFError, a zip, ...) is a cache miss
                continue
            if (isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and arr.shape == (n_rows, params.n_components)
                    and np.isfinite(arr).all()):
                if folder == self.folder:
                    with contextlib.suppress(OSError):  # evicted by another process meanwhile; we hold the data
                        os.utime(path)  # recently used layouts are evicted last
                return arr.astype(np.float32, copy=False)
        return None

    def put(self, embedding_digest: str, params: LayoutParams, coords: np.ndarray) -> None:
        store_file(self.folder, self.file_name(embedding_digest, params),
                   lambda fh: np.save(fh, np.asarray(coords, dtype=np.float32), allow_pickle=False), "*.npy",
                   self.max_bytes)
