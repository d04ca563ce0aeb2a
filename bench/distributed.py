"""The distributed precompute against the single-process one, at the same N, in one run.

    python bench/distributed.py [--n 200000] [--dims 128] [--workers 2] [--shards 8] [--out /tmp/distributed.json]

Data: `--n` rows in `--dims` dimensions, 100 classes (class centres ~ N(0, 3^2 I), rows = centre + N(0, I), float32,
seeded), 1% of the labels flipped; written once as one NPZ (for the single-process scan; at most 1M rows, the NPZ
limit) and as `--shards` NPZ shards of equal size (for the distributed one).

1. single: `python -m cleaner scan one.npz --out single.csv --precompute --no-image-check` in a child process: wall
   time and peak RSS (os.wait4's ru_maxrss of the child).
2. distributed: a LocalCluster of `--workers` worker processes (one thread each) started by this script, then
   `python -m cleaner scan shards/ --out dask.csv --precompute --no-image-check --dask tcp://...` in a child: wall
   time, the client child's peak RSS, and each worker's peak RSS (VmHWM, read on the worker after the run). The
   stages each printed with their times are kept (`stdout`).
3. agreement: the share of rows whose flags (any kind) agree between the two reports, and the recall of the
   distributed graph against the single-process graph's k-th distance (both read from their sidecars).
Figures are for this machine only (its core count is in the JSON); on a shared machine, run it twice.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would hide the `distributed` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
# The LocalCluster's scheduler (in this process) and its worker processes unpickle cleaner's tasks: they need
# cleaner importable, as every worker of a real cluster does (the same environment everywhere).
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def generate(folder: Path, n: int, dims: int, shards: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    classes = 100
    centres = rng.normal(0, 3, size=(classes, dims)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    flip = rng.random(n) < 0.01
    given = np.where(flip, (labels + rng.integers(1, classes, size=n)) % classes, labels)
    emb = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        emb[start:stop] = centres[labels[start:stop]] + rng.normal(size=(stop - start, dims)).astype(np.float32)
    paths = np.array([f"/data/images/{i:08d}.jpg" for i in range(n)])
    names = np.array([f"class{c:03d}" for c in given])
    if n <= 1_000_000:
        np.savez(folder / "one.npz", embeddings=emb, labels=names, image_paths=paths)
    (folder / "shards").mkdir()
    edges = np.linspace(0, n, shards + 1).astype(int)
    for s in range(shards):
        a, b = edges[s], edges[s + 1]
        np.savez(
            folder / "shards" / f"part_{s:05d}.npz", embeddings=emb[a:b], labels=names[a:b], image_paths=paths[a:b]
        )


def run_child(args: list[str], cwd: Path) -> dict:
    """A child's wall time, peak RSS and output."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cleaner", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"cleaner {' '.join(args)} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024), "stdout": out.splitlines()}


def _peak_rss_mb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


def flags(path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([[r["label_issue"] == "1", r["outlier"] == "1", r["duplicate_group"] != "-1"] for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory(prefix="cleaner-bench-dist-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        generate(folder, args.n, args.dims, args.shards)
        result = {
            "n": args.n,
            "dims": args.dims,
            "workers": args.workers,
            "shards": args.shards,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "generate_s": round(time.perf_counter() - t0, 1),
        }
        common = ["--precompute", "--no-image-check"]
        if args.n <= 1_000_000:
            result["single"] = run_child(["scan", "one.npz", "--out", "single.csv", *common], folder)
            print(json.dumps({"single_wall_s": result["single"]["wall_s"]}), flush=True)
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
            ) as cluster,
            Client(cluster) as client,
        ):
            result["distributed"] = run_child(
                ["scan", "shards", "--out", "dask.csv", *common, "--dask", cluster.scheduler_address], folder
            )
            peaks = client.run(_peak_rss_mb)
            result["distributed"]["worker_peak_rss_mb"] = sorted(peaks.values())
        if "single" in result:
            a, b = flags(folder / "single.csv"), flags(folder / "dask.csv")
            result["flags_agree"] = round(float((a == b).all(axis=1).mean()), 5)
            from cleaner.graph.knn_rows import recall

            with np.load(folder / "one.cleaner.npz") as s, np.load(folder / "shards.cleaner.npz") as d:
                result["graph_recall_vs_single"] = round(
                    recall(d["graph_indices"], d["graph_distances"], s["graph_distances"]), 4
                )
            result["speedup"] = round(result["single"]["wall_s"] / result["distributed"]["wall_s"], 2)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
