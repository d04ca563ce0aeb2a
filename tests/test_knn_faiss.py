"""The faiss kNN backend: exact where small, a recall-checked inverted file above, against numpy brute force."""

import threading

import numpy as np
import pytest

from cleaner.graph import calibration, knn_backends
from cleaner.graph.knn_backends import FaissBackend, KnnResult
from cleaner.graph.neighbours import NeighbourGraph, approximate_neighbours, exact_neighbours, neighbour_graph


def _clusters(n: int, dims: int = 24, n_clusters: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dims)) * 4
    return (centers[rng.integers(0, n_clusters, n)] + rng.normal(size=(n, dims))).astype(np.float32)


def _brute_force(x: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest other rows in float64: indices and distances in the metric's units."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1.0 - x @ x.T
    else:
        sq = (x * x).sum(1)
        d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    np.fill_diagonal(d, np.inf)
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    idx = np.take_along_axis(part, np.argsort(np.take_along_axis(d, part, axis=1), axis=1), axis=1)
    return idx, np.take_along_axis(d, idx, axis=1)


def _recall(graph: NeighbourGraph, x: np.ndarray) -> float:
    """Share of the graph's neighbours no farther than the exact k-th nearest (ties count as found)."""
    _, truth_d = _brute_force(x, graph.k, graph.metric)
    return float((graph.distances <= truth_d[:, -1:] + 1e-4).mean())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_graph_equals_brute_force_on_small_data(metric, dtype):
    x = np.random.default_rng(3).normal(size=(400, 20)).astype(dtype)
    graph = neighbour_graph(x, k=9, metric=metric)
    idx, dist = _brute_force(x, 9, metric)
    assert graph.exact and graph.indices.dtype == np.int32 and graph.distances.dtype == np.float32
    np.testing.assert_array_equal(graph.indices, idx)
    np.testing.assert_allclose(graph.distances, dist, atol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_index_search_on_clustered_data_reaches_the_recall(metric, monkeypatch):
    x = _clusters(6000, seed=1)
    monkeypatch.setattr(knn_backends, "EXACT_MAX_WORK", 1000**2 * 24)  # this size of data takes the index path
    graph = neighbour_graph(x, k=15, metric=metric)
    assert not graph.exact
    assert _recall(graph, x) >= 0.97
    assert not (graph.indices == np.arange(len(x))[:, None]).any()
    assert (np.diff(graph.distances, axis=1) >= -1e-6).all()
    # the distances are the metric's, computed here from the rows themselves
    rows = np.arange(0, 6000, 97)
    a, b = x[rows].astype(np.float64), x[graph.indices[rows, 4]].astype(np.float64)
    if metric == "cosine":
        expected = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    else:
        expected = np.linalg.norm(a - b, axis=1)
    np.testing.assert_allclose(graph.distances[rows, 4], expected, atol=1e-3)


def test_unclustered_data_is_never_served_a_poor_graph():
    x = np.random.default_rng(2).normal(size=(6000, 48)).astype(np.float32)
    backend = FaissBackend(exact_max_work=0)
    indices, distances, exact = backend.search(x, 15, "cosine")
    graph = NeighbourGraph(indices, distances, "cosine", exact)
    assert _recall(graph, x) >= 0.97


def test_calibration_widens_from_a_tiny_nprobe():
    x = _clusters(6000, dims=32, n_clusters=6, seed=4)  # few wide clusters: one list is far from enough
    backend = FaissBackend(exact_max_work=0, first_nprobe=1)
    result = backend.search(x, 15, "euclidean")
    assert not result.exact and backend.last_nprobe > 1
    assert _recall(NeighbourGraph(*result[:2], "euclidean", False), x) >= 0.97


@pytest.fixture
def no_calibration(monkeypatch):
    """Skips the calibration on the first sample, so only the check of the finished graph can widen the search."""
    monkeypatch.setattr(calibration, "calibrate", lambda lists, data, rows, truth_d2, k, nprobe, min_recall: nprobe)


def test_check_of_the_finished_graph_widens_the_search(no_calibration):
    x = _clusters(6000, dims=32, n_clusters=6, seed=4)
    backend = FaissBackend(exact_max_work=0, first_nprobe=1)
    result = backend.search(x, 15, "euclidean")
    assert backend.last_nprobe > 1
    assert _recall(NeighbourGraph(*result[:2], "euclidean", False), x) >= 0.97


def test_rows_whose_probed_lists_are_too_small_get_their_exact_neighbours(no_calibration):
    x = _clusters(400, dims=8, seed=5)
    backend = FaissBackend(exact_max_work=0, first_nprobe=1, min_recall=0.0)  # a poor graph on purpose
    indices, distances, exact = backend.search(x, 60, "euclidean")  # lists of ~40 rows, 61 wanted
    assert not exact and indices.min() >= 0 and np.isfinite(distances).all()
    assert not (indices == np.arange(400)[:, None]).any()


def test_search_turns_exact_when_no_affordable_probe_reaches_the_recall():
    x = _clusters(3000, seed=6)
    result = FaissBackend(exact_max_work=0, min_recall=1.01).search(x, 10, "cosine")
    assert result.exact
    np.testing.assert_array_equal(result.indices, _brute_force(x, 10, "cosine")[0])


def test_approximate_search_is_deterministic():
    x = _clusters(6000, seed=3)
    a, b = approximate_neighbours(x, 10), approximate_neighbours(x, 10)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_duplicates_and_zero_vectors():
    rng = np.random.default_rng(7)
    x = np.repeat(rng.normal(size=(20, 16)), 30, axis=0).astype(np.float32)  # 30 copies of each row
    x[:5] = 0.0
    for metric in ("cosine", "euclidean"):
        graph = neighbour_graph(x, k=10, metric=metric)
        assert np.isfinite(graph.distances).all() and graph.indices.min() >= 0
        assert not (graph.indices == np.arange(len(x))[:, None]).any()
        twins = graph.indices[100:] // 30 == (np.arange(100, len(x)) // 30)[:, None]
        assert twins.all() and np.allclose(graph.distances[100:], 0.0, atol=1e-4)


def test_duplicates_on_the_index_path():
    rng = np.random.default_rng(8)
    x = np.repeat(rng.normal(size=(300, 16)) * 5, 25, axis=0).astype(np.float32)  # 7,500 rows, 25 copies each
    graph = approximate_neighbours(x, k=10, metric="euclidean")
    assert not graph.exact and not (graph.indices == np.arange(len(x))[:, None]).any()
    assert (graph.indices // 25 == (np.arange(len(x)) // 25)[:, None]).mean() >= 0.97


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_data_caps_k(n):
    x = np.random.default_rng(9).normal(size=(n, 4))
    graph = neighbour_graph(x, k=20)
    assert graph.indices.shape == graph.distances.shape == (n, n - 1)
    assert not (graph.indices == np.arange(n)[:, None]).any()


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError):
        neighbour_graph(np.zeros((10, 3), np.float32), k=3, metric="manhattan")


def test_searches_from_several_threads_agree():
    x = _clusters(2000, seed=10)
    results: list = [None] * 3

    def work(i: int) -> None:
        results[i] = exact_neighbours(x, 8, "cosine").indices

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_graph_uses_the_backend_it_is_given():
    class Fixed:
        def search(self, embeddings, k, metric):
            n = len(embeddings)
            indices = (np.arange(n)[:, None] + np.arange(1, k + 1)[None, :]) % n
            return KnnResult(indices.astype(np.int32), np.ones((n, k), np.float32), False)

    graph = neighbour_graph(np.zeros((30, 4), np.float32), k=5, backend=Fixed())
    assert graph.indices[0].tolist() == [1, 2, 3, 4, 5] and not graph.exact


@pytest.mark.parametrize("min_recall", [0.9, 1.01])  # the index serves the graph; the index is dropped for exact
def test_the_index_memory_is_handed_back_once_the_index_is_gone(monkeypatch, min_recall):
    import gc

    import faiss

    calls = []

    def spy() -> None:
        gc.collect()
        calls.append(sum(isinstance(o, faiss.Index) for o in gc.get_objects()))

    monkeypatch.setattr(knn_backends, "release_freed_memory", spy)
    x = _clusters(3000)
    result = FaissBackend(exact_max_work=0, min_recall=min_recall).search(x, 10, "euclidean")
    assert calls == [0]  # called once, when no index (and its copy of every row) is alive any more
    assert result.exact == (min_recall > 1)


def test_handing_memory_back_is_harmless_without_glibc(monkeypatch):
    def no_libc(*_args, **_kwargs):
        raise OSError("no C library here")

    monkeypatch.setattr(knn_backends.ctypes, "CDLL", no_libc)
    knn_backends.release_freed_memory()  # nothing to do, and no error


def _offset_clusters(n: int, dims: int, seed: int) -> np.ndarray:
    """Long rows that differ little: a large common offset, as non-negative activations have."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(8, dims)) * 0.05
    return (20.0 + centers[rng.integers(0, 8, n)] + rng.normal(size=(n, dims)) * 0.01).astype(np.float32)


@pytest.mark.parametrize("exact_max_work", [None, 0])  # the exact search, and the inverted file
def test_euclidean_distances_survive_a_large_common_offset(exact_max_work):
    x = _offset_clusters(4000, 128, seed=12)
    indices, distances, _ = FaissBackend(exact_max_work=exact_max_work).search(x, 10, "euclidean")
    truth_idx, truth_d = _brute_force(x, 10, "euclidean")
    assert (distances > 0).all()  # no pair of these rows is a duplicate
    expected = np.linalg.norm(x[indices].astype(np.float64) - x[:, None, :].astype(np.float64), axis=2)
    np.testing.assert_allclose(distances, expected, rtol=1e-3)  # each distance is its pair's
    assert (distances <= truth_d[:, -1:] * (1 + 1e-3)).mean() >= 0.97  # and the pairs are the nearest
