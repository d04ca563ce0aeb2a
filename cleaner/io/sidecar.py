"""The heavy step done elsewhere: `DATA.cleaner.npz` next to `DATA.npz` holds its neighbour graph and its maps.

`python -m cleaner scan DATA.npz --precompute` writes it (on any machine); the app uses it instead of computing. The
file is read like any user file: bounded, never unpickled, every array's header checked before its data is read,
every value checked before use. One made for other embeddings (the NPZ changed since), for other settings, or
changed by hand is refused with a reason and never trusted.

Each map carries the name of the algorithm that made it (`layout_algorithm_3`, `_2`; format 2): the app serves a map
under that name only, never as the output of another algorithm. A sidecar of format 1 (no names: its maps may come
from the whole-data UMAP or from an earlier landmark layout, nothing tells which) or one naming an algorithm this
version does not know still gives its neighbour graph; its maps are computed again, and `Precomputed.maps_ignored`
says why.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cleaner.graph.neighbours import GRAPH_VERSION, NeighbourGraph
from cleaner.io.dataset_types import DatasetError
from cleaner.io.npz_source import read_source
from cleaner.io.npz_zip import open_zip, read_member
from cleaner.layout.layouts import LayoutParams, known_layout_algorithms
from cleaner.server.errors import CleanerError

SIDECAR_SUFFIX = ".cleaner.npz"
SIDECAR_FORMAT = 2
_READABLE_FORMATS = (1, 2)  # 1: the maps carry no algorithm name (only the graph is used)
_TEXT_KEYS = ("format", "embedding_digest", "graph_metric", "layout_key_3", "layout_key_2")
_ALGORITHM_KEYS = ("layout_algorithm_3", "layout_algorithm_2")


class SidecarProblem(CleanerError, ValueError):
    """Why a sidecar cannot be used, worded for the person who made it."""


@dataclass(frozen=True, eq=False)
class Precomputed:
    """What a sidecar holds for one dataset: the graph, and each map by the key of the settings it was made with."""

    graph: NeighbourGraph
    layouts: dict[str, np.ndarray]  # LayoutParams.key() -> [N, 2 or 3] float32
    algorithms: dict[str, str] = field(default_factory=dict)  # LayoutParams.key() -> the algorithm that made it
    maps_ignored: str = ""  # why the sidecar's maps are not used (then `layouts` is empty), for the person

    def layout(self, params: LayoutParams) -> np.ndarray | None:
        return self.layouts.get(params.key())

    def algorithm(self, params: LayoutParams) -> str | None:
        """The name of the algorithm that made the map for `params` (one of known_layout_algorithms()), if any."""
        return self.algorithms.get(params.key())


def sidecar_path(npz_path: str | os.PathLike) -> Path:
    """DATA.npz -> DATA.cleaner.npz, in the same folder."""
    path = Path(npz_path)
    stem = path.name[:-4] if path.name.lower().endswith(".npz") else path.name
    return path.with_name(stem + SIDECAR_SUFFIX)


def sidecar_bytes(
    embedding_digest: str,
    graph: NeighbourGraph,
    layouts: dict[int, tuple[LayoutParams, np.ndarray]],
    algorithm: str,
) -> bytes:
    """The sidecar of one dataset: its graph and its 3D and 2D maps (`layouts[n_components] = (params, coords)`),
    both made by `algorithm` (layout_algorithm(n) for the maps umap_layout computed, cluster_layout_algorithm() for
    the cluster's)."""
    if algorithm not in known_layout_algorithms():
        raise ValueError(f"unknown layout algorithm {algorithm!r}")
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        format=np.array(f"cleaner-sidecar-{SIDECAR_FORMAT}"),
        embedding_digest=np.array(embedding_digest),
        graph_metric=np.array(graph.metric),
        graph_version=np.array(GRAPH_VERSION, dtype=np.int64),
        graph_exact=np.array(graph.exact),
        graph_indices=np.ascontiguousarray(graph.indices, dtype=np.int32),
        graph_distances=np.ascontiguousarray(graph.distances, dtype=np.float32),
        **{f"layout_key_{d}": np.array(layouts[d][0].key()) for d in (3, 2)},
        **{f"layout_algorithm_{d}": np.array(algorithm) for d in (3, 2)},
        **{f"layout_{d}": np.ascontiguousarray(layouts[d][1], dtype=np.float32) for d in (3, 2)},
    )
    return buf.getvalue()


def read_sidecar(
    path: str | os.PathLike, embedding_digest: str, n_rows: int, k: int, metric: str, max_bytes: int
) -> Precomputed:
    """The sidecar's graph and maps, checked against the dataset they must belong to; SidecarProblem if unusable."""
    try:
        arrays = _read_arrays(path, n_rows, max_bytes)
    except DatasetError as exc:
        raise SidecarProblem(f"it could not be read ({exc})") from exc
    text = {key: _text(arrays, key) for key in _TEXT_KEYS + _ALGORITHM_KEYS if key in arrays}
    formats = {f"cleaner-sidecar-{f}": f for f in _READABLE_FORMATS}
    version = formats.get(text["format"])
    if version is None or (version >= 2) != all(key in arrays for key in _ALGORITHM_KEYS):
        raise SidecarProblem("it was not written by this version of `cleaner scan --precompute`")
    if text["embedding_digest"] != embedding_digest:
        raise SidecarProblem("it was made for other embeddings (the NPZ changed after the scan)")
    if text["graph_metric"] != metric or int(arrays["graph_version"]) != GRAPH_VERSION:
        raise SidecarProblem(f"its neighbours were found with other settings (distance {text['graph_metric']!r})")
    if arrays["graph_indices"].shape != arrays["graph_distances"].shape:
        raise SidecarProblem("its neighbour graph's two arrays do not match")
    if arrays["graph_indices"].shape[1] != k:
        raise SidecarProblem(
            f"it holds {arrays['graph_indices'].shape[1]} neighbours per image; this app uses {k} "
            f"(run the scan again with --k {k})"
        )
    graph = NeighbourGraph(
        indices=arrays["graph_indices"],
        distances=arrays["graph_distances"],
        metric=metric,
        exact=bool(arrays["graph_exact"]),
    )
    _check_graph(graph, n_rows)
    layouts, algorithms = {}, {}
    for d in (3, 2):
        coords = arrays[f"layout_{d}"]
        if not np.isfinite(coords).all():
            raise SidecarProblem(f"its {d}D map holds values that are not finite numbers")
        coords.setflags(write=False)
        layouts[text[f"layout_key_{d}"]] = coords
        algorithms[text[f"layout_key_{d}"]] = text.get(f"layout_algorithm_{d}", "")
    ignored = _why_maps_are_ignored(version, set(algorithms.values()))
    if ignored:
        layouts, algorithms = {}, {}
    return Precomputed(graph=graph, layouts=layouts, algorithms=algorithms, maps_ignored=ignored)


def _why_maps_are_ignored(version: int, algorithms: set[str]) -> str:
    """Why maps that cannot be told apart from another algorithm's are not served; "" when they can be."""
    if version < 2:
        return (
            "its maps do not say which layout algorithm made them (an earlier `cleaner scan --precompute`), so they "
            "are computed again here; its neighbours are used. Run the scan again to keep the maps too"
        )
    unknown = sorted(algorithms - known_layout_algorithms())
    if unknown:
        return (
            f"its maps were made by a layout this version does not know ({unknown[0][:40]!r}), so they are "
            "computed again here; its neighbours are used. Run the scan again with this version to keep the maps too"
        )
    return ""


def _read_arrays(path: str | os.PathLike, n_rows: int, max_bytes: int) -> dict[str, np.ndarray]:
    """Every member, its shape and type checked from its header before a byte of its data is inflated."""
    expected = {
        "format": ((), "U"),
        "embedding_digest": ((), "U"),
        "graph_metric": ((), "U"),
        "graph_version": ((), "i"),
        "graph_exact": ((), "b"),
        "graph_indices": ((n_rows, None), "i"),
        "graph_distances": ((n_rows, None), "f"),
        "layout_key_3": ((), "U"),
        "layout_key_2": ((), "U"),
        "layout_3": ((n_rows, 3), "f"),
        "layout_2": ((n_rows, 2), "f"),
    }
    data = read_source(str(path), max_bytes)
    arrays, budget = {}, max_bytes
    with open_zip(data) as zf:
        names = {info.filename for info in zf.infolist()}
        if any(key + ".npy" in names for key in _ALGORITHM_KEYS):  # format 2: the maps' algorithms named
            expected.update(dict.fromkeys(_ALGORITHM_KEYS, ((), "U")))
        missing = sorted(key for key in expected if key + ".npy" not in names)
        if missing or len(names) != len(expected):
            raise DatasetError(
                f"it does not hold exactly the expected arrays (missing: {', '.join(missing) or 'none'})"
            )
        for key, (shape, kind) in expected.items():
            arrays[key] = read_member(zf, key, budget, _header_check(key, shape, kind), whole=data)
            budget -= arrays[key].nbytes
    return arrays


def _header_check(key: str, shape: tuple[int | None, ...], kind: str):
    def check(found_shape: tuple[int, ...], dtype: np.dtype) -> None:
        fits = len(found_shape) == len(shape) and all(s is None or s == f for s, f in zip(shape, found_shape))
        if not fits or dtype.kind != kind or (kind == "U" and dtype.itemsize > 4 * 256):
            raise DatasetError(f"'{key}' has shape {tuple(found_shape)} and type {dtype}, expected {shape} {kind}")
        if kind in "if" and dtype.itemsize != 4 and key.startswith(("graph_indices", "graph_distances", "layout_")):
            raise DatasetError(f"'{key}' has type {dtype}, expected 32-bit values")

    return check


def _text(arrays: dict[str, np.ndarray], key: str) -> str:
    return str(arrays[key][()])


def _check_graph(graph: NeighbourGraph, n_rows: int) -> None:
    """Neighbours that exist, never the row itself, at finite distances closest first."""
    idx, dist = graph.indices, graph.distances
    if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
        raise SidecarProblem("its neighbour graph points at rows the dataset does not have")
    if (idx == np.arange(n_rows, dtype=np.int32)[:, None]).any():
        raise SidecarProblem("its neighbour graph lists rows as their own neighbours")
    if not np.isfinite(dist).all() or (dist < -1e-3).any():
        raise SidecarProblem("its neighbour distances are not finite, non-negative numbers")
    if (np.diff(dist, axis=1) < -1e-4).any():
        raise SidecarProblem("its neighbours are not listed closest first")
