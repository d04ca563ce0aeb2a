"""`cleaner scan --dask`: the graph, the scores and the maps on a LocalCluster of two worker processes, on small
sharded data; a worker killed mid-run; a scheduler that cannot be reached."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from cleaner.graph.knn_rows import recall
from cleaner.graph.neighbours import NeighbourGraph, exact_neighbours
from cleaner.io.dataset import load_npz
from cleaner.io.map_sample import map_sample_path, read_map_sample
from cleaner.io.shards import load_sharded
from cleaner.io.sidecar import read_sidecar, sidecar_path
from cleaner.issues.report import report_csv
from cleaner.issues.suspects import scores_from_graph
from cleaner.layout.landmarks import membership_strengths, place_from_neighbours
from cleaner.layout.layouts import LayoutParams, landmark_layout

from .test_shards import clustered, write_shards

dask = pytest.importorskip("dask", reason="the distributed scan needs dask[distributed]")
distributed = pytest.importorskip("distributed", reason="the distributed scan needs dask[distributed]")

from cleaner.distributed import tasks  # noqa: E402  (after the skip: these import dask's client side)
from cleaner.distributed.graph import distributed_graph  # noqa: E402
from cleaner.distributed.layout import distributed_layouts  # noqa: E402
from cleaner.distributed.scan import open_on_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def client():
    # A worker process starts by running the parent's __main__ again; after an AppTest.from_function test that is a
    # generated Streamlit script, which fails outside its runner: the workers start from an empty __main__ instead.
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    # Two cores shared with a whole test suite: give worker processes time to start and answer.
    with dask.config.set({"distributed.comm.timeouts.connect": "120s", "distributed.comm.timeouts.tcp": "120s"}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        )
        try:
            with distributed.Client(cluster, timeout=120) as c:
                yield c
        finally:
            cluster.close()
            sys.modules["__main__"] = main


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """2,400 rows of 12 classes in 24 dimensions, in 3 shards; a few duplicates and flipped labels."""
    folder = tmp_path_factory.mktemp("dist") / "shards"
    emb, labels, paths = clustered(n=2400, dims=24, classes=12, seed=5)
    emb[11] = emb[12]
    emb[900] = emb[1700]
    labels[[3, 40, 1000]] = "class0"
    write_shards(folder, emb, labels, paths, shards=3)
    return folder, emb


def test_graph_on_two_workers_equals_the_exact_search(client, sharded):
    folder, emb = sharded
    opened = open_on_cluster(client, str(folder), "cosine")
    assert opened.dataset.n == len(emb) and len(opened.rows.parts) >= 3
    found = distributed_graph(opened.rows, 20)
    assert found.nprobe is None and found.graph.exact
    truth = exact_neighbours(emb, 20, "cosine")
    np.testing.assert_allclose(found.graph.distances, truth.distances, atol=1e-5)
    same = found.graph.indices == truth.indices
    # where two rows are equally near (the duplicates) either order is right
    tied = np.isclose(found.graph.distances, np.roll(found.graph.distances, 1, axis=1), atol=1e-6) | np.isclose(
        found.graph.distances, np.roll(found.graph.distances, -1, axis=1), atol=1e-6
    )
    assert (same | tied).all()


def test_one_npz_split_across_workers_euclidean_equals_the_exact_search(client, tmp_path):
    emb, labels, paths = clustered(n=1500, dims=16, classes=5, seed=2)
    emb = np.abs(emb) + 50.0  # non-negative, with a large common offset: the mean is subtracted before the search
    np.savez_compressed(tmp_path / "one.npz", embeddings=emb, labels=labels, image_paths=paths)
    opened = open_on_cluster(client, str(tmp_path / "one.npz"))
    assert opened.metric == "euclidean" and len(opened.rows.parts) == 4  # two parts per worker
    assert opened.dataset.embedding_digest == load_npz(tmp_path / "one.npz").embedding_digest
    found = distributed_graph(opened.rows, 15)
    truth = exact_neighbours(emb, 15, "euclidean")
    np.testing.assert_array_equal(found.graph.indices, truth.indices)
    np.testing.assert_allclose(found.graph.distances, truth.distances, rtol=1e-4, atol=1e-4)


def test_inverted_file_on_two_workers_reaches_the_recall(client, sharded):
    folder, emb = sharded
    opened = open_on_cluster(client, str(folder), "cosine")
    found = distributed_graph(opened.rows, 20, exact_max_work=0)
    assert found.nprobe is not None and not found.graph.exact
    truth = exact_neighbours(emb, 20, "cosine")
    assert recall(found.graph.indices, found.graph.distances, truth.distances) >= 0.97
    assert (found.graph.indices >= 0).all()
    assert (found.graph.indices != np.arange(len(emb))[:, None]).all()
    assert (np.diff(found.graph.distances, axis=1) >= -1e-6).all()


def test_scores_equal_the_single_process_scan_given_the_same_graph(client, sharded):
    folder, _ = sharded
    opened = open_on_cluster(client, str(folder))
    found = distributed_graph(opened.rows, 20, exact_max_work=0)
    here = load_sharded(folder)
    assert opened.dataset.embedding_digest == here.embedding_digest and opened.dataset.digest == here.digest
    graph = NeighbourGraph(found.graph.indices.copy(), found.graph.distances.copy(), found.graph.metric, False)
    on_cluster = scores_from_graph(opened.dataset, found.graph)
    single = scores_from_graph(here, graph)
    assert on_cluster.labels.n_flagged >= 3 and on_cluster.duplicates.n_flagged >= 4
    assert report_csv(opened.dataset, on_cluster) == report_csv(here, single)


def test_placement_rounds_part_by_part_equal_the_single_machine_placement():
    rng = np.random.default_rng(1)
    emb, _, _ = clustered(n=3000, dims=8, classes=6, seed=4)
    graph = exact_neighbours(emb, 15, "euclidean")
    weights = membership_strengths(graph.distances, 15)
    landmarks = np.sort(rng.choice(3000, size=60, replace=False))
    landmark_coords = rng.normal(size=(60, 3)).astype(np.float32)
    expected, expected_placed = place_from_neighbours(landmark_coords, landmarks, graph.indices, weights)
    coords = np.zeros((3000, 3), np.float32)
    placed = np.zeros(3000, bool)
    coords[landmarks], placed[landmarks] = landmark_coords, True
    parts = [(0, 1000), (1000, 2200), (2200, 3000)]
    while True:
        found = [
            tasks.place_round((graph.indices[a:b], graph.distances[a:b]), weights[a:b], a, coords, placed)
            for a, b in parts
        ]
        if not sum(len(r) for r, _ in found):
            break
        for rows, values in found:
            coords[rows], placed[rows] = values, True
    np.testing.assert_array_equal(placed, expected_placed)
    np.testing.assert_allclose(coords, expected, rtol=1e-5, atol=1e-6)


def test_a_worker_killed_mid_run_gives_the_same_graph(client, sharded):
    folder, _ = sharded
    reference = distributed_graph(open_on_cluster(client, str(folder), "cosine").rows, 20, exact_max_work=0).graph
    opened = open_on_cluster(client, str(folder), "cosine")
    victim = sorted(client.scheduler_info()["workers"])[0]
    killed = threading.Event()

    def kill() -> None:
        time.sleep(0.5)  # the lists are being built and searched by now
        try:
            client.run(os._exit, 1, workers=[victim])
        except Exception:  # the worker dies before it answers
            pass
        killed.set()

    killer = threading.Thread(target=kill)
    killer.start()
    found = distributed_graph(opened.rows, 20, exact_max_work=0)
    killer.join()
    assert killed.is_set()
    np.testing.assert_array_equal(found.graph.indices, reference.indices)
    np.testing.assert_array_equal(found.graph.distances, reference.distances)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def _run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cleaner", "scan", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_an_unreachable_scheduler_gives_a_clear_message_within_the_timeout(tmp_path, sharded):
    folder, _ = sharded
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    started = time.monotonic()
    proc = _run_cli(
        str(folder),
        "--out",
        "r.csv",
        "--dask",
        f"tcp://127.0.0.1:{port}",
        "--dask-timeout",
        "3",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "could not reach the Dask scheduler" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert time.monotonic() - started < 60
    proc = _run_cli(str(folder), "--out", "r.csv", "--dask", "local:2", "--thorough", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "--thorough" in proc.stderr


def test_scan_precompute_on_a_local_cluster_writes_what_the_app_reads(tmp_path, sharded):
    folder, emb = sharded
    proc = _run_cli(
        str(folder),
        "--out",
        str(tmp_path / "dask.csv"),
        "--precompute",
        "--dask",
        "local:2",
        "--map-limit",
        "1000",
        "--no-image-check",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "neighbour graph on the cluster" in proc.stdout and "map sample: 1,000 of 2,400" in proc.stdout
    here = load_sharded(folder)
    side = read_sidecar(sidecar_path(folder), here.embedding_digest, here.n, 20, "cosine", 1 << 30)
    assert side.graph.exact
    for coords in side.layouts.values():
        assert coords.shape[0] == here.n and np.isfinite(coords).all() and coords.std(axis=0).min() > 0
    sample = read_map_sample(map_sample_path(folder), here.embedding_digest, here.n, 1 << 30)
    assert len(sample.rows) == 1000 and "class-stratified" in sample.how
    single = _run_cli(str(folder), "--out", str(tmp_path / "single.csv"), "--no-image-check", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    assert (tmp_path / "dask.csv").read_text() == (tmp_path / "single.csv").read_text()


def _kept_neighbours(original: np.ndarray, mapped: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest rows by cosine in the embeddings kept among its k nearest on the map."""
    unit = original / np.linalg.norm(original, axis=1, keepdims=True)
    near = []
    for space, sim in ((unit, True), (mapped.astype(np.float64), False)):
        score = space @ space.T if sim else -((space[:, None, :] - space[None, :, :]) ** 2).sum(axis=2)
        np.fill_diagonal(score, -np.inf)
        near.append(np.argpartition(-score, k, axis=1)[:, :k])
    return float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(*near, strict=True)]) / k)


@pytest.mark.timeout(1800)  # numba compiles UMAP's kernels in each worker process first
def test_the_distributed_layout_is_refined_as_the_single_process_one_is(client, tmp_path):
    # 4,800 rows: above umap-learn's small-data bound (below it the refinement would not use the graph); 480
    # landmarks, so most rows are placed rather than laid out.
    emb, labels, paths = clustered(n=4800, dims=16, classes=8, seed=9)
    write_shards(tmp_path / "shards", emb, labels, paths, shards=3)
    opened = open_on_cluster(client, str(tmp_path / "shards"), "cosine")
    found = distributed_graph(opened.rows, 20)
    seconds: dict = {}
    refined = distributed_layouts(opened.rows, found, "cosine", landmarks=480, seconds=seconds)
    placed = distributed_layouts(opened.rows, found, "cosine", landmarks=480, refine_epochs=0)
    assert seconds["refined"] and seconds["refine"] > 0
    single = landmark_layout(emb, found.graph, LayoutParams(n_components=3, metric="cosine"), count=480)
    kept = {name: _kept_neighbours(emb, coords) for name, coords in (("refined", refined[3][1]), ("single", single))}
    moved = np.linalg.norm(refined[3][1] - placed[3][1], axis=1)
    spread = np.linalg.norm(placed[3][1].std(axis=0))
    assert np.median(moved) > 0.01 * spread  # the optimiser moved the placed rows, not only the landmarks
    assert abs(kept["refined"] - kept["single"]) <= 0.02, kept
    assert refined[2][1].shape == (len(emb), 2) and np.isfinite(refined[2][1]).all()
