"""The shared layout service: computes once in the background, then serves from memory or disk; UMAP's
compiled kernels kept on disk for the next process."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from cleaner.graph.neighbours import exact_neighbours
from cleaner.layout import numba_cache
from cleaner.layout.layouts import LayoutParams, LayoutStore
from cleaner.layout.service import LayoutService

from .conftest import clustered_arrays

ROOT = Path(__file__).resolve().parents[1]
KERNELS = Path(os.environ["CLEANER_CACHE_DIR"]) / "numba"  # the folder the app uses in this test session
FRESH_PROCESS = """
import json, sys
from pathlib import Path
from cleaner.layout import numba_cache
from cleaner.layout.layouts import compile_kernels, use_numba_cache
use_numba_cache(Path(sys.argv[1]))
compile_kernels()
print(json.dumps(numba_cache.kernel_stats()))
"""


def kernels_in_a_fresh_process(folder: Path) -> dict[str, list[int]]:
    """Each cached kernel's [loaded from disk, compiled] counts after a new interpreter ran both layout paths."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_umap_kernels_are_kept_on_disk_for_the_next_process():
    tags = {tag for _, _, tag in numba_cache.KERNELS}
    first = kernels_in_a_fresh_process(KERNELS)
    assert set(first) == tags  # every kernel a layout runs was swapped for a disk-cached copy
    index_files = [p.name for p in KERNELS.rglob("*.nbi")]  # numba adds a subfolder per source folder
    for tag in tags:  # one index per kernel: the serial and parallel epoch kernels do not share one
        assert sum(f"__{tag}-" in name for name in index_files) == 1, (tag, index_files)
    second = kernels_in_a_fresh_process(KERNELS)
    assert {tag: counts[1] for tag, counts in second.items()} == dict.fromkeys(tags, 0), second  # none compiled
    assert all(counts[0] >= 1 for counts in second.values()), second  # each loaded from the folder


def test_a_kernel_that_cannot_be_cached_is_logged_and_left_alone(caplog):
    """As if umap-learn renamed a kernel, or made it a plain function: say so, and change nothing."""
    from cleaner.server import text

    before = text.one_line
    with caplog.at_level(logging.WARNING, logger="cleaner.layout.numba_cache"):
        assert not numba_cache._cache_kernel("cleaner.server.text", "no_such_kernel", "test", None)
        assert not numba_cache._cache_kernel("cleaner.server.text", "one_line", "test", None)  # not compiled by numba
    assert "cleaner.server.text.no_such_kernel will compile on every restart: AttributeError" in caplog.text
    assert "cleaner.server.text.one_line will compile on every restart: AttributeError" in caplog.text
    assert text.one_line is before


def test_a_kernel_folder_others_can_write_is_not_used(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with caplog.at_level(logging.WARNING, logger="cleaner.layout.numba_cache"):
        assert not numba_cache._own_private_folder(shared)  # numba unpickles what it finds there
    assert "mode 700" in caplog.text
    assert numba_cache._own_private_folder(tmp_path / "private")
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o700


def test_layout_computed_once_then_served_from_disk_after_restart(tmp_path):
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8)
    graph = exact_neighbours(emb, 15, "cosine")
    params = LayoutParams(n_components=3)
    store = LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none")
    service = LayoutService(store, numba_cache=KERNELS)
    first = service.request("d1", params, emb, graph)
    assert first.state in ("queued", "running", "ready")
    service.wait("d1", params, timeout=600)
    assert service.status("d1", params, len(emb)).state == "ready"
    coords = service.get("d1", params, len(emb))
    assert coords.shape == (120, 3) and np.isfinite(coords).all()
    # the clusters stay apart in the map: each point's nearest map neighbour shares its label
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    restarted = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"))
    assert restarted.request("d1", params, emb, graph).state == "ready"  # no recomputation
    np.testing.assert_array_equal(restarted.get("d1", params, len(emb)), coords)


def test_failed_layout_reports_the_error(tmp_path):
    emb, _ = clustered_arrays(n_per_class=10, n_classes=2, dims=4)
    graph = exact_neighbours(emb, 5, "euclidean")
    service = LayoutService(LayoutStore(tmp_path, packaged=tmp_path / "none"))
    service.request("bad", LayoutParams(metric="cosine"), emb, graph)  # graph metric differs
    try:
        service.wait("bad", LayoutParams(metric="cosine"), timeout=60)
    except ValueError:
        pass
    status = service.status("bad", LayoutParams(metric="cosine"), len(emb))
    assert status.state == "failed" and "metric" in status.error


def test_another_layout_engine_plugs_in_as_one_function(tmp_path):
    """The seam a GPU layout would use: the service runs the given function on the shared graph, stores and serves
    its coordinates, and counts it as a job of its own."""
    emb, _ = clustered_arrays(n_per_class=10, n_classes=2, dims=4)
    graph = exact_neighbours(emb, 5, "cosine")
    seen = []

    def first_axes(embeddings, g, params):
        seen.append((g is graph, params.n_components))
        return np.ascontiguousarray(embeddings[:, : params.n_components], dtype=np.float32)

    service = LayoutService(LayoutStore(tmp_path, packaged=tmp_path / "none"), layout=first_axes)
    params = LayoutParams(n_components=2)
    service.request("engine", params, emb, graph)
    service.wait("engine", params, timeout=60)
    assert seen == [(True, 2)] and service.jobs_started == 1
    np.testing.assert_array_equal(service.get("engine", params, len(emb)), emb[:, :2])
    restarted = LayoutService(LayoutStore(tmp_path, packaged=tmp_path / "none"))
    np.testing.assert_array_equal(restarted.get("engine", params, len(emb)), emb[:, :2])  # stored like any layout


def test_an_adopted_layout_is_served_without_a_job(tmp_path):
    emb, _ = clustered_arrays(n_per_class=10, n_classes=2, dims=4)
    coords = np.random.default_rng(0).normal(size=(len(emb), 3)).astype(np.float32)
    service = LayoutService(LayoutStore(tmp_path, packaged=tmp_path / "none"))
    service.adopt("made-elsewhere", LayoutParams(), coords)
    assert service.request("made-elsewhere", LayoutParams(), emb, exact_neighbours(emb, 5, "cosine")).state == "ready"
    assert service.jobs_started == 0
    np.testing.assert_array_equal(service.get("made-elsewhere", LayoutParams(), len(emb)), coords)
