"""A dataset whose neighbours take long to find: the page is usable at once on a PCA preview, the scores follow."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from cleaner.graph import service as graph_service
from cleaner.graph.distance import resolved_metric
from cleaner.io.dataset import load_npz, npz_bytes
from cleaner.layout.layouts import LayoutParams
from cleaner.ui import cache, compute

from .conftest import clustered_arrays

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def _suspects_box_height(at: AppTest) -> int | None:
    """The fixed pixel height of the block holding the "Suspects:" summary; None when it has none."""
    blocks = [at.main]
    while blocks:
        block = blocks.pop()
        children = list(block.children.values())
        if any(type(c).__name__ == "Text" and c.value.startswith("Suspects:") for c in children):
            return block.proto.height_config.pixel_height or None
        blocks += [c for c in children if hasattr(c, "children")]
    return None


def _texts(at: AppTest) -> str:
    return "\n".join([t.value for t in at.text] + [m.value for m in at.markdown])


def test_the_page_works_on_a_preview_while_the_neighbours_are_found(allowed_root, monkeypatch):
    emb, codes = clustered_arrays(n_per_class=20, n_classes=3, dims=8, seed=21)
    folder = allowed_root / "slow_graph"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(codes)):
        Image.new("RGB", (12, 12), (i, 80, 160)).save(folder / f"img_{i:03d}.png")
        paths.append(str(folder / f"img_{i:03d}.png"))
    data = npz_bytes(emb, np.array(["cat", "dog", "eel"])[codes], np.array(paths))
    dataset = load_npz(data)
    released = threading.Event()
    search = graph_service.neighbour_graph

    def slow_search(embeddings, **kwargs):
        released.wait(120)  # a search that outlasts the page's wait, as a large dataset's does
        return search(embeddings, **kwargs)

    monkeypatch.setattr(graph_service, "neighbour_graph", slow_search)
    monkeypatch.setattr(compute, "GRAPH_WAIT_S", 0.2)
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.radio(key="data_source").set_value("Upload an NPZ").run()
    at.file_uploader(key="npz_upload").set_value(("slow.npz", data, "application/octet-stream")).run()
    assert not at.exception, at.exception

    # at once: the preview, what is being found, and a gallery that works
    assert "nearest neighbours of 60 samples are found" in _captions(at) and "PCA preview" in _captions(at)
    assert "Suspects: scored once the nearest neighbours are found" in _texts(at)
    waiting_height = _suspects_box_height(at)
    assert waiting_height  # a box of fixed height: the review pane below does not move when the scores arrive
    at.selectbox(key="select_class").set_value("dog")
    at.button(key="btn_class").click().run()
    assert "Selected: 20 images" in _texts(at)
    # the neighbours' controls are there, disabled, so nothing below them moves when the neighbours arrive
    assert at.slider(key="knn_k").disabled and at.button(key="btn_knn").disabled
    at.radio(key="review_view").set_value("Review queue").run()
    assert any("needs the nearest neighbours" in i.value for i in at.info)
    assert not at.exception

    # the search ends: the next run has the scores, the queue, and asks for the UMAP map
    released.set()
    cfg = cache.settings()
    graphs = cache.graph_service(str(cfg.cache_dir), cfg.cache_max_bytes)
    metric = resolved_metric("auto", dataset.embeddings)  # the page's default distance for these embeddings
    graphs.wait(dataset.embedding_digest, compute.GRAPH_K, metric, timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert "nearest neighbours of 60 samples are found" not in _captions(at)
    assert "Suspects: scored once" not in _texts(at)
    assert "Suspects: " in _texts(at)
    assert _suspects_box_height(at) == waiting_height
    assert not any("needs the nearest neighbours" in i.value for i in at.info)
    layouts = cache.layout_service(str(cfg.cache_dir), cfg.cache_max_bytes)
    layouts.wait(dataset.embedding_digest, LayoutParams(n_components=3, metric=metric), timeout=600)
    at.run()
    assert "PCA preview" not in _captions(at)  # the UMAP map replaced the preview
    at.radio(key="review_view").set_value("Selected images").run()
    assert "Selected: 20 images" in _texts(at)  # the selection made on the preview is kept
    assert not at.slider(key="knn_k").disabled


def test_a_failed_search_is_said_and_the_preview_stays_usable(allowed_root, monkeypatch):
    emb, codes = clustered_arrays(n_per_class=20, n_classes=3, dims=8, seed=23)
    data = npz_bytes(emb, np.array(["cat", "dog", "eel"])[codes], np.array([f"/nowhere/{i}.png" for i in range(60)]))

    def no_memory(embeddings, **kwargs):
        raise MemoryError("not enough memory for the search")

    monkeypatch.setattr(graph_service, "neighbour_graph", no_memory)
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.radio(key="data_source").set_value("Upload an NPZ").run()
    at.file_uploader(key="npz_upload").set_value(("failing.npz", data, "application/octet-stream")).run()
    assert not at.exception, at.exception
    assert any(
        "nearest neighbours could not be found (MemoryError: not enough memory for the search)" in e.value
        for e in at.error
    )
    at.selectbox(key="select_class").set_value("eel")
    at.button(key="btn_class").click().run()
    assert "Selected: 20 images" in _texts(at)  # the preview map and the gallery keep working


def test_the_3d_map_comes_first_and_the_2d_map_after_it(allowed_root, monkeypatch):
    """The 3D UMAP map is shown as soon as it is computed, without its 2D version competing for the cores: the 2D one is computed after
    it, and the 2D view shows the PCA projection until then."""
    from cleaner.layout import service as layout_service
    from cleaner.ui import map_panel

    emb, codes = clustered_arrays(n_per_class=20, n_classes=3, dims=8, seed=25)
    data = npz_bytes(emb, np.array(["cat", "dog", "eel"])[codes], np.array([f"/nowhere/{i}.png" for i in range(60)]))
    dataset = load_npz(data)
    calls: list[tuple[str, int]] = []  # ("start" | "end", n_components), in the order they happened
    release_2d = threading.Event()
    layout = layout_service.umap_layout

    def recorded_layout(embeddings, graph, params):
        calls.append(("start", params.n_components))
        if params.n_components == 2:
            release_2d.wait(120)
        coords = layout(embeddings, graph, params)
        calls.append(("end", params.n_components))
        return coords

    drawn: list[tuple[int, np.ndarray]] = []  # (dims, coordinates) of every map drawn
    chart = map_panel.map_chart

    def recorded_chart(payload, **kwargs):
        drawn.append((payload.dims, payload.coords.copy()))
        return chart(payload, **kwargs)

    monkeypatch.setattr(layout_service, "umap_layout", recorded_layout)
    monkeypatch.setattr(map_panel, "map_chart", recorded_chart)
    try:
        at = AppTest.from_file(APP, default_timeout=240)
        at.run()
        at.radio(key="data_source").set_value("Upload an NPZ").run()
        at.file_uploader(key="npz_upload").set_value(("three_d_first.npz", data, "application/octet-stream")).run()
        assert not at.exception, at.exception
        cfg = cache.settings()
        metric = resolved_metric("auto", dataset.embeddings)
        layouts = cache.layout_service(str(cfg.cache_dir), cfg.cache_max_bytes)
        params3, params2 = (LayoutParams(n_components=n, metric=metric) for n in (3, 2))
        # The graph first (on a busy machine it can take longer than the page waits for it), then the 3D map.
        graphs = cache.graph_service(str(cfg.cache_dir), cfg.cache_max_bytes)
        graphs.wait(dataset.embedding_digest, compute.GRAPH_K, metric, timeout=600)
        at.run()
        layouts.wait(dataset.embedding_digest, params3, timeout=600)
        at.run()
        assert not at.exception, at.exception
        umap3 = layouts.get(dataset.embedding_digest, params3, dataset.n)
        dims, coords = drawn[-1]
        assert dims == 3 and np.allclose(coords, umap3)  # the UMAP map, not the preview
        assert calls.index(("end", 3)) < calls.index(("start", 2))  # the 2D layout began after the 3D one ended
        assert "its 2D version is computed" in _captions(at) and "PCA preview" not in _captions(at)
        at.segmented_control(key="map_view").set_value("2D").run()
        dims, coords = drawn[-1]
        preview2 = cache.preview(dataset.embedding_digest, 2, dataset.embeddings)
        assert dims == 2 and np.allclose(coords, preview2)  # the PCA projection stands in for the 2D map
    finally:
        release_2d.set()  # never leave a layout worker blocked for later tests
    layouts.wait(dataset.embedding_digest, params2, timeout=600)
    at.run()
    assert not at.exception, at.exception
    assert "its 2D version is computed" not in _captions(at)
    dims, coords = drawn[-1]
    assert dims == 2 and np.allclose(coords, layouts.get(dataset.embedding_digest, params2, dataset.n))
