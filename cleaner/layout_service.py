"""Layouts computed in the background and shared by every session: memory LRU, disk store, worker threads."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .layout import LayoutParams, LayoutStore, umap_layout
from .neighbours import NeighbourGraph, exact_neighbours


@dataclass(frozen=True)
class LayoutStatus:
    state: str  # "ready", "running", "queued", "failed" or "missing"
    elapsed_s: float = 0.0
    error: str = ""


class LayoutService:
    """Serve a layout at once if any user computed it before; otherwise compute it off the page's thread."""

    def __init__(self, store: LayoutStore, workers: int = 2, memory_entries: int = 16):
        self.store = store
        self._memory: OrderedDict[tuple[str, LayoutParams], np.ndarray] = OrderedDict()
        self._memory_entries = memory_entries
        self._jobs: dict[tuple[str, LayoutParams], tuple[Future, float]] = {}
        self._lock = threading.Lock()
        # Two workers: one user's large job must not queue everyone else's small one behind it.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cleaner-layout")

    def get(self, embedding_digest: str, params: LayoutParams, n_rows: int) -> np.ndarray | None:
        key = (embedding_digest, params)
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        coords = self.store.get(embedding_digest, params, n_rows)
        if coords is not None:
            self._remember(key, coords)
        return coords

    def _remember(self, key: tuple[str, LayoutParams], coords: np.ndarray) -> None:
        coords.setflags(write=False)
        with self._lock:
            self._memory[key] = coords
            self._memory.move_to_end(key)
            while len(self._memory) > self._memory_entries:
                self._memory.popitem(last=False)

    def request(self, embedding_digest: str, params: LayoutParams, embeddings: np.ndarray,
                graph: NeighbourGraph) -> LayoutStatus:
        """Start computing the layout unless it is ready or already on its way; return where it stands."""
        if self.get(embedding_digest, params, len(embeddings)) is not None:
            return LayoutStatus("ready")
        key = (embedding_digest, params)
        with self._lock:
            job = self._jobs.get(key)
            if job is None or (job[0].done() and job[0].exception() is not None and time.time() - job[1] > 60):
                future = self._executor.submit(self._compute, key, embeddings, graph)
                self._jobs[key] = job = (future, time.time())
        return self.status(embedding_digest, params, len(embeddings))

    def _compute(self, key: tuple[str, LayoutParams], embeddings: np.ndarray, graph: NeighbourGraph) -> None:
        digest, params = key
        coords = umap_layout(embeddings, graph, params)
        self.store.put(digest, params, coords)
        self._remember(key, coords)

    def status(self, embedding_digest: str, params: LayoutParams, n_rows: int) -> LayoutStatus:
        key = (embedding_digest, params)
        with self._lock:
            if key in self._memory:
                return LayoutStatus("ready")
            job = self._jobs.get(key)
        if job is None:
            return LayoutStatus("missing")
        future, started = job
        elapsed = time.time() - started
        if not future.done():
            return LayoutStatus("running" if future.running() else "queued", elapsed)
        if future.exception() is not None:
            return LayoutStatus("failed", elapsed, f"{type(future.exception()).__name__}: {future.exception()}")
        return LayoutStatus("ready", elapsed)

    def wait(self, embedding_digest: str, params: LayoutParams, timeout: float | None = None) -> None:
        with self._lock:
            job = self._jobs.get((embedding_digest, params))
        if job is not None:
            job[0].result(timeout=timeout)

    def warm_up(self) -> Future:
        """Compile UMAP's numba code on a tiny layout now, so the first real user does not wait for it."""
        def run() -> None:
            rng = np.random.default_rng(0)
            x = rng.normal(size=(64, 8)).astype(np.float32)
            graph = exact_neighbours(x, 10, "cosine")
            for n_components in (3, 2):
                umap_layout(x, graph, LayoutParams(n_components=n_components, n_neighbors=10))

        return self._executor.submit(run)
