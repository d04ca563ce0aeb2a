"""The shared layout service: computes once in the background, then serves from memory or disk."""
import numpy as np

from cleaner.layout import LayoutParams, LayoutStore
from cleaner.layout_service import LayoutService
from cleaner.neighbours import exact_neighbours

from .conftest import clustered_arrays


def test_layout_computed_once_then_served_from_disk_after_restart(tmp_path):
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8)
    graph = exact_neighbours(emb, 15, "cosine")
    params = LayoutParams(n_components=3)
    store = LayoutStore(tmp_path / "layouts", packaged=tmp_path / "none")
    service = LayoutService(store)
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
