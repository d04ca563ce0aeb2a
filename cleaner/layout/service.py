"""Layouts computed in the background and shared by every session: memory LRU, disk store, worker threads."""

from __future__ import annotations

import inspect
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from cleaner.graph.neighbours import NeighbourGraph
from cleaner.layout.layouts import (
    LayoutFunction,
    LayoutParams,
    LayoutProgress,
    LayoutStore,
    compile_kernels,
    layout_algorithm,
    umap_layout,
)
from cleaner.layout.numba_cache import kernel_cache_dir, use_numba_cache
from cleaner.server.jobs import Jobs, JobStatus, Recent

WARM_UP_DELAY_S = 10.0  # seconds after the first page asked for it


LayoutStatus = JobStatus  # where a layout stands: "ready", "running", "queued", "failed" or "missing"


class LayoutService:
    """Serve a layout at once if any user computed it before; otherwise compute it off the page's thread."""

    def __init__(
        self,
        store: LayoutStore,
        workers: int = 2,
        memory_entries: int = 16,
        numba_cache: Path | None = None,
        layout: LayoutFunction | None = None,
    ):
        self.store = store
        self._layout = layout  # None: umap_layout, looked up when a job runs
        # numba's compiled kernels next to the layouts (unless NUMBA_CACHE_DIR says otherwise), so a restarted
        # server's warm_up loads them in about a second instead of compiling for 20-30 s.
        use_numba_cache(numba_cache or Path(store.folder).parent / "numba")
        self._memory = Recent(memory_entries)
        # Two workers: one user's large job must not queue everyone else's small one behind it.
        self._jobs = Jobs(workers, "cleaner-layout")
        self._chain_lock = threading.Lock()
        self._chained: set[tuple[str, LayoutParams]] = set()  # layouts waiting for another to end first
        self._partial_lock = threading.Lock()
        self._partial: dict[tuple[str, LayoutParams], LayoutProgress] = {}  # running layouts' latest step

    @property
    def jobs_started(self) -> int:
        """Layouts this service computed itself (not read from disk or adopted)."""
        return self._jobs.started

    def get(
        self, embedding_digest: str, params: LayoutParams, n_rows: int, algorithm: str | None = None
    ) -> np.ndarray | None:
        """The layout if it is known (in memory or on disk): by the algorithm this version uses for `n_rows` rows, or
        by the `algorithm` named (a precomputed layout adopted under the name of what made it)."""
        algorithm = layout_algorithm(n_rows) if algorithm is None else algorithm
        key = (embedding_digest, params, algorithm)
        coords = self._memory.get(key)
        if coords is None:
            coords = self.store.get(embedding_digest, params, n_rows, algorithm)
            if coords is not None:
                self._remember(key, coords)
        return coords

    def _remember(self, key: tuple[str, LayoutParams, str], coords: np.ndarray) -> None:
        coords.setflags(write=False)
        self._memory.put(key, coords)

    def request(
        self, embedding_digest: str, params: LayoutParams, embeddings: np.ndarray, graph: NeighbourGraph
    ) -> LayoutStatus:
        """Start computing the layout unless it is ready or already on its way; return where it stands."""
        if self.get(embedding_digest, params, len(embeddings)) is not None:
            return LayoutStatus("ready")
        key = (embedding_digest, params)
        self._jobs.forget_if_lost(key, lambda: self.get(embedding_digest, params, len(embeddings)) is not None)
        self._jobs.start(key, self._compute, key, embeddings, graph)
        return self.status(embedding_digest, params, len(embeddings))

    def request_after(
        self,
        embedding_digest: str,
        first: LayoutParams,
        then: LayoutParams,
        embeddings: np.ndarray,
        graph: NeighbourGraph,
    ) -> None:
        """Ask for layout `then` once layout `first` has ended (done or failed), whether or not a page is still open
        to ask: the first does not share the cores with the second, and a closed tab still leaves both in the cache."""
        key = (embedding_digest, then)
        with self._chain_lock:
            if key in self._chained:
                return
            self._chained.add(key)

        def run() -> None:
            try:
                self._jobs.wait((embedding_digest, first))
            except Exception:  # noqa: BLE001 - the first layout's failure is reported by its own status
                pass
            try:
                self.request(embedding_digest, then, embeddings, graph)
            finally:
                with self._chain_lock:
                    self._chained.discard(key)

        threading.Thread(target=run, name="cleaner-layout-then", daemon=True).start()

    def adopt(
        self, embedding_digest: str, params: LayoutParams, coords: np.ndarray, algorithm: str | None = None
    ) -> None:
        """Serve a layout computed elsewhere (a checked `--precompute` sidecar) under the name of the algorithm that
        made it (None: the one this service would run for as many rows); `get` with that algorithm finds it."""
        algorithm = layout_algorithm(len(coords)) if algorithm is None else algorithm
        if self.get(embedding_digest, params, len(coords), algorithm) is not None:
            return
        self._remember((embedding_digest, params, algorithm), np.asarray(coords, dtype=np.float32))
        self.store.put(embedding_digest, params, coords, algorithm)

    def progress(self, embedding_digest: str, params: LayoutParams) -> LayoutProgress | None:
        """The step a layout being computed is at, with its map so far; None when none is running or it tells none."""
        with self._partial_lock:
            return self._partial.get((embedding_digest, params))

    def _compute(self, key: tuple[str, LayoutParams], embeddings: np.ndarray, graph: NeighbourGraph) -> None:
        digest, params = key
        layout = self._layout or umap_layout
        options = {}
        if _takes_progress(layout):

            def publish(step: LayoutProgress) -> None:
                with self._partial_lock:
                    self._partial[key] = step

            options["progress"] = publish
        try:
            coords = layout(embeddings, graph, params, **options)
            self.store.put(digest, params, coords)
            self._remember((digest, params, layout_algorithm(len(coords))), coords)
        finally:
            with self._partial_lock:  # the partial map is dropped once the whole one is served (or the job failed)
                self._partial.pop(key, None)

    def status(self, embedding_digest: str, params: LayoutParams, n_rows: int) -> LayoutStatus:
        if (embedding_digest, params, layout_algorithm(n_rows)) in self._memory:
            return LayoutStatus("ready")
        return self._jobs.status((embedding_digest, params))

    def wait(self, embedding_digest: str, params: LayoutParams, timeout: float | None = None) -> None:
        self._jobs.wait((embedding_digest, params), timeout)

    def warm_up(self, delay_s: float = WARM_UP_DELAY_S) -> Future:
        """Compile UMAP's numba code (small-data and large-data paths) soon, so the first real layout does not
        wait for it. The neighbour search needs no warm-up: faiss is compiled ahead of time.

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


def _takes_progress(layout: LayoutFunction) -> bool:
    """Whether a layout function reports its steps (a `progress` keyword); one of three arguments is called without."""
    try:
        return "progress" in inspect.signature(layout).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin, a C extension's callable)
        return False


def _warm_up() -> None:
    folder = kernel_cache_dir()
    if folder is not None:
        root = str(Path(__file__).resolve().parents[2])
        # Niced: the compiling gets the cores only when the pages and layouts being served leave them idle.
        code = (
            "import os, sys; os.nice(10); sys.path.insert(0, sys.argv[1]); from pathlib import Path; "
            "from cleaner.layout.layouts import compile_kernels, use_numba_cache; "
            "use_numba_cache(Path(sys.argv[2])); compile_kernels()"
        )
        try:
            subprocess.run(
                [sys.executable, "-c", code, root, str(folder)],
                timeout=900,
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            pass  # then this process compiles, as before
    compile_kernels()
