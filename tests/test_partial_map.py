"""The landmark layout's partial maps: the service publishes each step with the map so far, and the page draws the
landmarks alone, then every image before the refinement, then the final map, saying which step runs.

The landmark layout is switched on at a few hundred rows (LANDMARK_MIN_ROWS and LANDMARK_COUNT overridden), and each
step is held at its start until the test has looked at it, so no timing decides what is seen."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cleaner.graph.distance import resolved_metric
from cleaner.graph.neighbours import exact_neighbours
from cleaner.io.dataset import load_npz, npz_bytes
from cleaner.layout import layouts
from cleaner.layout.layouts import LayoutParams, LayoutStore
from cleaner.layout.service import LayoutService
from cleaner.ui import cache, compute, map_panel
from cleaner.ui.map.events import MapEvent

from .conftest import clustered_arrays

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
ROWS, LANDMARKS = 180, 60


class HeldSteps:
    """Holds the landmark layout at the start of its placement and of its refinement until released."""

    def __init__(self, monkeypatch):
        self.placing, self.refining = threading.Event(), threading.Event()  # the layout reached the step
        self.go_place, self.go_refine = threading.Event(), threading.Event()
        place, fit = layouts.place_from_neighbours, layouts._fit

        def held_place(*args, **kwargs):
            self.placing.set()
            self.go_place.wait(300)
            return place(*args, **kwargs)

        def held_fit(*args, **kwargs):
            if kwargs.get("learning_rate") == layouts.LANDMARK_REFINE_LEARNING_RATE:  # the refinement's fit
                self.refining.set()
                self.go_refine.wait(300)
            return fit(*args, **kwargs)

        monkeypatch.setattr(layouts, "place_from_neighbours", held_place)
        monkeypatch.setattr(layouts, "_fit", held_fit)
        monkeypatch.setattr(layouts, "LANDMARK_MIN_ROWS", 150)
        monkeypatch.setattr(layouts, "LANDMARK_COUNT", LANDMARKS)
        monkeypatch.setattr(layouts, "LANDMARK_EPOCHS", 30)

    def release(self) -> None:
        self.go_place.set()
        self.go_refine.set()


@pytest.fixture
def held(monkeypatch):
    steps = HeldSteps(monkeypatch)
    yield steps
    steps.release()  # never leave a layout worker blocked for later tests


def test_the_service_publishes_the_landmarks_then_every_row_then_the_map(held, tmp_path):
    emb, _ = clustered_arrays(n_per_class=ROWS // 3, n_classes=3, dims=8, seed=41)
    graph = exact_neighbours(emb, 15, "cosine")
    service = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"), numba_cache=tmp_path / "nb")
    params = LayoutParams(n_components=3)
    assert service.progress("d", params) is None
    service.request("d", params, emb, graph)

    assert held.placing.wait(300)
    step = service.progress("d", params)
    assert step.step == "placing" and f"Placing the other {ROWS - LANDMARKS:,} images" in step.text
    assert step.rows.shape == (LANDMARKS,) and np.all(np.diff(step.rows) > 0)
    assert step.coords.shape == (LANDMARKS, 3) and np.isfinite(step.coords).all()
    landmarks, landmark_coords = step.rows.copy(), step.coords.copy()
    assert service.status("d", params, ROWS).state == "running" and service.get("d", params, ROWS) is None

    held.go_place.set()
    assert held.refining.wait(300)
    step = service.progress("d", params)
    assert step.step == "refining" and step.rows is None and step.coords.shape == (ROWS, 3)
    np.testing.assert_array_equal(step.coords[landmarks], landmark_coords)  # the landmarks kept their places

    held.go_refine.set()
    service.wait("d", params, timeout=300)
    final = service.get("d", params, ROWS)
    assert final.shape == (ROWS, 3) and np.isfinite(final).all()
    assert service.progress("d", params) is None  # the partial map is dropped once the map is served


def test_a_layout_function_without_progress_is_run_as_before(tmp_path):
    emb, _ = clustered_arrays(n_per_class=10, n_classes=2, dims=4, seed=42)
    calls = []

    def engine(embeddings, graph, params):
        calls.append(len(embeddings))
        return np.ascontiguousarray(embeddings[:, : params.n_components])

    service = LayoutService(LayoutStore(tmp_path / "l"), numba_cache=tmp_path / "nb", layout=engine)
    service.request("e", LayoutParams(n_components=2), emb, exact_neighbours(emb, 5, "cosine"))
    service.wait("e", LayoutParams(n_components=2), timeout=60)
    assert calls == [20] and service.progress("e", LayoutParams(n_components=2)) is None


def test_a_selection_on_a_partial_map_covers_the_rows_drawn():
    drawn = np.array([3, 7, 10, 42])
    np.testing.assert_array_equal(map_panel.drawn_positions(np.array([0, 7, 42, 50]), drawn), [1, 3])
    np.testing.assert_array_equal(map_panel.drawn_positions(np.array([5, 1]), None), [5, 1])
    assert map_panel.drawn_positions(np.array([1, 2]), np.array([], dtype=np.int64)).size == 0
    event = MapEvent(kind="box", mode="add", rows=np.array([0, 2]))
    assert map_panel.dataset_event(event, drawn).rows.tolist() == [3, 10]
    assert map_panel.dataset_event(event, drawn).apply([7]).tolist() == [3, 7, 10]  # Shift adds to the selection
    assert map_panel.dataset_event(event, None) is event


def _until_step(service, digest: str, params: LayoutParams, step: str, timeout: float = 300) -> None:
    """Wait until this layout (not another one the service runs meanwhile, such as the 2D map, which passes the same
    held steps) has published `step`."""
    deadline = time.monotonic() + timeout
    while (now := service.progress(digest, params)) is None or now.step != step:
        assert time.monotonic() < deadline, f"the layout did not reach {step!r}"
        time.sleep(0.05)


def _captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_the_page_draws_the_landmarks_then_every_image_then_the_map(allowed_root, held, monkeypatch):
    emb, codes = clustered_arrays(n_per_class=ROWS // 3, n_classes=3, dims=8, seed=43)
    data = npz_bytes(emb, np.array(["cat", "dog", "eel"])[codes], np.array([f"/nowhere/{i}.png" for i in range(ROWS)]))
    dataset = load_npz(data)
    drawn = []  # the payload of every map drawn
    chart = map_panel.map_chart

    def recorded_chart(payload, **kwargs):
        drawn.append(payload)
        return chart(payload, **kwargs)

    monkeypatch.setattr(map_panel, "map_chart", recorded_chart)
    cfg = cache.settings()
    metric = resolved_metric("auto", dataset.embeddings)
    graphs = cache.graph_service(str(cfg.cache_dir), cfg.cache_max_bytes)
    service = cache.layout_service(str(cfg.cache_dir), cfg.cache_max_bytes)
    params3, params2 = (LayoutParams(n_components=n, metric=metric) for n in (3, 2))

    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.radio(key="data_source").set_value("Upload an NPZ").run()
    at.file_uploader(key="npz_upload").set_value(("partial.npz", data, "application/octet-stream")).run()
    graphs.wait(dataset.embedding_digest, compute.GRAPH_K, metric, timeout=300)
    at.run()  # the graph is there: the layout is asked for
    assert held.placing.wait(300)
    _until_step(service, dataset.embedding_digest, params3, "placing")
    at.run()
    assert not at.exception, at.exception
    step = service.progress(dataset.embedding_digest, params3)
    landmarks = step.rows
    shown = drawn[-1]
    assert shown.dims == 3 and shown.n == LANDMARKS  # the landmarks alone, where UMAP put them
    np.testing.assert_allclose(shown.coords, step.coords)
    np.testing.assert_array_equal(shown.class_codes, dataset.label_codes[landmarks])
    page = _captions(at)
    assert f"partial UMAP map (only its {LANDMARKS} landmarks are drawn)" in page
    assert f"Placing the other {ROWS - LANDMARKS} images from their neighbours" in page and "PCA preview" not in page

    # A selection made meanwhile is drawn on the landmarks it holds.
    at.selectbox(key="select_class").set_value("dog")
    at.button(key="btn_class").click().run()
    dog = dataset.class_names.index("dog")
    np.testing.assert_array_equal(drawn[-1].selected_rows, np.flatnonzero(dataset.label_codes[landmarks] == dog))

    held.go_place.set()
    assert held.refining.wait(300)
    _until_step(service, dataset.embedding_digest, params3, "refining")
    at.run()
    step = service.progress(dataset.embedding_digest, params3)
    shown = drawn[-1]
    assert shown.n == ROWS and step.rows is None  # every image, placed, before the refinement
    np.testing.assert_allclose(shown.coords, step.coords)
    page = _captions(at)
    assert "partial UMAP map (every image placed, not yet refined)" in page and "Refining the map" in page
    np.testing.assert_array_equal(drawn[-1].selected_rows, np.flatnonzero(dataset.label_codes == dog))

    held.go_refine.set()
    service.wait(dataset.embedding_digest, params3, timeout=300)
    at.run()
    assert not at.exception, at.exception
    final = service.get(dataset.embedding_digest, params3, dataset.n)
    assert drawn[-1].n == ROWS and np.allclose(drawn[-1].coords, final)
    assert "partial" not in _captions(at) and "its 2D version is computed" in _captions(at)
    service.wait(dataset.embedding_digest, params2, timeout=300)  # before the overrides are undone
