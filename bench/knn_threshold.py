#!/usr/bin/env python
"""Which neighbour search should cleaner use at N rows? (cleaner.neighbours.EXACT_MAX_ROWS, CLUSTERED_MAX_ROWS)

    python bench/knn_threshold.py --sizes 2000 5000 10000 20000 50000 100000 --json OUT.json

For each N, each search runs in a fresh process (numba compiles on first use, so a cold process is what
the first user of a server pays): the exact blockwise search, the inverted-file ("clustered") search, and
pynndescent, whose first call (with compilation) and second call (warm) are both timed. Recall is the
share of the exact 20 nearest neighbours found, on 1,000 sampled rows. Same synthetic data as
bench/scale.py. Times of one run on a shared machine: compare within a run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

K = 20
SEARCHES = ("exact", "clustered", "pynndescent")


def child(kind: str, data: str, out: str) -> None:
    from cleaner import neighbours

    x = np.load(data)
    result: dict = {}
    run = {
        "exact": lambda: neighbours.exact_neighbours(x, K, "cosine"),
        "clustered": lambda: neighbours.clustered_neighbours(x, K, "cosine"),
        "pynndescent": lambda: neighbours.approximate_neighbours(x, K, "cosine"),
    }[kind]
    t = time.perf_counter()
    graph = run()
    result["first_s"] = time.perf_counter() - t
    if kind == "pynndescent":
        t = time.perf_counter()
        graph = run()
        result["warm_s"] = time.perf_counter() - t
    if graph is None:  # the clustered search declined (recall too low): the caller would use pynndescent
        result["declined"] = True
    else:
        np.save(out, graph.indices)
    Path(out + ".json").write_text(json.dumps(result))


def run(kind: str, data: Path, work: Path) -> tuple[dict, np.ndarray | None]:
    out = str(work / f"{kind}.npy")
    subprocess.run([sys.executable, __file__, "--child", kind, str(data), out], check=True)
    result = json.loads(Path(out + ".json").read_text())
    return result, None if result.get("declined") else np.load(out)


def recall(indices: np.ndarray, x: np.ndarray, sample: np.ndarray) -> float:
    from scale import _knn_rows

    truth = _knn_rows(x, sample, K)
    return float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(truth, indices[sample])]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000, 5_000, 10_000, 20_000, 50_000, 100_000])
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--exact-max", type=int, default=50_000, help="skip the exact search above this N")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        child(*opts.child)
        return
    from scale import make_data

    from cleaner import neighbours

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in opts.sizes:
            emb, _ = make_data(n, opts.dims)
            data = work / "x.npy"
            np.save(data, emb)
            sample = np.random.default_rng(1).choice(n, size=min(n, 1000), replace=False)
            row: dict = {"n": n}
            for kind in SEARCHES:
                if kind == "exact" and n > opts.exact_max:
                    continue
                timing, indices = run(kind, data, work)
                row[f"{kind}_s"] = round(timing["first_s"], 2)
                if "warm_s" in timing:
                    row[f"{kind}_warm_s"] = round(timing["warm_s"], 2)
                row[f"{kind}_recall"] = None if indices is None else round(recall(indices, emb, sample), 4)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"k": K, "dims": opts.dims, "metric": "cosine", "exact_max_rows": neighbours.EXACT_MAX_ROWS,
              "clustered_max_rows": neighbours.CLUSTERED_MAX_ROWS, "rows": rows}
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
