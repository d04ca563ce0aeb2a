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


def test_each_step_is_measured_and_the_cache_and_the_layout_do_their_job(report):
    # Times are only checked to be measured (the machine is shared: no bound on them means anything).
    for key in ("preview_s", "first_map_s", "cache_hit_s", "tick_s", "tick_full_rerun_s", "decision_s"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert len(report["decision_all_s"]) == 3
    assert report["cache_hit_s"] < report["first_map_s"]  # the second load found the graph and the layout on disk
    # 500 exclusions resumed from a list (less any the timed ticks and decisions had already made), then timed again
    assert 490 <= report["decisions_before_many"] <= 500
    ours = report["knn_preservation"]["ours"]
    assert report["knn_preservation"]["reference"] is None
    assert 0.2 < ours <= 1.0  # clustered data: a real layout keeps a good share of each point's neighbours
