"""Smoke test of bench/scale.py at a tiny size: it runs end to end and reports every key with a sane value.

No timing is asserted (the machine is shared); the full 100k run is documented in bench/README.md.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "n",
    "preview_s",
    "first_map_s",
    "reference_umap_s",
    "first_map_ratio",
    "cache_hit_s",
    "cold_demo_s",
    "tick_s",
    "decision_s",
    "tick_many_decisions_s",
    "decision_many_decisions_s",
    "bytes_per_point",
    "peak_rss_mb",
    "knn_preservation",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("scale")
    out = work / "scale.json"
    # --skip-reference: plain umap-learn compiles for 20-30 s in a fresh process; the browser part is
    # covered by the end-to-end tests. The tick (AppTest) part runs.
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "scale.py"),
            "--n",
            "3000",
            "--skip-reference",
            "--skip-browser",
            "--workdir",
            str(work / "run"),
            "--json",
            str(out),
        ],
        check=True,
        timeout=600,
        cwd=ROOT,
    )
    return json.loads(out.read_text())


def test_reports_every_key(report):
    assert set(KEYS) <= set(report)
    assert report["n"] == 3000
    assert "Gaussian clusters" in report["generator"] and "seed=0" in report["generator"]
    # skipped parts are reported as null, never left out
    assert report["reference_umap_s"] is None and report["first_map_ratio"] is None
    assert report["reference_umap_warm_s"] is None and report["first_map_ratio_running_server"] is None
    assert report["cold_demo_s"] is None


def test_values_are_sane(report):
    assert 0 < report["preview_s"] < report["first_map_s"] < 3600
    assert 0 < report["cache_hit_s"] < report["first_map_s"]  # the second load found the layout on disk
    assert 0 < report["tick_s"] < 60 and 0 < report["tick_full_rerun_s"] < 600
    assert 0 < report["decision_s"] < 60 and len(report["decision_all_s"]) == 3
    # 500 exclusions resumed from a list (less any the timed ticks and decisions had already made), then timed again
    assert 490 <= report["decisions_before_many"] <= 500
    assert 0 < report["tick_many_decisions_s"] < 60 and 0 < report["decision_many_decisions_s"] < 60
    assert 5 < report["bytes_per_point"] < 500
    assert 50 < report["peak_rss_mb"] < 8000
    ours = report["knn_preservation"]["ours"]
    assert report["knn_preservation"]["reference"] is None
    assert 0.2 < ours <= 1.0  # clustered data: a real layout keeps a good share of each point's neighbours
    for key in ("first_map_breakdown_s", "first_map_running_server_breakdown_s"):
        breakdown = report[key]
        assert set(breakdown) == {"import", "load_npz", "graph", "preview", "layout"}
        assert all(v >= 0 for v in breakdown.values())
    # the running server's clock starts once it is warm, so it never counts more than its own steps
    running = report["first_map_running_server_breakdown_s"]
    assert 0 < report["first_map_running_server_s"] >= sum(running.values()) - 0.05


def test_knn_preservation_measures_what_it_says():
    sys.path.insert(0, str(ROOT / "bench"))
    import numpy as np
    from scale import knn_preservation, make_data

    emb, labels = make_data(1500, dims=32, clusters=5, seed=3)
    assert emb.shape == (1500, 32) and labels.shape == (1500,)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert knn_preservation(emb, emb, sample_size=300) == pytest.approx(1.0)  # identity keeps everything
    noise = np.random.default_rng(0).normal(size=(1500, 3))
    assert knn_preservation(emb, noise, sample_size=300) < 0.05  # a random map keeps almost nothing
