"""Low-dimensional layouts of the embeddings: UMAP on the shared neighbour graph, PCA as a quick preview.

Small data (below LARGE_MIN_ROWS rows) gets umap-learn's defaults with a fixed seed: reproducible, and the
layouts shipped for the demo stay valid. Large data gets what bench/scale.py measured to be several times
faster at the same neighbourhood preservation: a PCA start instead of the spectral one, the optimisation
on all cores (umap-learn runs single-threaded whenever a seed is set) and large_data_epochs() epochs.

Data of LANDMARK_MIN_ROWS rows or more gets the landmark layout (`landmark_layout`): UMAP on a seeded sample of
LANDMARK_COUNT rows, every other row placed from its placed neighbours in the shared graph (cleaner/layout/landmarks.py),
then a few epochs of umap-learn's own optimisation of all rows from there. Its layouts are stored under a name of
their own (`layout_algorithm`), so no layout of the whole-data algorithm is ever served for it, nor the reverse.

The seam for bigger engines is `LayoutFunction`: anything called as `layout(embeddings, graph, params)` that
returns [N, params.n_components] float32 coordinates. `LayoutService(store, layout=...)` runs it instead of
`umap_layout`; a GPU layout (cuML's UMAP takes the same precomputed kNN graph) is one such function.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cleaner.graph.neighbours import NeighbourGraph, neighbour_graph, numba_guard
from cleaner.layout.landmarks import choose_landmarks, membership_strengths, nearest_rows, place_from_neighbours
from cleaner.layout.numba_cache import cache_umap_kernels, kernel_cache_dir, use_numba_cache
from cleaner.server.diskcache import store_file
from cleaner.server.limits import CACHE_MAX_BYTES

__all__ = [  # kernel_cache_dir and use_numba_cache: cleaner.layout.service imports them from here
    "LANDMARK_MIN_ROWS",
    "LARGE_MIN_ROWS",
    "PACKAGED_LAYOUTS",
    "LayoutFunction",
    "LayoutParams",
    "LayoutProgress",
    "LayoutStore",
    "compile_kernels",
    "full_umap_layout",
    "kernel_cache_dir",
    "landmark_layout",
    "large_data_epochs",
    "cluster_layout_algorithm",
    "known_layout_algorithms",
    "layout_algorithm",
    "pca_projection",
    "refine_placed",
    "umap_layout",
    "use_numba_cache",
]

PACKAGED_LAYOUTS = Path(__file__).parent / "assets" / "layouts"
LARGE_MIN_ROWS = 10_000
# Epochs for large data: 200 (umap-learn's own choice above 10k rows) up to 50k rows, then fewer, down to 100 at
# 100k, where bench/scale.py measured about half the time for nearly the same kNN preservation (within the spread
# of plain umap-learn's own runs). At 20k, 100 epochs would lose more preservation than the second or so it saves.
LARGE_EPOCH_BUDGET = 10_000_000  # epochs x rows
LARGE_EPOCHS_RANGE = (100, 200)
UMAP_SMALL_DATA_ROWS = 4096  # umap-learn's own small-data bound

# The landmark layout (measured with bench/scale.py; the figures are in docs/performance.md).
LANDMARK_MIN_ROWS = 100_000  # from here on the map is UMAP on landmarks, every other row placed from its neighbours
LANDMARK_COUNT = 30_000  # rows laid out by UMAP itself
LANDMARK_EPOCHS = 100  # of UMAP on the landmarks
LANDMARK_REFINE_EPOCHS = 10  # then umap-learn's optimiser on every row, from the placed start (0: none)
LANDMARK_REFINE_LEARNING_RATE = 0.1  # gently: a full rate pulls the placed start apart again
LANDMARK_VERSION = 1  # part of the stored layouts' names: bump whenever the landmark layout changes its output


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


_PCA_BLOCK_ROWS = 16_384  # rows centred at a time: a centred copy of all rows would double the embeddings' memory


def _project(embeddings: np.ndarray, n_components: int) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    mean = x.mean(axis=0, keepdims=True)
    blocks = range(0, len(x), _PCA_BLOCK_ROWS)
    # The DxD covariance is cheap for any N; its eigenvectors are the principal axes.
    cov = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for start in blocks:
        centered = x[start : start + _PCA_BLOCK_ROWS] - mean
        cov += centered.T @ centered
    _, vecs = np.linalg.eigh(cov)
    axes = vecs[:, ::-1][:, :n_components].astype(np.float32)
    out = np.empty((len(x), n_components), dtype=np.float32)
    for start in blocks:
        out[start : start + _PCA_BLOCK_ROWS] = (x[start : start + _PCA_BLOCK_ROWS] - mean) @ axes
    return out


def _scaled(projection: np.ndarray) -> np.ndarray:
    scale = np.abs(projection).max() or 1.0
    return np.ascontiguousarray(projection / scale * 10.0, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class LayoutProgress:
    """Which step of a layout runs, and the map as far as it is known: `coords` [len(rows), d] are the places of
    `rows` (sorted row numbers; None: every row), or None while no place is known yet."""

    step: str  # "landmarks", "placing", "refining" (the landmark layout's steps, in that order)
    text: str  # the step in a person's words: "Laying out 30,000 landmarks"
    coords: np.ndarray | None = None
    rows: np.ndarray | None = None


# The seam for other layout engines: called as layout(embeddings, graph, params); a function that also takes a
# `progress` keyword is called with one (LayoutService publishes its reports as the page's partial map).
LayoutFunction = Callable[[np.ndarray, NeighbourGraph, "LayoutParams"], np.ndarray]
LayoutReport = Callable[[LayoutProgress], None]


def umap_layout(
    embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams, progress: LayoutReport | None = None
) -> np.ndarray:
    """UMAP layout that reuses the precomputed neighbour graph instead of searching again: on every row below
    LANDMARK_MIN_ROWS rows, on landmarks from there on (reporting each step and its partial map to `progress`)."""
    if len(embeddings) >= LANDMARK_MIN_ROWS:
        return landmark_layout(embeddings, graph, params, progress=progress)
    return full_umap_layout(embeddings, graph, params)


def full_umap_layout(embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams) -> np.ndarray:
    """UMAP's optimisation over every row (the layout of all data before the landmark layout; bench/scale.py
    measures both)."""
    return _umap(embeddings, graph, params, large=len(embeddings) >= LARGE_MIN_ROWS)


def layout_algorithm(n_rows: int) -> str:
    """Which algorithm lays out `n_rows` rows here: part of a stored layout's name (LayoutStore.file_name)."""
    return f"landmarks{LANDMARK_VERSION}" if n_rows >= LANDMARK_MIN_ROWS else "umap"


def cluster_layout_algorithm() -> str:
    """The name of the maps `cleaner scan --dask` computes (cleaner/distributed/layout.py): the landmark layout's
    steps spread over workers (its refinement on one worker, and skipped outside the sizes that fit there), so not
    the same maps as `landmark_layout`'s."""
    return f"landmarks{LANDMARK_VERSION}-cluster"


def known_layout_algorithms() -> frozenset[str]:
    """The algorithm names this version can store and serve a layout under; any other (an older landmark version, a
    name read from a file) is never served."""
    return frozenset({"umap", f"landmarks{LANDMARK_VERSION}", cluster_layout_algorithm()})


@dataclass(frozen=True, eq=False)
class LandmarkPlan:
    """What the 3D and the 2D landmark maps of one dataset share: the landmarks, their own kNN graph, and the
    membership strengths of every row's neighbours in the shared graph."""

    rows: np.ndarray  # [L] sorted row numbers of the landmarks
    graph: NeighbourGraph  # the landmarks' nearest landmarks (indices into rows)
    weights: np.ndarray  # [N, n_neighbors - 1] membership strengths of the shared graph's first columns
    seconds: dict = field(default_factory=dict)


_plan_lock = threading.Lock()
_plans: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # shared graph -> {settings: LandmarkPlan}


def landmark_plan(
    embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams, count: int | None = None
) -> LandmarkPlan:
    """The landmarks of this graph and the weights to place the rest: found once per graph (held while the graph
    is), so the 2D map after the 3D one costs only its own UMAP on the landmarks, its placement and refinement."""
    count = LANDMARK_COUNT if count is None else count
    n_neighbors = _n_neighbors(params, graph)
    key = (len(embeddings), n_neighbors, params.seed, count)
    with _plan_lock:
        known = _plans.setdefault(graph, {})
        if key not in known:
            t0 = time.perf_counter()
            rows = choose_landmarks(len(embeddings), count, params.seed)
            # The landmarks' own neighbours: a sample's neighbours are mostly not in the sample, so the shared
            # graph restricted to it would leave each landmark a handful of edges (fewer the larger the data).
            sub = neighbour_graph(
                np.ascontiguousarray(embeddings[rows]), k=min(n_neighbors - 1, len(rows) - 1), metric=graph.metric
            )
            t1 = time.perf_counter()
            weights = membership_strengths(graph.distances, n_neighbors)
            known[key] = LandmarkPlan(
                rows, sub, weights, {"landmark_graph": t1 - t0, "weights": time.perf_counter() - t1}
            )
        return known[key]


def landmark_layout(
    embeddings: np.ndarray,
    graph: NeighbourGraph,
    params: LayoutParams,
    *,
    count: int | None = None,
    refine_epochs: int | None = None,
    timings: dict | None = None,
    progress: LayoutReport | None = None,
) -> np.ndarray:
    """UMAP on a seeded sample of landmarks (their own kNN graph, the PCA start of the preview), every other row
    placed at the membership-weighted mean of its placed neighbours in the shared graph, in rounds; a row with no
    path to a landmark goes to its nearest landmark in the embedding space, with a little seeded jitter. Then
    `refine_epochs` epochs of umap-learn's optimiser on the whole graph from there.

    Seeded throughout where one core runs it (landmarks, placement, jitter, and UMAP's own randomness when numba
    has one thread); on several cores UMAP's optimisation runs on all of them, unseeded, as the whole-data path.

    `progress`, if given, hears of each step as it starts, with the map so far: none while the landmarks are laid
    out, the landmarks' places while the other rows are placed, every row's place (before refinement) while refining.
    """
    if graph.metric != params.metric:
        raise ValueError(f"graph metric {graph.metric!r} differs from layout metric {params.metric!r}")
    refine_epochs = LANDMARK_REFINE_EPOCHS if refine_epochs is None else refine_epochs
    timings = {} if timings is None else timings
    report = progress or (lambda _: None)
    count = LANDMARK_COUNT if count is None else count
    report(LayoutProgress("landmarks", f"Laying out {min(count, len(embeddings)):,} landmarks"))
    t0 = time.perf_counter()
    plan = landmark_plan(embeddings, graph, params, count)
    timings.update(plan.seconds)
    t1 = time.perf_counter()
    timings["plan"] = t1 - t0
    start = pca_projection(embeddings, params.n_components)[plan.rows]  # the page's preview, already computed
    seed = _umap_seed(params)
    landmark_coords = _fit(
        start,
        plan.graph.with_self(),
        params,
        _n_neighbors(params, plan.graph),
        init=start,
        n_epochs=LANDMARK_EPOCHS,
        random_state=seed,
    )
    t2 = time.perf_counter()
    timings["landmark_umap"] = t2 - t1
    others = len(embeddings) - len(plan.rows)
    if others:
        landmark_coords.setflags(write=False)  # shared with whoever shows the partial map meanwhile
        report(
            LayoutProgress(
                "placing", f"Placing the other {others:,} images from their neighbours", landmark_coords, plan.rows
            )
        )
    coords, placed = place_from_neighbours(landmark_coords, plan.rows, graph.indices, plan.weights)
    rng = np.random.default_rng(params.seed)
    if not placed.all():
        lost = np.flatnonzero(~placed)
        near = plan.rows[nearest_rows(embeddings[lost], embeddings[plan.rows], graph.metric)]
        coords[lost] = coords[near] + rng.normal(
            scale=_jitter_scale(landmark_coords), size=(len(lost), coords.shape[1])
        )
    timings["unplaced"] = int((~placed).sum())
    t3 = time.perf_counter()
    timings["placement"] = t3 - t2
    if refine_epochs > 0 and progress is not None:
        placed_map = coords.copy()  # the partial map the page shows must not move while the refinement runs
        placed_map.setflags(write=False)
        progress(LayoutProgress("refining", "Refining the map of every image", placed_map))
    coords = refine_placed(coords, plan.rows, graph, params, refine_epochs, rng)
    timings["refine"] = time.perf_counter() - t3
    return np.ascontiguousarray(coords, dtype=np.float32)


def refine_placed(
    coords: np.ndarray,
    landmarks: np.ndarray,
    graph: NeighbourGraph,
    params: LayoutParams,
    epochs: int = LANDMARK_REFINE_EPOCHS,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The landmark layout's last step: `epochs` epochs of umap-learn's optimiser over the whole graph, from the
    placed coordinates (landmarks at `landmarks`). Also what the distributed layout runs on one worker."""
    if epochs <= 0:
        return coords
    rng = np.random.default_rng(params.seed) if rng is None else rng
    # A little jitter on the placed rows: rows placed from the same neighbours would start on one spot, which
    # umap-learn would first find with a KD-tree over all rows.
    coords = np.array(coords, dtype=np.float32)
    others = np.setdiff1d(np.arange(len(coords)), landmarks, assume_unique=True)
    coords[others] += rng.normal(scale=_jitter_scale(coords[landmarks]) * 0.1, size=(len(others), coords.shape[1]))
    n_neighbors = _n_neighbors(params, graph)
    return _fit(
        coords,
        _cut(graph.with_self(), n_neighbors),
        params,
        n_neighbors,
        init=coords,
        n_epochs=epochs,
        learning_rate=LANDMARK_REFINE_LEARNING_RATE,
        random_state=_umap_seed(params),
    )


def _jitter_scale(coords: np.ndarray) -> float:
    """A hundredth of the landmark map's typical spread: small beside any cluster, but separates coinciding rows."""
    return float(np.median(coords.std(axis=0))) * 0.01 or 1e-3


def _umap_seed(params: LayoutParams) -> int | None:
    """Seeded where numba has one thread (umap-learn runs single-threaded whenever seeded); all cores otherwise."""
    import numba

    return params.seed if numba.get_num_threads() == 1 else None


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


def _n_neighbors(params: LayoutParams, graph: NeighbourGraph) -> int:
    return max(2, min(params.n_neighbors, graph.k + 1))


def _cut(knn: tuple[np.ndarray, np.ndarray], n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    # umap-learn cuts the graph to n_neighbors columns itself from UMAP_SMALL_DATA_ROWS rows on (below, it uses
    # every column); cutting it here keeps the arrays contiguous, the kind warm_up compiled the kernels for.
    return tuple(np.ascontiguousarray(a[:, :n_neighbors]) for a in knn)


def _umap(embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams, large: bool) -> np.ndarray:
    if graph.metric != params.metric:
        raise ValueError(f"graph metric {graph.metric!r} differs from layout metric {params.metric!r}")
    if large:
        init = pca_projection(embeddings, params.n_components)
        # umap-learn reads the rows only for its own neighbour search and its own start, and we supply
        # both: hand it the small start instead of N x D floats it would copy and hash for nothing.
        data, options = init, dict(init=init, random_state=None, n_epochs=large_data_epochs(len(embeddings)))
    else:
        data, options = np.asarray(embeddings, dtype=np.float32), dict(random_state=params.seed)
    n_neighbors = _n_neighbors(params, graph)
    knn = graph.with_self()
    if len(embeddings) >= UMAP_SMALL_DATA_ROWS:
        knn = _cut(knn, n_neighbors)
    return _fit(data, knn, params, n_neighbors, **options)


def _fit(
    data: np.ndarray, knn: tuple[np.ndarray, np.ndarray], params: LayoutParams, n_neighbors: int, **options
) -> np.ndarray:
    """umap-learn's fit_transform on a precomputed kNN graph (rows starting with the point itself)."""
    import umap  # heavy (numba); imported only when a layout must really be computed

    cache_umap_kernels()
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
    def file_name(embedding_digest: str, params: LayoutParams, n_rows: int = 0, algorithm: str | None = None) -> str:
        """The stored layout's name. The landmark layouts' names carry their algorithm and version: a layout the
        whole-data UMAP stored before is never served as a landmark layout, nor one of an older landmark version.
        UMAP's names are as before, so the packaged demo layouts and earlier caches stay valid.

        `algorithm` (one of known_layout_algorithms()) names a layout made by another algorithm than the one this
        version uses for `n_rows` rows: a precomputed one, served under the name of what made it."""
        algorithm = layout_algorithm(n_rows) if algorithm is None else algorithm
        if algorithm not in known_layout_algorithms():
            raise ValueError(f"unknown layout algorithm {algorithm!r}")
        tag = "" if algorithm == "umap" else f"_{algorithm}"
        return f"{embedding_digest}_{params.key()}{tag}.npy"

    def get(
        self, embedding_digest: str, params: LayoutParams, n_rows: int, algorithm: str | None = None
    ) -> np.ndarray | None:
        name = self.file_name(embedding_digest, params, n_rows, algorithm)
        for folder in (self.folder, self.packaged):
            path = folder / name
            try:
                arr = np.load(path, allow_pickle=False)  # our own cache files, still never pickled
            except Exception:  # a damaged or foreign file (EOFError, a zip, ...) is a cache miss
                continue
            if (
                isinstance(arr, np.ndarray)
                and arr.dtype.kind == "f"
                and arr.shape == (n_rows, params.n_components)
                and np.isfinite(arr).all()
            ):
                if folder == self.folder:
                    with contextlib.suppress(OSError):  # evicted by another process meanwhile; we hold the data
                        os.utime(path)  # recently used layouts are evicted last
                return arr.astype(np.float32, copy=False)
        return None

    def put(
        self, embedding_digest: str, params: LayoutParams, coords: np.ndarray, algorithm: str | None = None
    ) -> None:
        store_file(
            self.folder,
            self.file_name(embedding_digest, params, len(coords), algorithm),
            lambda fh: np.save(fh, np.asarray(coords, dtype=np.float32), allow_pickle=False),
            "*.npy",
            self.max_bytes,
        )
