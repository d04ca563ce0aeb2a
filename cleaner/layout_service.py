"""Layouts computed in the background and shared by every session: memory LRU, disk store, worker threads."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .layout import LayoutFunction, LayoutParams, LayoutStore, compile_kernels, kernel_cache_dir, umap_layout, use_numba_cache
from .neighbours import NeighbourGraph

WARM_UP_DELAY_S = 10.0  # seconds after the first page asked for it


@dataclass(frozen=True)
class LayoutStatus:
    state: str  # "ready", "running", "queued", "failed" or "missing"
    elapsed_s: float = 0.0
    error: str = ""


class LayoutService:
    """Serve a layout at once if any user computed it before; otherwise compute it off the page's thread."""

    def __init__(self, store: LayoutStore, workers: int = 2, memory_entries: int = 16,
                 numba_cache: Path | None = None, layout: LayoutFunction | None = None):
        self.store = store
        self._layout = layout  # None: umap_layout, looked up when a job runs
        # numba's compiled kernels next to the layouts (unless NUMBA_CACHE_DIR says otherwise), so a restarted
        # server's warm_up loads them in about a second instead of compiling for 20-30 s.
        use_numba_cache(numba_cache or Path(store.folder).parent / "numba")
        self._memory: OrderedDict[tuple[str, LayoutParams], np.ndarray] = OrderedDict()
        self._memory_entries = memory_entries
        self._jobs: dict[tuple[str, LayoutParams], tuple[Future, float]] = {}
        self.jobs_started = 0  # layouts this service computed itself (not read from disk or adopted)
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
                self.jobs_started += 1
                future.add_done_callback(_drop_traceback)
                self._jobs[key] = job = (future, time.time())
        return self.status(embedding_digest, params, len(embeddings))

    def adopt(self, embedding_digest: str, params: LayoutParams, coords: np.ndarray) -> None:
        """Serve a layout computed elsewhere (a checked `--precompute` sidecar) as if this service had made it."""
        key = (embedding_digest, params)
        if self.get(embedding_digest, params, len(coords)) is not None:
            return
        self._remember(key, np.asarray(coords, dtype=np.float32))
        self.store.put(embedding_digest, params, coords)

    def _compute(self, key: tuple[str, LayoutParams], embeddings: np.ndarray, graph: NeighbourGraph) -> None:
        digest, params = key
        coords = (self._layout or umap_layout)(embeddings, graph, params)
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

    def warm_up(self, delay_s: float = WARM_UP_DELAY_S) -> Future:
        """Compile UMAP's numba code (small-data and large-data paths) soon, so the first real layout does not
        wait for it. The neighbour search needs no warm-up: below 400k rows it is plain numpy.

        It starts delay_s after the call (the page calls it while serving the first visit, which it should
        not slow down), on its own thread so both workers stay free for real layouts. The compiling (20-30 s
        on a cold cache) happens in a niced child process that fills numba's disk cache: compiling in this
        process would hold the interpreter lock against the pages being served (measured: the cold demo page
        took 6-12 s instead of 6 s). This process then loads the kernels from disk in a second or two.
        """
        future: Future = Future()

        def run() -> None:
            time.sleep(max(0.0, delay_s))
            try:
                _warm_up()
            except BaseException as exc:  # noqa: BLE001 - reported through the future
                future.set_exception(exc)
            else:
                future.set_result(None)

        threading.Thread(target=run, name="cleaner-warm-up", daemon=True).start()
        return future


def _warm_up() -> None:
    folder = kernel_cache_dir()
    if folder is not None:
        root = str(Path(__file__).resolve().parents[1])
        # Niced: the compiling gets the cores only when the pages and layouts being served leave them idle.
        code = ("import os, sys; os.nice(10); sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
                "from cleaner.layout import compile_kernels, use_numba_cache; "
                "use_numba_cache(Path(sys.argv[2])); compile_kernels()")
        try:
            subprocess.run([sys.executable, "-c", code, root, str(folder)], timeout=900, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            pass  # then this process compiles, as before
    compile_kernels()


def _drop_traceback(future) -> None:
    """A failed job's exception is kept for the page to show; its traceback would pin the job's frames, and with them
    the embeddings and graph of a session that may be gone."""
    exc, seen = future.exception(), set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
