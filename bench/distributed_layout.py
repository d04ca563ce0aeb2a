"""kNN preservation of the distributed landmark layout (refined on one worker, and unrefined) against the
single-process landmark layout, on the same data.

    python bench/distributed_layout.py [--n 120000] [--dims 128] [--workers 2] [--out /tmp/distributed_layout.json]

Data as bench/distributed.py generates it (100 classes, shards written one at a time). The single-process layout is
cleaner's `landmark_layout` on the single-process graph; the distributed ones are `distributed_layouts` on the
cluster's graph, with the refinement (the default) and without it (`refine_epochs=0`). Preservation is
bench/scale.py's `knn_preservation` (the share of each sampled row's 15 nearest rows in the embeddings, unit length
for cosine, kept among its 15 nearest on the 3D map), on the same sampled rows for every map.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/distributed.py hides `distributed`
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "300s")  # as bench/distributed.py: busy machines
os.environ.setdefault("DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP", "600s")


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=120_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    from cleaner.distributed.graph import distributed_graph
    from cleaner.distributed.layout import distributed_layouts
    from cleaner.distributed.scan import open_on_cluster
    from cleaner.graph.distance import auto_metric
    from cleaner.graph.neighbours import neighbour_graph
    from cleaner.io.shards import load_sharded
    from cleaner.layout.layouts import LayoutParams, landmark_layout

    bench_distributed, scale = _bench_module("distributed"), _bench_module("scale")
    result: dict = {"n": args.n, "dims": args.dims, "workers": args.workers, "load_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-layout-") as tmp:
        shards = bench_distributed.generate(Path(tmp), args.n, args.dims, bench_distributed.shard_count(args.n, 0))
        data = load_sharded(shards, max_rows=args.n)
        metric = auto_metric(data.embeddings).metric
        result["metric"] = metric
        x = data.embeddings / np.linalg.norm(data.embeddings, axis=1, keepdims=True) if metric == "cosine" else None
        original = data.embeddings if x is None else x
        sample = scale.quality_sample(len(original))
        truth = scale._knn_rows(original, sample, scale.QUALITY_K)
        maps, seconds = {}, {}
        t0 = time.perf_counter()
        graph = neighbour_graph(data.embeddings, k=20, metric=metric)
        seconds["single_graph"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        maps["single"] = landmark_layout(data.embeddings, graph, LayoutParams(n_components=3, metric=metric))
        seconds["single_layout"] = time.perf_counter() - t0
        del graph
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
            ) as cluster,
            Client(cluster) as client,
        ):
            opened = open_on_cluster(client, str(shards), metric)
            found = distributed_graph(opened.rows, 20)
            for name, epochs in (("distributed_refined", None), ("distributed_unrefined", 0)):
                timings: dict = {}
                t0 = time.perf_counter()
                extra = {} if epochs is None else {"refine_epochs": epochs}
                maps[name] = distributed_layouts(opened.rows, found, metric, seconds=timings, **extra)[3][1]
                seconds[name] = time.perf_counter() - t0
                result[f"{name}_stages_s"] = {k: round(v, 1) if isinstance(v, float) else v for k, v in timings.items()}
        result["knn_preservation_3d"] = {
            name: round(scale.knn_preservation(original, coords, truth=truth), 4) for name, coords in maps.items()
        }
        result["class_region_3d"] = {
            name: round(scale.class_region(coords, data.label_codes), 4) for name, coords in maps.items()
        }
        result["class_region_embeddings"] = round(scale.class_region(original, data.label_codes), 4)
        result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
        result["load_at_end"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
