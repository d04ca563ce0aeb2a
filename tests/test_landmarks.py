"""The landmark layout: the placement arithmetic (numpy only), the switch at LANDMARK_MIN_ROWS, and the stored
layouts' names. Expected values are computed here from the inputs; no timings."""

import numpy as np
import pytest

from cleaner.graph.neighbours import NeighbourGraph, exact_neighbours
from cleaner.layout import layouts
from cleaner.layout.landmarks import choose_landmarks, membership_strengths, nearest_rows, place_from_neighbours
from cleaner.layout.layouts import LayoutParams, LayoutStore

from .conftest import clustered_arrays


def test_landmarks_are_distinct_sorted_and_seeded():
    rows = choose_landmarks(1000, 100, seed=7)
    assert len(np.unique(rows)) == 100 and np.all(np.diff(rows) > 0) and rows.min() >= 0 and rows.max() < 1000
    np.testing.assert_array_equal(rows, choose_landmarks(1000, 100, seed=7))
    assert not np.array_equal(rows, choose_landmarks(1000, 100, seed=8))
    np.testing.assert_array_equal(choose_landmarks(50, 100, seed=7), np.arange(50))  # fewer rows than landmarks


def test_membership_strengths_are_umaps():
    """exp(-(d - rho) / sigma), the nearest neighbour at 1, each row summing to log2(n_neighbors)."""
    d = np.sort(np.random.default_rng(0).uniform(0.1, 1.0, size=(50, 20)), axis=1).astype(np.float32)
    w = membership_strengths(d, n_neighbors=15)
    assert w.shape == (50, 14)  # n_neighbors counts the point itself
    np.testing.assert_allclose(w[:, 0], 1.0)
    np.testing.assert_allclose(w.sum(axis=1), np.log2(15), rtol=1e-3)
    assert np.all(np.diff(w, axis=1) <= 1e-7)  # farther neighbours belong less
    rho, excess = d[:, :1], d[:, :14] - d[:, :1]
    sigma = -excess[:, 1] / np.log(w[:, 1])  # one row's sigma read back, then every weight follows from it
    np.testing.assert_allclose(w, np.exp(-excess / sigma[:, None]), rtol=1e-4)
    assert rho.shape == (50, 1)


def test_a_row_with_placed_neighbours_lands_at_their_weighted_mean():
    landmarks = np.array([0, 1, 2])
    landmark_coords = np.array([[0, 0, 0], [4, 0, 0], [0, 8, 2]], dtype=np.float32)
    indices = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [3, 0, 1]])
    weights = np.array([[1, 0.5, 0.2]] * 4 + [[1, 0.3, 0.1]], dtype=np.float32)
    coords, placed = place_from_neighbours(landmark_coords, landmarks, indices, weights)
    assert placed.all()
    np.testing.assert_array_equal(coords[:3], landmark_coords)  # landmarks keep their places
    expected3 = (1 * landmark_coords[0] + 0.5 * landmark_coords[1] + 0.2 * landmark_coords[2]) / 1.7
    np.testing.assert_allclose(coords[3], expected3, rtol=1e-6)
    # Row 4's first neighbour (row 3) is placed in the same round as row 4 itself: only the landmarks count.
    expected4 = (0.3 * landmark_coords[0] + 0.1 * landmark_coords[1]) / 0.4
    np.testing.assert_allclose(coords[4], expected4, rtol=1e-6)


def test_every_row_is_placed_in_rounds_along_the_graph():
    """A chain 0 - 1 - ... - 99 with one landmark at each end: row i is placed in round min(i, 99 - i)."""
    n = 100
    indices = np.array([[max(i - 1, 0) if i else 1, min(i + 1, n - 1) if i < n - 1 else n - 2] for i in range(n)])
    weights = np.ones((n, 2), dtype=np.float32)
    coords, placed = place_from_neighbours(np.array([[0.0], [1.0]], np.float32), np.array([0, n - 1]), indices, weights)
    assert placed.all()
    assert coords[1, 0] == 0.0 and coords[n - 2, 0] == 1.0  # first round: from the one placed neighbour each
    assert np.all((coords >= 0) & (coords <= 1))


def test_rows_cut_off_from_every_landmark_are_reported_unplaced():
    indices = np.array([[1], [0], [3], [2]])  # two pairs; only the first pair holds a landmark
    coords, placed = place_from_neighbours(
        np.array([[5.0, 5.0]], np.float32), np.array([0]), indices, np.ones((4, 1), np.float32)
    )
    assert placed.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(coords[1], [5.0, 5.0])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_nearest_rows_is_the_exact_nearest(metric):
    rng = np.random.default_rng(3)
    q, c = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(70, 16)).astype(np.float32)
    if metric == "cosine":
        qn, cn = (a / np.linalg.norm(a, axis=1, keepdims=True) for a in (q, c))
        expected = (qn @ cn.T).argmax(axis=1)
    else:
        expected = ((q[:, None] - c[None]) ** 2).sum(-1).argmin(axis=1)
    np.testing.assert_array_equal(nearest_rows(q, c, metric, block=64), expected)


def test_the_layout_switches_to_landmarks_at_the_threshold(monkeypatch):
    calls = []
    monkeypatch.setattr(layouts, "landmark_layout", lambda e, g, p, **_: calls.append(("landmarks", len(e))))
    monkeypatch.setattr(layouts, "full_umap_layout", lambda e, g, p: calls.append(("full", len(e))))
    monkeypatch.setattr(layouts, "LANDMARK_MIN_ROWS", 100)
    graph = NeighbourGraph(np.zeros((0, 1), np.int32), np.zeros((0, 1), np.float32), "cosine", True)
    for n in (99, 100, 101):
        layouts.umap_layout(np.zeros((n, 4), np.float32), graph, LayoutParams())
    assert calls == [("full", 99), ("landmarks", 100), ("landmarks", 101)]


def test_landmark_layouts_are_stored_under_a_name_of_their_own(tmp_path):
    params, big = LayoutParams(), layouts.LANDMARK_MIN_ROWS
    small_name = LayoutStore.file_name("abc", params, big - 1)
    assert small_name == LayoutStore.file_name("abc", params) == f"abc_{params.key()}.npy"  # the demo's stay valid
    big_name = LayoutStore.file_name("abc", params, big)
    assert big_name != f"abc_{params.key()}.npy" and f"landmarks{layouts.LANDMARK_VERSION}" in big_name
    # A layout the whole-data UMAP stored for a large dataset before (the old name) is not served any more.
    store = LayoutStore(tmp_path, packaged=tmp_path / "none")
    folder = tmp_path
    folder.mkdir(exist_ok=True)
    np.save(folder / f"abc_{params.key()}.npy", np.ones((big, 3), np.float32))
    assert store.get("abc", params, big) is None
    coords = np.zeros((big, 3), np.float32)
    store.put("abc", params, coords)
    assert (folder / big_name).exists() and store.get("abc", params, big) is not None


def test_a_new_landmark_version_is_a_new_name(monkeypatch):
    params, big = LayoutParams(), layouts.LANDMARK_MIN_ROWS
    before = LayoutStore.file_name("abc", params, big)
    monkeypatch.setattr(layouts, "LANDMARK_VERSION", layouts.LANDMARK_VERSION + 1)
    assert LayoutStore.file_name("abc", params, big) != before


def _small_landmark_setup(monkeypatch):
    emb, labels = clustered_arrays(n_per_class=150, n_classes=4, dims=8)
    graph = exact_neighbours(emb, 15, "cosine")
    monkeypatch.setattr(layouts, "LANDMARK_MIN_ROWS", 500)
    monkeypatch.setattr(layouts, "LANDMARK_COUNT", 200)
    monkeypatch.setattr(layouts, "LANDMARK_EPOCHS", 50)
    return emb, labels, graph


def test_landmark_layout_end_to_end_is_seeded_on_one_core(monkeypatch):
    import numba

    emb, labels, graph = _small_landmark_setup(monkeypatch)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # one core: umap-learn runs seeded
    try:
        runs = [layouts.umap_layout(emb, graph, LayoutParams(n_components=n)) for n in (3, 3, 2)]
    finally:
        numba.set_num_threads(threads)
    assert runs[0].shape == (600, 3) and runs[2].shape == (600, 2) and np.isfinite(runs[0]).all()
    np.testing.assert_array_equal(runs[0], runs[1])
    # the clusters stay apart: each point's nearest map neighbour mostly shares its label
    d = ((runs[0][:, None] - runs[0][None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.9


def test_the_2d_map_reuses_the_3d_maps_landmarks(monkeypatch):
    emb, _, graph = _small_landmark_setup(monkeypatch)
    three = layouts.landmark_plan(emb, graph, LayoutParams(n_components=3))
    assert layouts.landmark_plan(emb, graph, LayoutParams(n_components=2)) is three  # no second search
    assert len(three.rows) == 200 and three.graph.k == 14 and three.weights.shape == (600, 14)


def test_a_row_cut_off_from_the_landmarks_goes_to_its_nearest_landmark(monkeypatch):
    """Two rows that are only each other's neighbours and no landmark: each lands near its nearest landmark in the
    embedding space, a little apart."""
    emb, _, graph = _small_landmark_setup(monkeypatch)
    monkeypatch.setattr(layouts, "LANDMARK_REFINE_EPOCHS", 0)
    rows = layouts.landmark_plan(emb, graph, LayoutParams()).rows
    a, b = np.setdiff1d(np.arange(len(emb)), rows)[:2]
    indices, distances = graph.indices.copy(), graph.distances.copy()
    indices[a], indices[b] = b, a
    cut = NeighbourGraph(indices, distances, "cosine", True)
    timings = {}
    coords = layouts.landmark_layout(emb, cut, LayoutParams(), timings=timings)
    assert timings["unplaced"] == 2
    landmark_coords = coords[rows]
    spread = np.median(landmark_coords.std(axis=0))
    for row in (a, b):
        near = rows[nearest_rows(emb[[row]], emb[rows], "cosine")[0]]
        assert np.linalg.norm(coords[row] - coords[near]) < 0.1 * spread
    assert not np.array_equal(coords[a], coords[b])
