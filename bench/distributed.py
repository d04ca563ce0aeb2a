"""The distributed precompute against the single-process one, at the same N, in one run.

    python bench/distributed.py [--n 200000] [--dims 128] [--workers 2] [--shards 0] [--out /tmp/distributed.json]
                                [--timeout 14400] [--folder DIR]

Data: `--n` rows in `--dims` dimensions, 100 classes (class centres ~ N(0, 3^2 I), rows = centre + N(0, I), float32,
seeded), 1% of the labels flipped, written shard by shard (`--shards`, default one per 250,000 rows and at least 8):
each shard is generated, written and dropped before the next, so 2M x 128 never needs more than one shard in memory.
Both scans read the same folder of shards.

1. single: `python -m cleaner scan shards --out single.csv --precompute --no-image-check --max-rows N` in a child
   process: wall time and peak RSS (os.wait4's ru_maxrss of the child). Its sidecar is kept as single.cleaner.npz.
   Skipped, with the reason in the JSON, when the machine's available memory is below an estimate of its peak
   (`--single-mb-per-krow`); a child that fails, is killed or passes `--timeout` is recorded, and the run goes on.
2. distributed: a LocalCluster of `--workers` worker processes (one thread each) started by this script, then
   `python -m cleaner scan shards --out dask.csv --precompute --no-image-check --dask tcp://...` in a child: wall
   time, the client child's peak RSS, and each worker's peak RSS (VmHWM, read on the worker after the run). The
   stages each printed with their times are kept (`stdout`).
3. agreement: the share of rows whose flags (any kind) agree between the two reports, and each graph's recall
   against an exact search for `--recall-sample` rows (the shards read one at a time).
Figures are for this machine only (its core count and load are in the JSON); on a shared machine, run it twice.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
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
# On a busy machine the scheduler (in this process) can be unresponsive for longer than dask's 30 s defaults, and a
# client or worker that gives up loses the run: generous timeouts, for this process, its workers and the scan child.
os.environ.setdefault("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "300s")
os.environ.setdefault("DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP", "600s")

CLASSES = 100
ROWS_PER_SHARD = 250_000


def shard_count(n: int, asked: int) -> int:
    return asked if asked > 0 else max(8, -(-n // ROWS_PER_SHARD))


def generate(folder: Path, n: int, dims: int, shards: int, seed: int = 0) -> Path:
    """The shards, one at a time (each seeded by its number): never more than one shard's rows in memory."""
    centres = np.random.default_rng(seed).normal(0, 3, size=(CLASSES, dims)).astype(np.float32)
    out = folder / "shards"
    out.mkdir()
    edges = np.linspace(0, n, shards + 1).astype(np.int64)
    for s in range(shards):
        a, b = int(edges[s]), int(edges[s + 1])
        rng = np.random.default_rng([seed, s])
        labels = rng.integers(0, CLASSES, size=b - a)
        flip = rng.random(b - a) < 0.01
        given = np.where(flip, (labels + rng.integers(1, CLASSES, size=b - a)) % CLASSES, labels)
        emb = centres[labels]
        emb += rng.standard_normal(size=emb.shape, dtype=np.float32)
        np.savez(
            out / f"part_{s:05d}.npz",
            embeddings=emb,
            labels=np.array([f"class{c:03d}" for c in given]),
            image_paths=np.array([f"/data/images/{i:09d}.jpg" for i in range(a, b)]),
        )
        del emb
    return out


def run_child(args: list[str], cwd: Path, timeout: float) -> dict:
    """A child's wall time, peak RSS, exit and output; killed (its whole process group) after `timeout` seconds."""
    start = time.perf_counter()
    log = cwd / f"child-{int(time.time() * 1000)}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cleaner", *args],
            cwd=cwd,
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    code = os.waitstatus_to_exitcode(status)
    out = log.read_text(errors="replace").splitlines()
    result = {
        "wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "exit": code,
        "stdout": out[-60:],
    }
    if timed_out:
        result["failed"] = f"killed after the --timeout of {timeout:.0f} s"
    elif code < 0:
        result["failed"] = f"killed by signal {-code} (out of memory: see dmesg)"
    elif code:
        result["failed"] = f"exit code {code}"
    return result


def _peak_rss_mb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


def available_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return -1


def flags(path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        return np.array(
            [[r["label_issue"] == "1", r["outlier"] == "1", r["duplicate_group"] != "-1"] for r in csv.DictReader(fh)]
        )


def exact_sample(shards: Path, sample: np.ndarray, k: int, metric: str) -> np.ndarray:
    """The exact k nearest other rows' distances (in the metric's units) of the sampled rows, shard by shard."""
    from cleaner.graph.knn_rows import to_metric

    paths = sorted(shards.glob("*.npz"))

    def prepared(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x

    parts, offset = [], 0
    queries = None
    for path in paths:  # first the queries' own rows
        with np.load(path) as z:
            x = z["embeddings"]
        hit = (sample >= offset) & (sample < offset + len(x))
        parts.append((offset, len(x)))
        if hit.any():
            rows = prepared(x[sample[hit] - offset])
            queries = rows if queries is None else np.concatenate([queries, rows])
        offset += len(x)
    best = np.full((len(sample), k + 1), np.inf, dtype=np.float32)
    q_sq = np.einsum("ij,ij->i", queries, queries)
    for path, (offset, _) in zip(paths, parts, strict=True):
        with np.load(path) as z:
            x = prepared(z["embeddings"])
        for start in range(0, len(x), 50_000):  # 1,000 queries x 50,000 rows: 200 MB of distances at a time
            block = x[start : start + 50_000]
            d2 = q_sq[:, None] + np.einsum("ij,ij->i", block, block)[None, :] - 2.0 * (queries @ block.T)
            lo = offset + start
            own = (sample >= lo) & (sample < lo + len(block))
            d2[np.flatnonzero(own), sample[own] - lo] = np.inf  # never the row itself
            near = np.partition(d2, min(k, d2.shape[1] - 1), axis=1)[:, : k + 1]
            best = np.sort(np.concatenate([best, near], axis=1), axis=1)[:, : k + 1]
    return to_metric(best[:, :k], metric)


def graph_recall(sidecar: Path, sample: np.ndarray, truth: np.ndarray) -> float:
    from cleaner.graph.knn_rows import recall

    with np.load(sidecar) as z:
        return round(recall(z["graph_indices"][sample], z["graph_distances"][sample], truth), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shards", type=int, default=0, help="0: one per 250,000 rows, at least 8")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds each scan may take")
    parser.add_argument("--recall-sample", type=int, default=1000)
    parser.add_argument(
        "--single-mb-per-krow", type=float, default=6.0, help="the single scan's expected peak MB per 1,000 rows"
    )
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--folder", type=Path, help="work here (kept) instead of a temporary folder")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    shards = shard_count(args.n, args.shards)
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-dist-") as tmp:
        folder = args.folder or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = generate(folder, args.n, args.dims, shards)
        result = {
            "n": args.n,
            "dims": args.dims,
            "workers": args.workers,
            "shards": shards,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_at_start": os.getloadavg()},
            "generate_s": round(time.perf_counter() - t0, 1),
        }
        common = ["--precompute", "--no-image-check"]
        needed, free = args.single_mb_per_krow * args.n / 1000, available_mb()
        if args.skip_single:
            result["single"] = {"skipped": "--skip-single"}
        elif free >= 0 and needed > free:
            result["single"] = {"skipped": f"needs ~{needed:,.0f} MB, {free:,} MB available"}
        else:
            single = ["scan", "shards", "--out", "single.csv", *common, "--max-rows", str(args.n)]
            result["single"] = run_child(single, folder, args.timeout)
            if (folder / "shards.cleaner.npz").exists():
                (folder / "shards.cleaner.npz").rename(folder / "single.cleaner.npz")
        print(json.dumps({"single": {k: v for k, v in result["single"].items() if k != "stdout"}}), flush=True)
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
            ) as cluster,
            Client(cluster) as client,
        ):
            scan = ["scan", "shards", "--out", "dask.csv", *common, "--dask", cluster.scheduler_address]
            result["distributed"] = run_child(scan, folder, args.timeout)
            result["distributed"]["worker_peak_rss_mb"] = sorted(client.run(_peak_rss_mb).values())
        result["machine"]["load_at_end"] = os.getloadavg()
        single_ok = (folder / "single.cleaner.npz").exists() and (folder / "single.csv").exists()
        dask_ok = (folder / "shards.cleaner.npz").exists() and (folder / "dask.csv").exists()
        if dask_ok:
            with np.load(folder / "shards.cleaner.npz") as z:
                metric, k = str(z["graph_metric"]), z["graph_indices"].shape[1]
            sample = np.sort(np.random.default_rng(7).choice(args.n, min(args.recall_sample, args.n), replace=False))
            truth = exact_sample(data, sample, k, metric)
            result["recall_vs_exact"] = {
                "sample": len(sample),
                "distributed": graph_recall(folder / "shards.cleaner.npz", sample, truth),
            }
            if single_ok:
                result["recall_vs_exact"]["single"] = graph_recall(folder / "single.cleaner.npz", sample, truth)
        if single_ok and dask_ok:
            a, b = flags(folder / "single.csv"), flags(folder / "dask.csv")
            result["flags_agree"] = round(float((a == b).all(axis=1).mean()), 5)
            result["speedup"] = round(result["single"]["wall_s"] / result["distributed"]["wall_s"], 2)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
