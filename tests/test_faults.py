"""Faults a shared server meets: killed mid-write, a cache folder it cannot write (read-only or full), a tab
closed while its map computes, two sessions asking for one layout at once, an image folder gone mid-review.

Root is exempt from permission bits, so "read-only" here is `chattr +i` (the immutable flag, which binds root
too) or a regular file where a folder should be, and "full" is a tmpfs of a few KiB mounted on the folder. A
test that needs chattr or mount skips with the reason where they are refused. Every wait is bounded; nothing
asserts on wall-clock time.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cleaner.graph.neighbours import GraphStore, NeighbourGraph, exact_neighbours
from cleaner.io.dataset import npz_bytes
from cleaner.io.images import ImageAccess, check_readable, load_thumbnail
from cleaner.layout import service as layout_service
from cleaner.layout.layouts import LayoutParams, LayoutStore, pca_projection
from cleaner.layout.service import LayoutService

from .conftest import clustered_arrays

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "streamlit_app.py")
WAIT_S = 120  # bound on any wait for a child process or a background job
PARAMS = LayoutParams(n_components=3, metric="cosine")


def _wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def fake_layout(embeddings: np.ndarray, graph: NeighbourGraph, params: LayoutParams) -> np.ndarray:
    """Stands in for UMAP where the test is about the service, not the layout: same shape, no numba."""
    return pca_projection(embeddings, params.n_components)


@pytest.fixture
def small():
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8)
    return emb, labels, exact_neighbours(emb, 10, "cosine")


# ---------------------------------------------------------------- killed while writing

KILLED_WRITER = r"""
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
from cleaner.layout.layouts import LayoutParams, LayoutStore
from cleaner.graph.neighbours import GraphStore, NeighbourGraph
kind, folder, marker = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
real_save, real_savez = np.save, np.savez

def stall(fh):
    fh.flush()
    marker.write_text("half written")
    time.sleep(600)  # SIGKILLed here

def half_save(fh, arr, allow_pickle=False):
    real_save(fh, arr[: len(arr) // 2], allow_pickle=False)  # a torn file, were it ever renamed into place
    stall(fh)

def half_savez(fh, **arrays):
    real_savez(fh, **{k: v[: len(v) // 2] if v.ndim else v for k, v in arrays.items()})
    stall(fh)

np.save, np.savez = half_save, half_savez
n = 2000
if kind == "layout":
    LayoutStore(folder).put("digest", LayoutParams(n_components=3, metric="cosine"), np.ones((n, 3), np.float32))
else:
    graph = NeighbourGraph(indices=np.zeros((n, 10), np.int32), distances=np.zeros((n, 10), np.float32),
                           metric="cosine", exact=True)
    GraphStore(folder).put("digest", 10, graph)
"""


def _kill_mid_write(kind: str, folder: Path) -> None:
    """A process writing one store entry, SIGKILLed once half of it is on disk."""
    marker = folder.parent / f"{kind}.marker"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(REPO), kind, str(folder), str(marker)], start_new_session=True
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while not marker.exists():
            assert child.poll() is None, f"the writer exited with {child.returncode} before writing"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=WAIT_S)
    assert child.returncode == -signal.SIGKILL


@pytest.mark.parametrize("had_entry", [False, True], ids=["new entry", "rewrite of an entry"])
def test_killed_while_writing_a_layout_leaves_no_corrupt_entry(tmp_path, monkeypatch, had_entry):
    folder = tmp_path / "layouts"
    n = 2000
    old = np.full((n, 3), 7.0, np.float32)
    if had_entry:
        LayoutStore(folder, packaged=tmp_path / "none").put("digest", PARAMS, old)
    _kill_mid_write("layout", folder)
    # Restart: a new store and service on the same folder.
    store = LayoutStore(folder, packaged=tmp_path / "none")
    assert sorted(p.name for p in folder.glob("*.npy")) == ([store.file_name("digest", PARAMS)] if had_entry else [])
    found = store.get("digest", PARAMS, n)
    if had_entry:
        np.testing.assert_array_equal(found, old)  # the earlier entry, whole
        return
    assert found is None  # nothing torn is ever served
    monkeypatch.setattr(layout_service, "umap_layout", fake_layout)
    emb = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    service = LayoutService(store)
    service.request("digest", PARAMS, emb, exact_neighbours(emb[:50], 5, "cosine"))
    service.wait("digest", PARAMS, timeout=WAIT_S)
    assert service.status("digest", PARAMS, n).state == "ready"  # recomputed
    assert LayoutStore(folder, packaged=tmp_path / "none").get("digest", PARAMS, n).shape == (n, 3)  # and stored


def test_killed_while_writing_a_graph_leaves_no_corrupt_entry(tmp_path):
    folder = tmp_path / "graphs"
    _kill_mid_write("graph", folder)
    assert not list(folder.glob("graph_*.npz"))
    assert GraphStore(folder).get("digest", 10, "cosine", 2000) is None


def test_a_torn_entry_under_the_final_name_is_a_miss_and_is_replaced(tmp_path, monkeypatch, small):
    """What an unclean power-off can leave (a rename that reached the disk before the data): read as a miss."""
    emb, _, graph = small
    store = LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none")
    store.put("digest", PARAMS, fake_layout(emb, graph, PARAMS))
    path = store.folder / store.file_name("digest", PARAMS)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert store.get("digest", PARAMS, len(emb)) is None
    monkeypatch.setattr(layout_service, "umap_layout", fake_layout)
    service = LayoutService(store)
    service.request("digest", PARAMS, emb, graph)
    service.wait("digest", PARAMS, timeout=WAIT_S)
    assert store.get("digest", PARAMS, len(emb)).shape == (len(emb), 3)


def test_a_killed_writes_leftover_is_cleaned_up_later(tmp_path, small):
    folder = tmp_path / "layouts"
    _kill_mid_write("layout", folder)
    leftovers = list(folder.glob("*.tmp"))
    assert leftovers
    for path in leftovers:
        os.utime(path, (time.time() - 2 * 3600,) * 2)  # long dead: no live writer is this slow
    emb, _, graph = small
    LayoutStore(folder, packaged=tmp_path / "none").put("other", PARAMS, fake_layout(emb, graph, PARAMS))
    assert not list(folder.glob("*.tmp"))


# ---------------------------------------------------------------- a cache folder that cannot be written


@contextlib.contextmanager
def immutable(*folders: Path):
    """chattr +i: nothing can be created, renamed or removed inside, not even by root."""
    done: list[Path] = []
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
            if result.returncode:
                pytest.skip(f"chattr +i refused here: {result.stderr.strip()}")
            done.append(folder)
        yield
    finally:
        for folder in done:
            subprocess.run(["chattr", "-i", str(folder)], check=False)


@contextlib.contextmanager
def full(*folders: Path, size_kib: int = 8):
    """A tmpfs of a few KiB mounted on each folder: every real entry meets ENOSPC."""
    mounted: list[Path] = []
    try:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
                capture_output=True,
                text=True,
            )
            if result.returncode:
                pytest.skip(f"mount -t tmpfs refused here: {result.stderr.strip()}")
            mounted.append(folder)
        yield
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def file_in_place(*folders: Path):
    """A regular file where the folder should be: refused to root too, and needs no privilege."""
    for folder in folders:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_text("not a folder")
    yield


BLOCKERS = {"read-only (chattr +i)": immutable, "full (8 KiB tmpfs)": full, "a file in its place": file_in_place}


@pytest.mark.parametrize("blocker", list(BLOCKERS))
def test_stores_keep_working_without_a_writable_cache(tmp_path, monkeypatch, blocker):
    n = 2000  # entries larger than the 8 KiB tmpfs
    emb = np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32)
    graph = exact_neighbours(emb, 10, "cosine")
    monkeypatch.setattr(layout_service, "umap_layout", fake_layout)
    layouts, graphs = tmp_path / "cache" / "layouts", tmp_path / "cache" / "graphs"
    with BLOCKERS[blocker](layouts, graphs):
        store = LayoutStore(layouts, packaged=tmp_path / "none")
        service = LayoutService(store)
        service.request("digest", PARAMS, emb, graph)
        service.wait("digest", PARAMS, timeout=WAIT_S)  # the write failed inside: the job did not
        assert service.status("digest", PARAMS, n).state == "ready"
        assert service.get("digest", PARAMS, n).shape == (n, 3)  # served from memory
        assert store.get("digest", PARAMS, n) is None
        GraphStore(graphs).put("digest", 10, graph)  # no exception
        assert GraphStore(graphs).get("digest", 10, "cosine", n) is None
        if layouts.is_dir():
            assert not [p for p in layouts.iterdir()], "a failed write left a file behind"
            assert not [p for p in graphs.iterdir()], "a failed write left a file behind"


PAGE_CHILD = r"""
import json, sys, time
from streamlit.testing.v1 import AppTest

def everything(at):
    out = []
    for kind in ("error", "warning", "info", "success", "caption", "markdown", "text"):
        out += [f"{kind}: {e.value}" for e in getattr(at, kind)]
        out += [f"{kind}: {e.value}" for e in getattr(at.sidebar, kind)]
    return out

runs = []

def run(at):
    at.run()
    runs.append({"exceptions": [str(e.value) for e in at.exception], "texts": everything(at)})

at = AppTest.from_file(sys.argv[1], default_timeout=300)
run(at)
if sys.argv[2] == "server":
    at.sidebar.radio(key="data_source").set_value("Server folder")
    run(at)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and any("PCA preview" in t for t in runs[-1]["texts"]) and not at.exception:
        time.sleep(2)  # the browser's timed rerun, done by hand: the map computes in the background
        run(at)
    run(at)  # one more rerun: a message that belongs on the page once must not pile up
print(json.dumps(runs))
"""


def _page_runs(cache: Path, allowed: Path, source: str, numba: Path) -> list[dict]:
    env = {
        **os.environ,
        "CLEANER_CACHE_DIR": str(cache),
        "CLEANER_ALLOWED_ROOTS": str(allowed),
        "NUMBA_CACHE_DIR": str(numba),
    }
    out = subprocess.run(
        [sys.executable, "-c", PAGE_CHILD, APP, source], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def unwritable_page(tmp_path_factory):
    """The page on a 2,000-row server file, with the graph and layout stores read-only and then full."""
    root = tmp_path_factory.mktemp("unwritable")
    allowed = root / "allowed"
    allowed.mkdir()
    emb, labels = clustered_arrays(n_per_class=500, n_classes=4, dims=16)
    (allowed / "team.npz").write_bytes(npz_bytes(emb, labels, np.array([f"/nowhere/{i}.png" for i in range(len(emb))])))
    results = {}
    for name in ("read-only (chattr +i)", "full (8 KiB tmpfs)"):
        cache = root / name.split()[0]
        try:
            with BLOCKERS[name](cache / "layouts", cache / "graphs"):
                results[name] = _page_runs(cache, allowed, "server", root / "numba")
        except pytest.skip.Exception as exc:
            results[name] = str(exc)
    return results


@pytest.mark.parametrize("blocker", ["read-only (chattr +i)", "full (8 KiB tmpfs)"])
def test_page_keeps_working_when_the_cache_cannot_be_written(unwritable_page, blocker):
    runs = unwritable_page[blocker]
    if isinstance(runs, str):
        pytest.skip(runs)
    assert all(not run["exceptions"] for run in runs), runs
    assert not any("PCA preview" in t for t in runs[-1]["texts"]), "the UMAP map never replaced the preview"
    assert any("2,000 images" in t for t in runs[-1]["texts"])


def _cache_notes(texts: list[str]) -> list[str]:
    return [
        t
        for t in texts
        if "cache" in t.lower() and any(w in t.lower() for w in ("written", "write", "full", "space", "read-only"))
    ]


@pytest.mark.parametrize("blocker", ["read-only (chattr +i)", "full (8 KiB tmpfs)"])
def test_page_says_once_that_the_cache_cannot_be_written(unwritable_page, blocker):
    runs = unwritable_page[blocker]
    if isinstance(runs, str):
        pytest.skip(runs)
    notes = [_cache_notes(run["texts"]) for run in runs]  # the first failed write may be the demo's graph
    assert sum(len(n) for n in notes) == 1, notes  # said, and said once


def test_demo_page_works_when_the_whole_cache_folder_is_read_only(tmp_path):
    cache = tmp_path / "cache"
    with immutable(cache):
        runs = _page_runs(cache, tmp_path, "demo", tmp_path / "numba")
    assert not runs[0]["exceptions"], runs[0]["exceptions"]


# ---------------------------------------------------------------- a tab closed while its map computes


def test_job_of_a_closed_tab_finishes_and_holds_nothing_of_it(tmp_path, monkeypatch):
    """The page only asks and polls; the job owns nothing the session owned once it is done."""
    gate = threading.Event()

    def gated_layout(embeddings, graph, params):
        assert gate.wait(WAIT_S)
        return fake_layout(embeddings, graph, params)

    monkeypatch.setattr(layout_service, "umap_layout", gated_layout)
    service = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"))
    threads_before = threading.active_count()
    emb = np.random.default_rng(2).normal(size=(300, 8)).astype(np.float32)
    graph = exact_neighbours(emb, 10, "cosine")
    refs = [weakref.ref(emb), weakref.ref(graph)]
    assert service.request("tab", PARAMS, emb, graph).state in ("queued", "running")
    del emb, graph  # the tab closes: Streamlit drops its session, and with it the page's references
    gate.set()
    service.wait("tab", PARAMS, timeout=WAIT_S)
    gc.collect()
    assert all(ref() is None for ref in refs), "the service keeps the closed session's arrays alive"
    assert service.status("tab", PARAMS, 300).state == "ready"  # finished, for the next visitor
    assert LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none").get("tab", PARAMS, 300) is not None
    assert threading.active_count() <= threads_before + 2  # the service's two workers at most, no thread per job


def test_failed_job_of_a_closed_tab_leaks_nothing(tmp_path, monkeypatch):
    def failing(embeddings, graph, params):
        raise MemoryError("out of memory")

    monkeypatch.setattr(layout_service, "umap_layout", failing)
    service = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"))
    emb = np.random.default_rng(3).normal(size=(100, 8)).astype(np.float32)
    graph = exact_neighbours(emb, 5, "cosine")
    refs = [weakref.ref(emb), weakref.ref(graph)]
    service.request("tab", PARAMS, emb, graph)
    del emb, graph  # nobody waits on the job: the page only polls its status
    _wait_for(lambda: service.status("tab", PARAMS, 100).state == "failed", "the job fails")
    # The failure is kept for the next visitor to read; the arrays must not be (a traceback pins its frames).
    _wait_for(
        lambda: gc.collect() is not None and all(ref() is None for ref in refs),
        "the failed job's arrays are released",
        timeout=10,
    )


# ---------------------------------------------------------------- two sessions, one layout


def test_two_sessions_asking_at_once_get_one_computation(tmp_path, monkeypatch, small):
    emb, _, graph = small
    calls: list[int] = []
    both_asked = threading.Event()

    def counted(embeddings, graph, params):
        calls.append(1)
        assert both_asked.wait(WAIT_S)  # still computing while the other session asks
        return fake_layout(embeddings, graph, params)

    monkeypatch.setattr(layout_service, "umap_layout", counted)
    service = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"))
    barrier = threading.Barrier(2)
    states: list[str] = []

    def session() -> None:
        barrier.wait(WAIT_S)
        states.append(service.request("same", PARAMS, emb.copy(), graph).state)  # each session its own copy

    threads = [threading.Thread(target=session) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    both_asked.set()
    service.wait("same", PARAMS, timeout=WAIT_S)
    assert len(states) == 2 and len(calls) == 1
    first, second = (service.get("same", PARAMS, len(emb)) for _ in range(2))
    assert first is second
    # Another server process on the same cache folder computes nothing either.
    other = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"))
    assert other.request("same", PARAMS, emb, graph).state == "ready" and len(calls) == 1


def test_two_sessions_opening_one_dataset_search_its_graph_once(tmp_path, monkeypatch):
    from cleaner.graph import service as graph_service

    calls: list[int] = []
    both_asked = threading.Barrier(2)
    search = graph_service.neighbour_graph

    def counted(embeddings, **kwargs):
        calls.append(1)
        time.sleep(0.5)  # long enough for the second session to arrive while the first one searches
        return search(embeddings, **kwargs)  # and stores it, as the real one does

    monkeypatch.setattr(graph_service, "neighbour_graph", counted)
    emb = np.random.default_rng(4).normal(size=(200, 8)).astype(np.float32)
    service = graph_service.GraphService(GraphStore(tmp_path / "graphs"))
    graphs: list[NeighbourGraph] = []

    def session() -> None:
        both_asked.wait(WAIT_S)
        service.request("same", 10, "cosine", emb.copy())
        service.wait("same", 10, "cosine", timeout=WAIT_S)
        graphs.append(service.get("same", 10, "cosine", len(emb)))

    threads = [threading.Thread(target=session) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert len(graphs) == 2 and graphs[0] is graphs[1] and len(calls) == 1
    # Another server process on the same cache folder reads it from disk: no search.
    other = graph_service.GraphService(GraphStore(tmp_path / "graphs"))
    assert other.request("same", 10, "cosine", emb).state == "ready" and other.jobs_started == 0 and len(calls) == 1


class _FullLayoutStore(LayoutStore):
    """A cache folder that takes nothing (full or read-only): results live in memory only."""

    def put(self, embedding_digest, params, coords) -> None:
        pass


class _FullGraphStore(GraphStore):
    def put(self, embedding_digest, k, graph) -> None:
        pass


def test_a_layout_dropped_from_memory_with_no_disk_copy_is_computed_again(tmp_path):
    """With the cache folder full, a layout that leaves the memory cache exists nowhere: asking for it again must
    start a new job, not report it ready forever (the page would rerun in a loop waiting for it)."""
    emb, _ = clustered_arrays(n_per_class=10, n_classes=2, dims=4)
    graph = exact_neighbours(emb, 5, "cosine")

    def first_axes(embeddings, g, params):
        return np.ascontiguousarray(embeddings[:, : params.n_components], dtype=np.float32)

    service = LayoutService(
        _FullLayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"), memory_entries=1, layout=first_axes
    )
    three, two = LayoutParams(n_components=3), LayoutParams(n_components=2)
    for params in (three, two):  # the 2D layout pushes the 3D one out of memory
        service.request("full", params, emb, graph)
        service.wait("full", params, timeout=WAIT_S)
    assert service.get("full", three, len(emb)) is None
    assert service.request("full", three, emb, graph).state in ("queued", "running", "ready")
    service.wait("full", three, timeout=WAIT_S)
    np.testing.assert_array_equal(service.get("full", three, len(emb)), emb[:, :3])
    assert service.jobs_started == 3
    assert service.request("full", three, emb, graph).state == "ready" and service.jobs_started == 3  # served


def test_a_graph_dropped_from_memory_with_no_disk_copy_is_searched_again(tmp_path):
    from cleaner.graph import service as graph_service

    rng = np.random.default_rng(5)
    first, second = (rng.normal(size=(60, 8)).astype(np.float32) for _ in range(2))
    service = graph_service.GraphService(_FullGraphStore(tmp_path / "graphs"), memory_entries=1)
    for name, emb in (("first", first), ("second", second)):
        service.request(name, 5, "euclidean", emb)
        service.wait(name, 5, "euclidean", timeout=WAIT_S)
    assert service.get("first", 5, "euclidean", len(first)) is None
    service.request("first", 5, "euclidean", first)
    service.wait("first", 5, "euclidean", timeout=WAIT_S)
    graph = service.get("first", 5, "euclidean", len(first))
    assert graph is not None and service.jobs_started == 3
    np.testing.assert_array_equal(graph.indices, exact_neighbours(first, 5, "euclidean").indices)


# ---------------------------------------------------------------- an image folder gone mid-review


def _images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        path = folder / f"img_{i:03d}.png"
        Image.new("RGB", (16, 16), (i * 7 % 255, 90, 160)).save(path)
        paths.append(str(path.resolve()))
    return paths


def test_thumbnails_become_placeholders_when_the_folder_goes(tmp_path):
    paths = _images(tmp_path / "imgs", 3)
    access = ImageAccess(allowed_roots=(tmp_path.resolve(),))
    assert all(load_thumbnail(p, access).ok for p in paths)  # now in the thumbnail cache too
    shutil.rmtree(tmp_path / "imgs")
    for p in paths:
        thumb = load_thumbnail(p, access)
        assert not thumb.ok and thumb.reason == "file not found" and thumb.png.startswith(b"\x89PNG")
        assert check_readable(p, access) == "file not found"


def test_page_shows_placeholders_when_the_image_folder_goes_mid_review(allowed_root, tmp_path):
    folder = allowed_root / f"faults_{tmp_path.name}"
    emb, labels = clustered_arrays(n_per_class=30, n_classes=3, dims=16, seed=5)
    paths = _images(folder / "images", len(emb))
    npz = folder / "review.npz"
    npz.write_bytes(npz_bytes(emb, labels, np.asarray(paths)))
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.sidebar.radio(key="data_source").set_value("Server folder")
    at.run()
    at.sidebar.selectbox(key="server_npz").set_value(str(npz.resolve()))
    at.run()
    at.selectbox(key="select_class").set_value("1")
    at.button(key="btn_class").click()
    at.run()
    assert not at.exception, at.exception
    assert not any(t.value.startswith("⚠") for t in at.text)
    [c for c in at.checkbox if c.label == "Exclude"][0].check()
    at.run()
    shutil.rmtree(folder / "images")  # the share is unmounted, or someone moved the folder
    [c for c in at.checkbox if c.label == "Exclude"][1].check()
    at.run()
    assert not at.exception, at.exception
    assert sum(t.value == "⚠ file not found" for t in at.text) == 24  # every tile of the page says why
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    assert not at.exception, at.exception
    at.button(key="btn_check_images").click()
    at.run()
    assert not at.exception, at.exception
    work = list(at.session_state["cleaner_work"].values())[-1]
    assert work.decisions.count("exclude") == 2  # the review goes on
    assert int((work.unreadable.score > 0).sum()) == len(emb)
