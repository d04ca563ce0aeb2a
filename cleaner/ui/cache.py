"""Expensive things computed once per server and shared by every session, keyed on cheap digests.

Big arrays are `_underscored` arguments so Streamlit never hashes them on a rerun.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import streamlit as st

from cleaner.decisions.effect import static_review_order
from cleaner.graph.distance import MetricChoice, auto_metric
from cleaner.graph.neighbours import GraphStore, NeighbourGraph
from cleaner.graph.service import GraphService
from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset
from cleaner.io.demo import load_demo
from cleaner.io.images import configure_pillow
from cleaner.io.map_sample import MapSample, MapSampleProblem, read_map_sample
from cleaner.io.shards import load_sharded
from cleaner.io.sidecar import Precomputed, SidecarProblem, read_sidecar
from cleaner.issues.suspects import ScanResult, scores_from_graph
from cleaner.issues.unreadable import UnreadableImages
from cleaner.layout.layouts import LayoutStore, pca_projection
from cleaner.layout.service import LayoutService
from cleaner.server.config import ConfigError, Settings, load_settings

FULL_COLLECTION_EVERY_S = 15.0  # at the latest, even on an idle server
COLLECTION_GAP_S = 2.0  # after a page run asked for one; also the least time between two asked for


class GarbageCollector:
    """Collect reference cycles on a daemon thread: COLLECTION_GAP_S after a whole-page run asked for it (such
    a run can leave megabytes of map data in cycles), else every FULL_COLLECTION_EVERY_S.

    This replaces Streamlit's collection after every script run, which .streamlit/config.toml turns off
    (runner.postScriptGC): a full collection walks every tracked object of the server, the imported libraries'
    included, while holding the interpreter lock, and ten sessions ticking paid that walk on every tick.
    """

    def __init__(
        self,
        every_s: float = FULL_COLLECTION_EVERY_S,
        gap_s: float = COLLECTION_GAP_S,
        collect: Callable[[], object] = gc.collect,
    ):
        self.every_s, self.gap_s, self._collect = every_s, gap_s, collect
        self._asked = threading.Event()
        self._stopped = threading.Event()
        threading.Thread(target=self._run, name="cleaner-gc", daemon=True).start()

    def soon(self) -> None:
        """A whole-page run started or ended: collect its garbage (and any other session's) shortly."""
        self._asked.set()

    def stop(self) -> None:
        self._stopped.set()
        self._asked.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._asked.wait(self.every_s):
                self._asked.clear()
                if self._stopped.wait(self.gap_s):
                    return
            if self._stopped.is_set():
                return
            self._collect()


@st.cache_resource(show_spinner=False, on_release=GarbageCollector.stop)
def _garbage_collector() -> GarbageCollector:
    return GarbageCollector()


def collect_garbage_soon() -> None:
    """Called when a whole-page run starts and when it ends: the collector frees what the run left in cycles."""
    _garbage_collector().soon()


@st.cache_resource(show_spinner=False)
def _settings() -> Settings:
    configure_pillow()  # once per server, where the app starts
    return load_settings()


def settings() -> Settings:
    """The server's settings; a mistake in them stops the page with a message the administrator can act on."""
    collect_garbage_soon()  # settings() starts every whole-page run, and no fragment run
    try:
        return _settings()
    except ConfigError as exc:  # raised before anything is cached, so a fixed environment is read on the next visit
        st.error(f"The server's configuration is invalid: {exc}. The administrator must fix it and restart.")
        st.stop()


@st.cache_resource(show_spinner=False)
def demo_dataset(demo_dir: str) -> Dataset:
    return load_demo(Path(demo_dir))


@st.cache_resource(max_entries=8, show_spinner=False)
def server_npz(path: str, mtime_ns: int, size: int, max_bytes: int, max_rows: int, max_dims: int) -> Dataset:
    """A server file, read again only when its modification time or size changes."""
    return load_npz(path, max_bytes=max_bytes, max_rows=max_rows, max_dims=max_dims)


@st.cache_resource(max_entries=4, show_spinner=False)
def server_shards(
    folder: str, fingerprint: tuple[tuple[str, int, int], ...], max_bytes: int, max_rows: int, max_dims: int
) -> Dataset:
    """A server folder of shards as one dataset (each shard checked as an NPZ is; all of them within the NPZ byte
    limit together), read again when a shard is added, removed or changed."""
    return load_sharded(folder, max_bytes=max_bytes, max_rows=max_rows, max_dims=max_dims, total_bytes=max_bytes)


@st.cache_resource(max_entries=4, show_spinner=False)
def map_sample(
    path: str, mtime_ns: int, size: int, embedding_digest: str, n_rows: int, max_bytes: int
) -> MapSample | str:
    """A `--precompute` map sample checked against its dataset, read again only when it changes; else why not."""
    try:
        return read_map_sample(path, embedding_digest, n_rows, max_bytes)
    except MapSampleProblem as exc:
        return str(exc)


@st.cache_resource(max_entries=4, show_spinner=False)
def sidecar(
    path: str, mtime_ns: int, size: int, embedding_digest: str, n_rows: int, k: int, metric: str, max_bytes: int
) -> Precomputed | str:
    """A `--precompute` sidecar checked against its dataset, read again only when it changes; else why not."""
    try:
        return read_sidecar(path, embedding_digest, n_rows, k, metric, max_bytes)
    except SidecarProblem as exc:
        return str(exc)


@st.cache_resource(show_spinner=False)
def graph_service(cache_dir: str, cache_max_bytes: int) -> GraphService:
    """One per server: every session shares the graphs and the search thread."""
    return GraphService(GraphStore(Path(cache_dir) / "graphs", max_bytes=cache_max_bytes))


@st.cache_resource(show_spinner=False)
def layout_service(cache_dir: str, cache_max_bytes: int) -> LayoutService:
    """One per server: every session shares the layouts and the worker threads."""
    service = LayoutService(LayoutStore(Path(cache_dir) / "layouts", max_bytes=cache_max_bytes))
    service.warm_up()
    return service


@st.cache_resource(max_entries=16, show_spinner=False)
def metric_choice(embedding_digest: str, _embeddings: np.ndarray) -> MetricChoice:
    """The distance "auto" stands for on these embeddings: one pass over them per dataset, not per run."""
    return auto_metric(_embeddings)


@st.cache_resource(max_entries=16, show_spinner=False)
def preview(embedding_digest: str, n_components: int, _embeddings: np.ndarray) -> np.ndarray:
    return pca_projection(_embeddings, n_components)


class ImageChecks:
    """Image-check results shared by every session: (dataset, image access) -> (files' fingerprint, result)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str], tuple[str, UnreadableImages]] = {}

    def put(self, key: tuple[str, str], fingerprint: str, result: UnreadableImages) -> None:
        with self._lock:
            self._found[key] = (fingerprint, result)
            while len(self._found) > 16:  # a handful of datasets; each result holds one reason per image
                self._found.pop(next(iter(self._found)))

    def get(self, key: tuple[str, str]) -> tuple[str, UnreadableImages] | None:
        with self._lock:
            return self._found.get(key)


@st.cache_resource(show_spinner=False)
def image_checks() -> ImageChecks:
    return ImageChecks()


@st.cache_resource(max_entries=8, show_spinner=False)
def suspects(
    digest: str,
    k: int,
    metric: str,
    thorough: bool,
    _dataset: Dataset,
    _graph: NeighbourGraph,
    _progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    return scores_from_graph(_dataset, _graph, thorough=thorough, progress=_progress)


@st.cache_resource(max_entries=8, show_spinner=False)
def review_order(
    digest: str, k: int, metric: str, thorough: bool, images_checked: bool, _result: ScanResult
) -> np.ndarray:
    """The scan's static review order, which the audit measures how deep the review has gone in."""
    return static_review_order(_result)


@st.cache_resource(show_spinner=False)
def comparisons() -> ThreadPoolExecutor:
    """One worker for the models compared before and after cleaning: the fits run beside the pages, one at a time."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cleaner-effect")
