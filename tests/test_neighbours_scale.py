"""The graph at scale: the recall check, the graph cache on disk, and the large-data layout on the graph."""

import numpy as np
import pytest

from cleaner.graph import exact, knn_rows, neighbours
from cleaner.graph.neighbours import GraphStore, exact_neighbours, neighbour_graph


def _clusters(n: int, dims: int = 24, n_clusters: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dims)) * 4
    return (centers[rng.integers(0, n_clusters, n)] + rng.normal(size=(n, dims))).astype(np.float32)


def test_recall_check_counts_an_equally_near_duplicate_as_found():
    # 40 groups of 25 identical rows: any 10 of a row's 24 twins are exact nearest neighbours.
    rng = np.random.default_rng(5)
    x = np.repeat(rng.normal(size=(40, 16)) * 5, 25, axis=0).astype(np.float32)
    rows = np.arange(0, 1000, 7)
    _, truth_d2 = exact.exact_rows(knn_rows.ComparedRows(x, "euclidean"), rows, 10)
    group_start = (np.arange(1000) // 25) * 25
    # Twins picked from the far end of each group, unlike the ones the exact search happens to list first.
    twins = np.array([[g + 24 - j if g + 24 - j != r else g for j in range(10)] for r, g in enumerate(group_start)])

    def d2(found: np.ndarray) -> np.ndarray:
        return ((x[rows, None, :] - x[found]) ** 2).sum(-1)

    assert knn_rows.recall(twins[rows], d2(twins[rows]), truth_d2) == 1.0
    # A graph that lists rows of another group is still caught, and so is a missing neighbour (-1).
    wrong = (twins[rows] + 25) % 1000
    assert knn_rows.recall(wrong, d2(wrong), truth_d2) == 0.0
    missing = twins[rows].copy()
    missing[:, -1] = -1
    assert knn_rows.recall(missing, d2(twins[rows]), truth_d2) == pytest.approx(0.9)


def test_graph_store_round_trip_and_rejects_a_graph_of_other_data(tmp_path):
    x = _clusters(400)
    store = GraphStore(tmp_path / "graphs")
    graph = neighbour_graph(x, k=8, store=store, embedding_digest="abc")
    again = store.get("abc", 8, "cosine", 400)
    np.testing.assert_array_equal(again.indices, graph.indices)
    np.testing.assert_allclose(again.distances, graph.distances)
    assert store.get("abc", 8, "euclidean", 400) is None  # other metric, other key
    assert store.get("abc", 8, "cosine", 399) is None  # shapes that do not fit are never served
    (tmp_path / "graphs" / GraphStore.file_name("abc", 8, "cosine")).write_bytes(b"not an npz")
    assert store.get("abc", 8, "cosine", 400) is None  # a corrupt file costs a recomputation, nothing else
    stored = tmp_path / "graphs" / GraphStore.file_name("abc", 8, "cosine")
    store.put("abc", 8, graph)
    stored.write_bytes(stored.read_bytes()[:300])  # a zip cut short: BadZipFile, not OSError
    assert store.get("abc", 8, "cosine", 400) is None


def test_graph_store_uses_the_stored_graph_and_keeps_within_its_size(tmp_path, monkeypatch):
    x = _clusters(300)
    store = GraphStore(tmp_path / "graphs", max_bytes=60_000)
    first = neighbour_graph(x, k=10, store=store, embedding_digest="d1")
    monkeypatch.setattr(neighbours, "_search", lambda *a, **k: pytest.fail("searched again"))
    np.testing.assert_array_equal(neighbour_graph(x, k=10, store=store, embedding_digest="d1").indices, first.indices)
    monkeypatch.undo()
    for digest in ("d2", "d3", "d4"):
        neighbour_graph(x, k=10, store=store, embedding_digest=digest)
    files = list((tmp_path / "graphs").glob("graph_*.npz"))
    assert sum(f.stat().st_size for f in files) <= 60_000 and len(files) < 4  # oldest evicted
    assert store.get("d4", 10, "cosine", 300) is not None  # the newest stays


def test_large_data_layout_keeps_the_clusters_apart(monkeypatch):
    """The large-data path (PCA start, parallel epochs, fewer of them), run on small data by lowering its bound."""
    from cleaner.layout import layouts as layout

    x = _clusters(900, n_clusters=4, seed=5)
    centers = np.random.default_rng(5).normal(size=(4, 24)) * 4  # as _clusters draws them
    truth = np.argmin(((x[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
    monkeypatch.setattr(layout, "LARGE_MIN_ROWS", 100)
    coords = layout.umap_layout(x, neighbour_graph(x, k=15), layout.LayoutParams(n_components=3))
    assert coords.shape == (900, 3) and coords.dtype == np.float32 and np.isfinite(coords).all()
    nearest = exact_neighbours(coords, 10, "euclidean").indices
    assert (truth[nearest] == truth[:, None]).mean() > 0.95  # map neighbours come from the same cluster


def test_large_data_epochs_follow_the_budget():
    from cleaner.layout.layouts import large_data_epochs

    assert large_data_epochs(20_000) == 200 and large_data_epochs(100_000) == 100
    assert large_data_epochs(10**7) == 100 and 100 < large_data_epochs(70_000) < 200
