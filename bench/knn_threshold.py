#!/usr/bin/env python
"""Which neighbour search should cleaner use at N rows, and how fast is the graph on every kind of data?

    python bench/knn_threshold.py --kinds clusters classes noise --sizes 2000 5000 10000 20000 --json OUT.json
    python bench/knn_threshold.py --kinds clusters --sizes 20000 100000 --searches graph before \\
        --before /tmp/knn-before --json OUT.json       # /tmp/knn-before: `git worktree add` of the old code
    nice python bench/knn_threshold.py --kinds clusters --sizes 1000000 --searches graph --json OUT.json

Kinds of data (k = 20 neighbours, cosine): `clusters`, bench/scale.py's generator (50 large anisotropic
clusters, 512-D); `classes`, 1,000 small classes (N / 1,000 rows each, 128-D, as in a fine-grained
dataset); `noise`, unclustered Gaussian rows (128-D). `--dims` overrides the dimension of every kind.
Searches, each in a fresh process: `exact` (faiss exact search), `index` (the recall-checked inverted file,
whatever the size), `graph` (cleaner.graph.neighbours.neighbour_graph: what the app runs), `before`
(neighbour_graph of the checkout given by --before). Recall is the share of the exact 20 nearest
neighbours found, on 1,000 sampled rows; peak RSS is the child's, data included; `_cpu_s` is the
child's CPU time in the search (all threads): on a busy shared machine wall seconds swell, CPU time much
less, and on 2 idle cores wall time is about half of it for the parallel parts. `crossover` is, per kind,
the smallest N from which the index search beat the exact one. Times of one run on a shared machine:
compare within a run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

K = 20
METRIC = "cosine"
KINDS = {"clusters": 512, "classes": 128, "noise": 128}
SEARCHES = ("exact", "index", "graph", "before")


def make_kind(kind: str, n: int, dims: int, seed: int = 0) -> np.ndarray:
    """Synthetic embeddings of one kind (see the module docstring), float32, unit length."""
    if kind == "clusters":
        from scale import make_data

        return make_data(n, dims, seed=seed)[0]
    rng = np.random.default_rng(seed)
    if kind == "classes":
        centers = rng.normal(size=(1000, dims)).astype(np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        x = centers[np.arange(n) % 1000] + rng.normal(scale=0.6 / np.sqrt(dims), size=(n, dims)).astype(np.float32)
        x = x[rng.permutation(n)]
    elif kind == "noise":
        x = rng.normal(size=(n, dims)).astype(np.float32)
    else:
        raise ValueError(kind)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def child(kind: str, data: str, out: str) -> None:
    root = Path(out).parent.joinpath("root").read_text() if kind == "before" else str(ROOT)
    sys.path.insert(0, root)
    from cleaner.graph import neighbours

    x = np.load(data)
    result: dict = {"data_rss_mb": round(_rss_mb("VmRSS"))}
    t, cpu = time.perf_counter(), _cpu_s()
    if kind in ("graph", "before"):
        graph = neighbours.neighbour_graph(x, k=K, metric=METRIC)
        indices, exact = graph.indices, graph.exact
    else:
        from cleaner.graph import knn_backends

        backend = knn_backends.FaissBackend(exact_max_work=float("inf") if kind == "exact" else 0)
        indices, _, exact = backend.search(x, K, METRIC)
        result["nprobe"] = backend.last_nprobe
    result["s"] = time.perf_counter() - t
    result["cpu_s"] = _cpu_s() - cpu
    result["exact"] = bool(exact)
    result["peak_rss_mb"] = round(_rss_mb("VmHWM"))
    np.save(out, indices)
    Path(out + ".json").write_text(json.dumps(result))


def run(kind: str, data: Path, work: Path) -> tuple[dict, np.ndarray]:
    out = str(work / f"{kind}.npy")
    subprocess.run([sys.executable, __file__, "--child", kind, str(data), out], check=True)
    return json.loads(Path(out + ".json").read_text()), np.load(out)


def recall(indices: np.ndarray, x: np.ndarray, sample: np.ndarray) -> float:
    from scale import _knn_rows

    truth = _knn_rows(x, sample, K)
    return float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(truth, indices[sample])]))


def crossovers(rows: list[dict]) -> dict:
    """Per kind, the smallest N from which the index search was faster than the exact search at every size."""
    out = {}
    for kind in {r["kind"] for r in rows}:
        timed = sorted(
            (r["n"], r["index_s"] < r["exact_s"])
            for r in rows
            if r["kind"] == kind and "index_s" in r and "exact_s" in r
        )
        wins = [n for i, (n, _) in enumerate(timed) if all(win for _, win in timed[i:])]
        out[kind] = wins[0] if wins else None
    return out


def measure(kind: str, n: int, dims: int, searches: list[str], work: Path, exact_max: int) -> dict:
    x = make_kind(kind, n, dims)
    data = work / "x.npy"
    np.save(data, x)
    sample = np.random.default_rng(1).choice(n, size=min(n, 1000), replace=False)
    row: dict = {"kind": kind, "n": n, "dims": dims}
    for search in searches:
        if search == "exact" and n > exact_max:
            continue
        timing, indices = run(search, data, work)
        row[f"{search}_s"] = round(timing["s"], 2)
        row[f"{search}_cpu_s"] = round(timing["cpu_s"], 2)
        row[f"{search}_recall"] = round(recall(indices, x, sample), 4)
        row[f"{search}_peak_rss_mb"] = timing["peak_rss_mb"]
        row[f"{search}_data_rss_mb"] = timing["data_rss_mb"]
        row[f"{search}_exact"] = timing["exact"]
        if timing.get("nprobe"):
            row[f"{search}_nprobe"] = timing["nprobe"]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=sorted(KINDS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000, 5_000, 10_000, 20_000])
    ap.add_argument("--searches", nargs="+", choices=SEARCHES, default=["exact", "index", "graph"])
    ap.add_argument("--dims", type=int, help="dimension of every kind (default: 512 clusters, 128 others)")
    ap.add_argument("--before", type=Path, help="checkout of the code to compare with (search `before`)")
    ap.add_argument("--exact-max", type=int, default=100_000, help="skip the exact search above this N")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        child(*opts.child)
        return
    if "before" in opts.searches and opts.before is None:
        ap.error("--searches before needs --before PATH")
    sys.path.insert(0, str(ROOT))
    from cleaner.graph import knn_backends

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if opts.before:
            (work / "root").write_text(str(opts.before.resolve()))
        for n in opts.sizes:
            for kind in opts.kinds:
                rows.append(measure(kind, n, opts.dims or KINDS[kind], opts.searches, work, opts.exact_max))
    result = {
        "k": K,
        "metric": METRIC,
        "exact_max_work": knn_backends.EXACT_MAX_WORK,
        "min_recall": knn_backends.MIN_RECALL,
        "crossover": crossovers(rows),
        "rows": rows,
    }
    print(json.dumps({"crossover": result["crossover"]}))
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
