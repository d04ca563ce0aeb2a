"""Unit tests for the neighbour graph, the layouts and the demo."""

import numpy as np
import pytest

from cleaner.graph.neighbours import approximate_neighbours, exact_neighbours, neighbour_graph
from cleaner.io.dataset import dataset_from_arrays
from cleaner.layout.layouts import LayoutParams, LayoutStore, pca_projection

from .conftest import clustered_arrays


def brute_force(x, k, metric):
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1 - x @ x.T
    else:
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k], np.sort(d, axis=1)[:, :k]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_neighbours_match_brute_force(metric):
    x = np.random.default_rng(1).normal(size=(300, 12)).astype(np.float32)
    graph = exact_neighbours(x, 7, metric)
    idx, dist = brute_force(x.astype(np.float64), 7, metric)
    assert graph.indices.shape == (300, 7)
    assert (graph.indices == idx).mean() > 0.99  # ties may order differently in float32
    np.testing.assert_allclose(graph.distances, dist, atol=1e-4)
    assert not (graph.indices == np.arange(300)[:, None]).any()


def test_exact_duplicates_never_list_themselves():
    x = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    x[10] = x[11]
    graph = exact_neighbours(x, 3, "euclidean")
    assert graph.indices[10, 0] == 11 and graph.indices[11, 0] == 10
    assert graph.distances[10, 0] == pytest.approx(0, abs=1e-3)
    idx, dist = graph.with_self()
    assert (idx[:, 0] == np.arange(50)).all() and (dist[:, 0] == 0).all()


def test_approximate_neighbours_agree_with_exact_on_clusters():
    emb, _ = clustered_arrays(n_per_class=100, n_classes=5, dims=8)
    exact = exact_neighbours(emb, 10, "euclidean")
    approx = approximate_neighbours(emb, 10, "euclidean")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.indices, approx.indices)])
    assert recall > 0.9
    assert not (approx.indices == np.arange(len(emb))[:, None]).any()


def test_graph_k_is_capped_by_dataset_size():
    emb, _ = clustered_arrays(n_per_class=4, n_classes=3)
    assert neighbour_graph(emb, k=20).k == 11


def test_pca_projection_keeps_the_main_axis():
    rng = np.random.default_rng(3)
    x = np.zeros((200, 5), dtype=np.float32)
    x[:, 2] = rng.normal(0, 10, 200)
    x += rng.normal(0, 0.1, x.shape).astype(np.float32)
    proj = pca_projection(x, 3)
    assert proj.shape == (200, 3)
    assert abs(np.corrcoef(proj[:, 0], x[:, 2])[0, 1]) > 0.99


def test_pca_projection_is_computed_once_per_array(monkeypatch):
    from cleaner.layout import layouts as layout

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 12)).astype(np.float32) * np.arange(1, 13, dtype=np.float32)
    direct2 = layout._scaled(layout._project(x, 2))
    calls = []
    real = layout._project
    monkeypatch.setattr(layout, "_project", lambda e, n: calls.append(n) or real(e, n))
    three, two = pca_projection(x, 3), pca_projection(x, 2)
    assert len(calls) == 1  # the preview and both UMAP starts share one projection
    np.testing.assert_allclose(two, direct2, atol=1e-5)
    np.testing.assert_allclose(np.abs(three[:, :2] / np.abs(three[:, :2]).max()), np.abs(two / 10), atol=1e-5)
    other = x.copy()  # another array (even equal) is projected on its own
    pca_projection(other, 3)
    assert len(calls) == 2


def test_layout_store_round_trip_and_eviction(tmp_path):
    store = LayoutStore(tmp_path / "layouts", max_bytes=2000, packaged=tmp_path / "none")
    params = LayoutParams()
    coords = np.arange(300, dtype=np.float32).reshape(100, 3)
    assert store.get("abc", params, 100) is None
    store.put("abc", params, coords)
    np.testing.assert_array_equal(store.get("abc", params, 100), coords)
    assert store.get("abc", params, 99) is None  # a different dataset size is never served
    assert store.get("abc", LayoutParams(min_dist=0.5), 100) is None
    store.put("def", params, coords)  # over the byte bound: the oldest goes
    assert len(list((tmp_path / "layouts").glob("*.npy"))) == 1


@pytest.mark.parametrize("damage", ["truncated", "zip", "ints", "empty"])
def test_layout_store_treats_a_damaged_file_as_a_miss(tmp_path, damage):
    store = LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none")
    params = LayoutParams()
    coords = np.arange(300, dtype=np.float32).reshape(100, 3)
    store.put("abc", params, coords)
    path = tmp_path / "layouts" / store.file_name("abc", params)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "zip":
        with path.open("wb") as fh:
            np.savez(fh, coords=coords)
    elif damage == "ints":
        with path.open("wb") as fh:
            np.save(fh, coords.astype(np.int64))
    else:
        path.write_bytes(b"")
    assert store.get("abc", params, 100) is None


def _tiny_dataset(labels=None):
    emb, default_labels = clustered_arrays(n_per_class=10, n_classes=3, dims=4)
    labels = default_labels if labels is None else labels
    paths = np.array([f"/img/{i}.png" for i in range(len(emb))])
    return dataset_from_arrays(emb, labels, paths, "tiny"), pca_projection(emb, 3)


def test_demo_is_real_digits_with_images_and_shipped_layouts(tmp_path):
    from PIL import Image

    from cleaner.io.demo import load_demo

    demo = load_demo(tmp_path / "demo")
    assert demo.n == 1797 and demo.dims == 64 and len(demo.class_names) == 10
    first = Image.open(demo.image_paths[0])
    assert first.size == (8, 8)
    store = LayoutStore(tmp_path / "empty")
    for n in (3, 2):  # the cold server serves the demo map without running UMAP
        coords = store.get(demo.embedding_digest, LayoutParams(n_components=n), demo.n)
        assert coords is not None and coords.shape == (1797, n)
