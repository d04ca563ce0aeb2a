"""`cleaner scan --precompute --dask local:2`, then the app opens what it wrote (issue 31's "Done when").

The CLI runs on a LocalCluster of two worker processes and writes the report and the sidecar next to an NPZ inside
the app server's allowed folder. The app then opens that NPZ through the sidebar's "Server folder" source and must
use the sidecar: the sidebar names it, no PCA preview or "being computed" note shows, the map draws every point at
exactly the sidecar's coordinates (in 3D and 2D: a map computed in the app would lie elsewhere), and the review
queue's first card is the report's review_rank 1 row.

The NPZ goes in a subfolder named to sort after the allowed folder's own files (the sidebar's default file stays
the small dataset), and is removed at the end. Its embeddings are its own (not the small dataset's), so nothing the
session's other tests computed can stand in for the sidecar; its images are the small dataset's PNGs.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from . import helpers as h

pytest.importorskip(
    "distributed",
    reason="`cleaner scan --dask` needs dask[distributed] (pip install 'dask[distributed]'), not installed here",
)

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 1800  # 2 cores under heavy load: the workers import faiss and umap and compile numba's kernels
WAIT_MS = 600_000
pytestmark = pytest.mark.timeout(3600)

NAME = "dask_scan.npz"
FLIPPED = {5: "dog", 123: "bird", 260: "cat"}  # row -> wrong label given: label issues the queue puts first
DUPLICATE = (40, 41)  # row 41's embedding is row 40's


def _write_dataset(folder: Path, labels: np.ndarray, paths: np.ndarray) -> tuple[Path, np.ndarray]:
    """The small dataset's images and labels with embeddings of its own (another seed), a few labels flipped."""
    rng = np.random.default_rng(31)
    names = sorted(set(labels.tolist()))
    centres = rng.normal(0, 6, size=(len(names), 24))
    emb = np.stack([centres[names.index(lab)] + rng.normal(0, 0.8, size=24) for lab in labels]).astype(np.float32)
    emb[DUPLICATE[1]] = emb[DUPLICATE[0]]
    given = labels.astype(str).copy()
    for row, wrong in FLIPPED.items():
        assert given[row] != wrong
        given[row] = wrong
    folder.mkdir(parents=True, exist_ok=True)
    npz = folder / NAME
    np.savez_compressed(npz, embeddings=emb, labels=given, image_paths=paths.astype(str))
    return npz, given


def _scan(npz: Path, out: Path) -> subprocess.CompletedProcess:
    # The LocalCluster's worker processes unpickle cleaner's tasks: they need the repository importable.
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cleaner",
            "scan",
            str(npz),
            "--out",
            str(out),
            "--precompute",
            "--dask",
            "local:2",
            "--no-image-check",
        ],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )


def _report(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return sorted(rows, key=lambda r: int(r["review_rank"]))


def _assert_same_coords(drawn: np.ndarray, expected: np.ndarray, what: str) -> None:
    """The browser draws 16-bit fixed point over the box of the coordinates: equal within a few of its steps."""
    assert drawn.shape == expected.shape, f"{what}: drawn {drawn.shape}, sidecar {expected.shape}"
    extent = expected.max(axis=0) - expected.min(axis=0)
    err = np.abs(drawn - expected)
    tol = extent * 1e-4 + 1e-6
    worst = int(np.argmax((err / tol).max(axis=1)))
    assert (err <= tol).all(), (
        f"{what}: the map is not the sidecar's (row {worst}: drawn {drawn[worst]}, sidecar "
        f"{expected[worst]}); the app computed its own map"
    )


COMPUTING = ("PCA preview", "is computed", "nearest neighbours of", "Suspects: scored once")


def test_scan_on_a_local_dask_cluster_then_the_app_opens_its_sidecar(app_server, page, tmp_path):
    folder = app_server.allowed_root / "zz_dask_e2e"  # after small_upload.npz and x.npz in the sidebar's list
    try:
        npz, given = _write_dataset(folder, app_server.small.labels, app_server.small.paths)
        n = len(given)

        # ---- the CLI, on a LocalCluster of 2 worker processes
        proc = _scan(npz, tmp_path / "report.csv")
        print(proc.stdout)
        assert proc.returncode == 0, f"scan failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        assert "dask: connecting to local:2" in proc.stdout and "read on 2 Dask workers" in proc.stdout, proc.stdout
        assert "neighbour graph on the cluster" in proc.stdout, proc.stdout
        assert "maps computed on the cluster" in proc.stdout, proc.stdout
        side = folder / "dask_scan.cleaner.npz"
        assert side.is_file(), f"no sidecar next to the NPZ: {sorted(os.listdir(folder))}"
        assert not (folder / "dask_scan.map-sample.cleaner.npz").exists()  # 300 rows: far below the map limit
        with np.load(side, allow_pickle=False) as z:
            layout3, layout2 = z["layout_3"].astype(np.float64), z["layout_2"].astype(np.float64)
            graph_distances = z["graph_distances"]
        assert layout3.shape == (n, 3) and layout2.shape == (n, 2)
        report = _report(tmp_path / "report.csv")
        assert [int(r["review_rank"]) for r in report] == list(range(1, n + 1))
        first = report[0]
        first_row = int(first["index"])
        assert first["image_path"] == str(app_server.small.paths[first_row])

        # ---- the app opens that NPZ from the server folder
        h.open_app(page, app_server.url, timeout=WAIT_MS)
        h.choose_data_source(page, "Server folder")
        h.settle(page, WAIT_MS)
        h.choose_option(page, "NPZ on the server", os.path.realpath(npz))
        h.expect_header(page, NAME, timeout=WAIT_MS)
        h.expect_header(page, f"{n:,} images", timeout=WAIT_MS)
        h.settle(page, WAIT_MS)

        # The sidecar was checked and adopted: the sidebar says so, and the first complete run of the page already
        # has the graph (the scores) and both maps: nothing is being computed.
        expect(
            h.sidebar(page).get_by_text(
                "Neighbours and maps from dask_scan.cleaner.npz (made by `cleaner scan --precompute`)."
            )
        ).to_be_visible()
        body = page.inner_text("body")
        assert "is not used" not in body, body
        for phrase in COMPUTING:
            assert phrase not in body, f"the page computes instead of using the sidecar ({phrase!r} shows)"
        expect(page.get_by_text("Suspects: ", exact=False).first).to_be_visible()

        # The map: every point, exactly where the sidecar put it.
        h.wait_map(page, n, 3, timeout=WAIT_MS)
        assert sum(c for _, c in h.map_traces(page)) == n
        _assert_same_coords(h.map_coords(page, given), layout3, "3D map")
        h.choose_map_view(page, "2D")
        h.wait_map(page, n, 2, timeout=WAIT_MS)
        _assert_same_coords(h.map_coords(page, given), layout2, "2D map")
        for phrase in COMPUTING:
            assert phrase not in page.inner_text("body"), f"{phrase!r} showed after switching to 2D"
        pixels = h.not_blank(h.map_pixels(page))
        assert pixels["distinct_colours"] >= 3 and pixels["saturated_pixels"] > 100, pixels
        h.choose_map_view(page, "3D")
        h.wait_map(page, n, 3, timeout=WAIT_MS)

        # ---- the review queue: its first card is the report's review_rank 1 row
        h.open_review(page, "Review queue")
        page.locator(".st-key-queue_slot_0").wait_for(timeout=WAIT_MS)
        h.settle(page, WAIT_MS)
        slots = h.queue_slots(page)
        assert slots.get(0) == first_row, (
            f"first card shows row {slots.get(0)}, the report's review_rank 1 is row "
            f"{first_row} ({first['worst_issue']}, {first['worst_score']})"
        )
        # the next cards follow the report's ranks too (the queue holds the flagged rows, most suspect first)
        left = h.queue_left(page)
        for slot in range(1, min(len(slots), left)):
            assert slots[slot] == int(report[slot]["index"]), (slot, slots, [r["index"] for r in report[:8]])
        card = h.queue_card(page, first_row)
        expect(card).to_contain_text(f"label: {given[first_row]}")
        expect(card).to_contain_text(Path(first["image_path"]).name)
        # its nearest neighbours' distances are the sidecar graph's: the line under them gives their range
        low, high = (
            f"{float(d):.2f}" for d in (graph_distances[first_row, :6].min(), graph_distances[first_row, :6].max())
        )
        expect(card).to_contain_text(f"distance {low}" if low == high else f"distance {low}–{high}")
        h.scroll_to_top(page.locator(".st-key-review_view"))
        print(f"[e2e] screenshot: {h.screenshot(page, 'distributed_sidecar_queue')}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
