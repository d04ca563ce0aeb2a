"""`cleaner scan --precompute`: the sidecar round trip, and stale or tampered sidecars refused with a reason."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cleaner.cli import scan
from cleaner.graph import neighbours
from cleaner.io.dataset import load_npz, npz_bytes
from cleaner.io.sidecar import SidecarProblem, read_sidecar, sidecar_path
from cleaner.layout import layouts
from cleaner.layout.layouts import LayoutParams, LayoutStore, layout_algorithm
from cleaner.layout.service import LayoutService
from cleaner.ui import cache

from .conftest import clustered_arrays

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")
MAX = 64 * 1024 * 1024


def _dataset(folder: Path, seed: int) -> Path:
    """60 rows in three classes; a seed of its own so no cache already holds this dataset's graph or maps."""
    emb, codes = clustered_arrays(n_per_class=20, n_classes=3, dims=8, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = np.array([str(folder / f"img_{i:03d}.png") for i in range(len(codes))])
    npz = folder / "data.npz"
    npz.write_bytes(npz_bytes(emb, np.array(["cat", "dog", "eel"])[codes], paths))
    return npz


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> Path:
    """A dataset and the sidecar `scan --precompute` wrote next to it."""
    npz = _dataset(tmp_path_factory.mktemp("precomputed"), seed=11)
    assert scan.main([str(npz), "--out", str(npz.with_name("report.csv")), "--precompute"]) == 0
    return npz


def _read(npz: Path, side: Path | None = None, **overrides):
    data = load_npz(npz)
    args = dict(embedding_digest=data.embedding_digest, n_rows=data.n, k=20, metric="cosine", max_bytes=MAX)
    return read_sidecar(side or sidecar_path(npz), **{**args, **overrides})


def _members(side: Path) -> dict[str, np.ndarray]:
    with np.load(side, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _tampered(side: Path, target: Path, **changes) -> Path:
    members = {**_members(side), **changes}
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in members.items() if v is not None})
    target.write_bytes(buf.getvalue())
    return target


def test_the_sidecar_holds_the_graph_and_both_maps_of_its_dataset(scanned):
    data = load_npz(scanned)
    pre = _read(scanned)
    exact = neighbours.exact_neighbours(data.embeddings, 20, "cosine")
    assert pre.graph.indices.shape == (60, 20)
    # the same neighbours an exact search finds (as sets: ties may swap places)
    assert all(set(a) == set(b) for a, b in zip(pre.graph.indices.tolist(), exact.indices.tolist()))
    for dims in (3, 2):
        coords = pre.layout(LayoutParams(n_components=dims))
        assert coords.shape == (60, dims) and np.isfinite(coords).all()
        # a map of three tight, far-apart clusters: each class is closer to itself than to any other class
        labels = data.label_codes
        centres = np.array([coords[labels == c].mean(axis=0) for c in range(3)])
        nearest = np.argmin(((coords[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        assert (nearest == labels).mean() > 0.95
    assert pre.layout(LayoutParams(n_components=3, min_dist=0.5)) is None  # other settings: not this map


def test_a_sidecar_for_other_embeddings_is_refused(scanned, tmp_path):
    other = load_npz(_dataset(tmp_path / "other", seed=12))
    with pytest.raises(SidecarProblem, match="made for other embeddings"):
        _read(scanned, embedding_digest=other.embedding_digest)


def test_a_sidecar_with_other_settings_is_refused_with_what_to_do(scanned):
    with pytest.raises(SidecarProblem, match="run the scan again with --k 10"):
        _read(scanned, k=10)
    with pytest.raises(SidecarProblem, match="other settings"):
        _read(scanned, metric="euclidean")


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda m, n: {"graph_indices": np.full_like(m["graph_indices"], n)}, "rows the dataset does not have"),
        (
            lambda m, n: {"graph_indices": np.tile(np.arange(n, dtype=np.int32)[:, None], (1, 20))},
            "their own neighbours",
        ),
        (lambda m, n: {"graph_distances": m["graph_distances"][:, ::-1].copy()}, "closest first"),
        (lambda m, n: {"graph_distances": np.full_like(m["graph_distances"], np.nan)}, "not finite"),
        (lambda m, n: {"layout_3": np.full_like(m["layout_3"], np.inf)}, "3D map holds values that are not finite"),
        (lambda m, n: {"layout_2": m["layout_2"][:-1]}, "could not be read"),
        (lambda m, n: {"layout_2": m["layout_2"].astype(np.float64)}, "32-bit"),
        (lambda m, n: {"graph_indices": m["graph_indices"].astype(object)}, "could not be read"),
        (lambda m, n: {"extra": np.zeros(3)}, "expected arrays"),
        (lambda m, n: {"layout_key_3": None}, "missing: layout_key_3"),
        (lambda m, n: {"format": np.array("something-else")}, "not written by this version"),
        (lambda m, n: {"layout_algorithm_3": None, "layout_algorithm_2": None}, "not written by this version"),
        (lambda m, n: {"format": np.array("cleaner-sidecar-1")}, "not written by this version"),
        (lambda m, n: {"layout_algorithm_3": np.array("x" * 300)}, "could not be read"),
    ],
)
def test_a_tampered_sidecar_is_refused_with_a_reason(scanned, tmp_path, change, reason):
    side = sidecar_path(scanned)
    bad = _tampered(side, tmp_path / "bad.cleaner.npz", **change(_members(side), 60))
    with pytest.raises(SidecarProblem, match=reason):
        _read(scanned, side=bad)


def test_a_sidecar_larger_than_the_limit_or_not_a_zip_is_refused(scanned, tmp_path):
    with pytest.raises(SidecarProblem, match="could not be read"):
        _read(scanned, max_bytes=1000)
    junk = tmp_path / "junk.cleaner.npz"
    junk.write_bytes(b"\x80\x04not a zip at all" * 10)
    with pytest.raises(SidecarProblem, match="could not be read"):
        _read(scanned, side=junk)


def _open_in_app(npz: Path, before_opening=lambda: None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.radio(key="data_source").set_value("Server folder")
    at.run()  # opens the first file listed, whichever it is
    before_opening()
    at.selectbox(key="server_npz").set_value(str(npz.resolve()))
    at.run()
    assert not at.exception, at.exception
    return at


def _service():
    cfg = cache.settings()
    return cache.layout_service(str(cfg.cache_dir), cfg.cache_max_bytes)


def _open_without_search(npz: Path, monkeypatch, rows: int | None = None) -> tuple[AppTest, int]:
    """The app opened on `npz` with the neighbour search failing from then on (`rows`: only a search over that many
    rows, the dataset's, so a landmark layout may still search among its landmarks); and the layout jobs started
    before."""
    search = neighbours._search

    def no_search(embeddings, *args, **kwargs):
        if rows is not None and len(embeddings) != rows:
            return search(embeddings, *args, **kwargs)
        raise AssertionError("the neighbour search ran although the sidecar holds the graph")

    jobs_before = []

    def from_now_on():
        monkeypatch.setattr(neighbours, "_search", no_search)
        jobs_before.append(_service().jobs_started)

    return _open_in_app(npz, from_now_on), jobs_before[0]


def test_the_app_uses_the_sidecar_without_computing(allowed_root, monkeypatch):
    npz = _dataset(allowed_root / "precomputed_team", seed=13)
    assert scan.main([str(npz), "--out", str(npz.with_name("report.csv")), "--precompute"]) == 0
    side = _members(sidecar_path(npz))
    service = _service()
    at, jobs_before = _open_without_search(npz, monkeypatch)
    assert service.jobs_started == jobs_before  # no layout computed: both maps came from the sidecar
    data = load_npz(npz)
    for dims in (3, 2):
        shown = service.get(data.embedding_digest, LayoutParams(n_components=dims), data.n)
        np.testing.assert_array_equal(shown, side[f"layout_{dims}"])
    page = "\n".join(c.value for c in at.caption)
    assert "PCA preview" not in page
    assert any("Neighbours and maps from data.cleaner.npz" in c.value.replace("\\", "") for c in at.sidebar.caption)
    assert not any(o.endswith(".cleaner.npz") for o in at.selectbox(key="server_npz").options)


def test_the_app_ignores_a_stale_sidecar_and_says_so(allowed_root):
    npz = _dataset(allowed_root / "stale_team", seed=14)
    assert scan.main([str(npz), "--out", str(npz.with_name("report.csv")), "--precompute"]) == 0
    emb, codes = clustered_arrays(n_per_class=20, n_classes=3, dims=8, seed=15)  # the NPZ changed after the scan
    paths = np.array([str(npz.parent / f"img_{i:03d}.png") for i in range(len(codes))])
    npz.write_bytes(npz_bytes(emb, np.array(["cat", "dog", "eel"])[codes], paths))
    at = _open_in_app(npz)
    warning = " ".join(w.value for w in at.warning)
    assert "data.cleaner.npz next to this file is not used: it was made for other embeddings" in warning.replace(
        "\\", ""
    )
    assert at.text and "60 images" in " ".join(t.value for t in at.text)  # the dataset still opens and works


# ---------------------------------------------------------------- which algorithm made the maps


def test_the_sidecar_names_the_algorithm_of_its_maps(scanned):
    pre = _read(scanned)
    assert not pre.maps_ignored
    for dims in (3, 2):
        assert pre.algorithm(LayoutParams(n_components=dims)) == layout_algorithm(60) == "umap"
    assert str(_members(sidecar_path(scanned))["layout_algorithm_3"]) == "umap"


def _old_style(side: Path, target: Path) -> Path:
    """The sidecar as `scan --precompute` wrote it before the maps carried their algorithm's name (format 1)."""
    return _tampered(
        side, target, format=np.array("cleaner-sidecar-1"), layout_algorithm_3=None, layout_algorithm_2=None
    )


def test_an_old_sidecar_gives_its_graph_but_not_its_maps(scanned, tmp_path):
    pre = _read(scanned, side=_old_style(sidecar_path(scanned), tmp_path / "old.cleaner.npz"))
    assert pre.graph.indices.shape == (60, 20)  # the neighbours are the same whatever made the maps
    assert pre.layouts == {} and pre.layout(LayoutParams()) is None and pre.algorithm(LayoutParams()) is None
    assert "do not say which layout algorithm made them" in pre.maps_ignored


def test_maps_of_an_algorithm_this_version_does_not_know_are_not_used(scanned, tmp_path):
    side = _tampered(
        sidecar_path(scanned),
        tmp_path / "future.cleaner.npz",
        layout_algorithm_3=np.array("landmarks0"),  # an older landmark version, or a name written by hand
    )
    pre = _read(scanned, side=side)
    assert pre.layouts == {} and "a layout this version does not know ('landmarks0')" in pre.maps_ignored


def test_a_map_is_served_under_the_name_of_what_made_it_only(tmp_path, monkeypatch):
    """At the landmark layout's size, a whole-data UMAP map adopted from a sidecar is found as "umap" and never as the
    landmark layout; a landmark map adopted is the landmark layout."""
    monkeypatch.setattr(layouts, "LANDMARK_MIN_ROWS", 50)
    service = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"), numba_cache=tmp_path / "nb")
    umap_map, landmark_map = (np.full((60, 3), v, np.float32) for v in (1.0, 2.0))
    service.adopt("d", LayoutParams(), umap_map, "umap")
    assert service.get("d", LayoutParams(), 60) is None  # not the landmark layout
    assert service.status("d", LayoutParams(), 60).state == "missing"
    np.testing.assert_array_equal(service.get("d", LayoutParams(), 60, "umap"), umap_map)
    service.adopt("d", LayoutParams(), landmark_map, layout_algorithm(60))
    np.testing.assert_array_equal(service.get("d", LayoutParams(), 60), landmark_map)
    # and from disk, in a new service (a restarted server)
    again = LayoutService(LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none"), numba_cache=tmp_path / "nb")
    np.testing.assert_array_equal(again.get("d", LayoutParams(), 60), landmark_map)
    np.testing.assert_array_equal(again.get("d", LayoutParams(), 60, "umap"), umap_map)
    with pytest.raises(ValueError, match="unknown layout algorithm"):
        LayoutStore.file_name("d", LayoutParams(), 60, "../../etc")


def test_the_app_computes_the_landmark_map_again_over_an_old_sidecar(allowed_root, monkeypatch):
    """An old sidecar next to a dataset of the landmark layout's size: its graph is used, its maps are not (they may be
    the whole-data UMAP's), the page says so and computes the landmark map."""
    monkeypatch.setattr(layouts, "LANDMARK_MIN_ROWS", 50)
    monkeypatch.setattr(layouts, "LANDMARK_COUNT", 30)  # the landmarks' own search is then told from the dataset's
    npz = _dataset(allowed_root / "old_sidecar_team", seed=16)
    assert scan.main([str(npz), "--out", str(npz.with_name("report.csv")), "--precompute"]) == 0
    side = sidecar_path(npz)
    assert str(_members(side)["layout_algorithm_3"]) == layout_algorithm(60) == f"landmarks{layouts.LANDMARK_VERSION}"
    _old_style(side, side)
    service = _service()
    before_opening = service.jobs_started  # the page may start the map's job before the app test hands back
    at, _ = _open_without_search(npz, monkeypatch, rows=load_npz(npz).n)
    assert any("The precomputed maps are not used: its maps do not say which" in i.value for i in at.info)
    assert service.jobs_started > before_opening  # the 3D map is computed here
    data = load_npz(npz)
    service.wait(data.embedding_digest, LayoutParams(n_components=3), timeout=600)  # before the override is undone
    service.wait(data.embedding_digest, LayoutParams(n_components=2), timeout=600)


def test_the_app_serves_a_tagged_landmark_sidecar_without_computing(allowed_root, monkeypatch):
    monkeypatch.setattr(layouts, "LANDMARK_MIN_ROWS", 50)
    npz = _dataset(allowed_root / "new_sidecar_team", seed=17)
    assert scan.main([str(npz), "--out", str(npz.with_name("report.csv")), "--precompute"]) == 0
    side = _members(sidecar_path(npz))
    service, jobs_before = _service(), []
    at = _open_in_app(npz, lambda: jobs_before.append(service.jobs_started))
    assert service.jobs_started == jobs_before[0]
    assert not any("precomputed maps are not used" in i.value for i in at.info)
    data = load_npz(npz)
    for dims in (3, 2):  # served as the landmark layout: the name this version computes at this size
        shown = service.get(data.embedding_digest, LayoutParams(n_components=dims), data.n)
        np.testing.assert_array_equal(shown, side[f"layout_{dims}"])
