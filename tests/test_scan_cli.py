"""`python -m cleaner scan` in a fresh process: the report, the exclusion list, errors and a light import graph."""

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cleaner.io.dataset import npz_bytes

from .conftest import clustered_arrays

REPO = Path(__file__).resolve().parents[1]
CLASSES = np.array(["cat", "dog", "eel"])
FLIPPED, DUP_A, DUP_B, BROKEN = 5, 40, 41, 62
HEAVY = ("streamlit", "plotly", "umap", "sklearn", "scipy", "pynndescent", "numba", "pandas")


def run_cli(*args, cwd=REPO):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cleaner", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_dataset(folder: Path, with_images: bool = True) -> tuple[Path, list[str]]:
    """90 images in three classes: one flipped label, one duplicate pair with two labels, one truncated PNG."""
    emb, codes = clustered_arrays(n_per_class=30, n_classes=3, dims=16)
    codes = codes.copy()
    codes[FLIPPED] = 1  # sits with the cats
    emb[DUP_B] = emb[DUP_A]
    codes[DUP_B] = 0  # a dog's exact copy labelled cat
    image_dir = folder / "images"
    image_dir.mkdir()
    paths = [str((image_dir / f"img_{i:03d}.png").resolve()) for i in range(len(codes))]
    if with_images:
        rng = np.random.default_rng(0)
        for path in paths:
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(path)
        data = Path(paths[BROKEN]).read_bytes()
        Path(paths[BROKEN]).write_bytes(data[: len(data) // 2])
    npz = folder / "data.npz"
    npz.write_bytes(npz_bytes(emb, CLASSES[codes], np.array(paths)))
    return npz, paths


def read_report(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def test_scan_writes_report_and_exclusion_list(tmp_path):
    npz, paths = write_dataset(tmp_path)
    out = tmp_path / "reports" / "report.csv"
    out.parent.mkdir()
    proc = run_cli("scan", npz, "--out", out, "--exclude-top", 3, "--image-root", tmp_path / "images")
    assert proc.returncode == 0, proc.stderr
    header, rows = read_report(out)
    assert header == [
        "index",
        "image_path",
        "label",
        "suggested_label",
        "label_issue_score",
        "outlier_score",
        "duplicate_group",
        "unreadable",
        "label_issue",
        "outlier",
        "duplicate_score",
        "duplicate_mixed_labels",
        "unreadable_reason",
        "worst_score",
        "worst_issue",
        "review_rank",
    ]
    assert [int(r["index"]) for r in rows] == list(range(90))
    assert [r["image_path"] for r in rows] == paths
    assert rows[FLIPPED]["label"] == "dog" and rows[FLIPPED]["suggested_label"] == "cat"
    assert rows[0]["label"] == rows[0]["suggested_label"] == "cat"
    label_scores = [float(r["label_issue_score"]) for r in rows]
    assert all(0 <= s <= 1 for s in label_scores)
    assert max(label_scores) == label_scores[FLIPPED] and rows[FLIPPED]["label_issue"] == "1"
    groups = [int(r["duplicate_group"]) for r in rows]
    assert groups[DUP_A] == groups[DUP_B] == 0 and groups.count(-1) == 88
    assert rows[DUP_A]["duplicate_mixed_labels"] == "1"
    assert [r["unreadable"] for r in rows].count("1") == 1 and rows[BROKEN]["unreadable"] == "1"
    assert rows[0]["unreadable"] == "0" and "truncated" in rows[BROKEN]["unreadable_reason"]
    assert all(0 <= float(r["outlier_score"]) <= 1 for r in rows)
    assert sorted(int(r["review_rank"]) for r in rows) == list(range(1, 91))

    lists = list(out.parent.glob("images_to_exclude_from_training_*.txt"))
    assert len(lists) == 1 and re.fullmatch(r"images_to_exclude_from_training_\d{4}_\d{2}_\d{2}\.txt", lists[0].name)
    excluded = lists[0].read_text().splitlines()
    # The dog's copy labelled cat goes; the dog itself stays, as one copy of each duplicate group does.
    assert set(excluded) == {paths[FLIPPED], paths[BROKEN], paths[DUP_B]}
    assert "label_issue:" in proc.stdout and "unreadable: 1 image cannot be read" in proc.stdout


def test_unreachable_images_leave_unreadable_blank(tmp_path):
    npz, paths = write_dataset(tmp_path, with_images=False)
    out = tmp_path / "report.csv"
    target = tmp_path / "lists" / "exclude.txt"
    target.parent.mkdir()
    proc = run_cli("scan", npz, "--out", out, "--exclude-top", 2, "--exclude-out", target, "--metric", "euclidean")
    assert proc.returncode == 0, proc.stderr
    _, rows = read_report(out)
    assert {r["unreadable"] for r in rows} == {""} and {r["unreadable_reason"] for r in rows} == {""}
    assert "not checked" in proc.stdout
    excluded = target.read_text().splitlines()
    assert set(excluded) == {paths[FLIPPED], paths[DUP_B]}
    assert not list(tmp_path.glob("images_to_exclude_from_training_*.txt"))


def test_images_found_without_a_root_are_checked(tmp_path):
    npz, _ = write_dataset(tmp_path)
    out = tmp_path / "report.csv"
    assert run_cli("scan", npz, "--out", out, "--k", 10).returncode == 0
    _, rows = read_report(out)
    assert [r["unreadable"] for r in rows].count("1") == 1 and rows[BROKEN]["unreadable"] == "1"


def test_bad_npz_exits_2_with_a_readable_message(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    proc = run_cli("scan", bad, "--out", tmp_path / "r.csv")
    assert proc.returncode == 2
    assert "not an NPZ file" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.csv").exists()

    missing = run_cli("scan", tmp_path / "missing.npz", "--out", tmp_path / "r.csv")
    assert missing.returncode == 2 and "missing.npz" in missing.stderr and "Traceback" not in missing.stderr

    no_labels = tmp_path / "no_labels.npz"
    np.savez(no_labels, embeddings=np.zeros((20, 3)), image_paths=np.array(["/a.png"] * 20))
    proc = run_cli("scan", no_labels, "--out", tmp_path / "r.csv")
    assert proc.returncode == 2 and "missing 'labels'" in proc.stderr


def test_bad_arguments_exit_2(tmp_path):
    npz, _ = write_dataset(tmp_path, with_images=False)
    assert run_cli("scan", npz).returncode == 2  # --out is required
    assert run_cli("scan", npz, "--out", tmp_path / "r.csv", "--metric", "manhattan").returncode == 2
    assert run_cli("scan", npz, "--out", tmp_path / "r.csv", "--image-root", tmp_path / "nope").returncode == 2
    assert run_cli("frobnicate").returncode == 2
    helped = run_cli("scan", "--help")
    assert helped.returncode == 0 and "unreadable" in helped.stdout and "--exclude-top" in helped.stdout


def test_scan_imports_no_ui_or_heavy_libraries(tmp_path):
    npz, _ = write_dataset(tmp_path, with_images=False)
    code = (
        "import json, sys\n"
        "from cleaner.__main__ import main\n"
        f"code = main(['scan', {str(npz)!r}, '--out', {str(tmp_path / 'r.csv')!r}])\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    loaded = {name.split(".")[0] for name in result["modules"]}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    assert "PIL" not in loaded  # images were not reachable, so Pillow was never needed


def test_thorough_scan_reports_its_probe_and_ranks_the_flipped_label_first(tmp_path):
    npz, _ = write_dataset(tmp_path, with_images=False)
    out = tmp_path / "report.csv"
    proc = run_cli("scan", npz, "--out", out, "--thorough", "--no-image-check")
    assert proc.returncode == 0, proc.stderr
    assert "linear probe: fold 5 of 5 done" in proc.stdout
    _, rows = read_report(out)
    by_label_score = sorted(rows, key=lambda r: -float(r["label_issue_score"]))
    assert int(by_label_score[0]["index"]) in (FLIPPED, DUP_B)  # the planted label errors come first
    assert rows[FLIPPED]["suggested_label"] == "cat"
