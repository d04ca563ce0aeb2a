"""A dataset opened on a Dask cluster: its shards read by the workers where they lie, checked across shards, split
into parts, prepared for the search; what the client needs (labels, paths, digests) gathered.

`open_on_cluster` returns a `ClusterDataset`: `.dataset` is the client's `Dataset` for the scores and the report (its
labels and image paths; its embeddings a zero-cost stand-in of the right shape, since the embeddings stay on the
workers), `.rows` the prepared rows on the workers for `distributed_graph` and `distributed_layouts`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from cleaner.distributed import tasks
from cleaner.distributed.graph import ClusterRows, Part
from cleaner.graph.distance import AUTO, auto_metric
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.io.shards import check_shards, is_sharded, list_shards, sharded_digests
from cleaner.server.limits import MAX_DIMS, MAX_NPZ_BYTES, MAX_ROWS

PARTS_PER_WORKER = 2  # a shard larger than N / (this x workers) rows is read in slices by several workers


def _wait(futures) -> None:
    from distributed import wait

    wait(futures)


@dataclass
class ClusterDataset:
    dataset: Dataset  # on the client: labels, paths, digests; embeddings a stand-in (never read)
    rows: ClusterRows  # on the workers
    metric: str
    metric_reason: str
    n_shards: int
    seconds: dict = field(default_factory=dict)


def _stand_in(n: int, dims: int) -> np.ndarray:
    """[n, dims] read-only zeros that take no memory: the embeddings stay on the workers."""
    return np.broadcast_to(np.zeros((1, dims), dtype=np.float32), (n, dims))


def _plan_parts(paths: list[str], sizes: list[int], workers: int) -> list[Part]:
    total = sum(sizes)
    most = max(1, math.ceil(total / max(1, PARTS_PER_WORKER * workers)))
    parts, offset = [], 0
    for path, size in zip(paths, sizes, strict=True):
        pieces = max(1, math.ceil(size / most))
        edges = np.linspace(0, size, pieces + 1).round().astype(int)
        for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            if b > a:
                parts.append(Part(path, a, b, offset + a))
        offset += size
    return parts


def open_on_cluster(
    client,
    source: str,
    metric: str = AUTO,
    *,
    max_bytes: int = MAX_NPZ_BYTES,
    max_rows: int = MAX_ROWS,
    max_dims: int = MAX_DIMS,
    total_rows: int | None = None,
) -> ClusterDataset:
    """Read, check and prepare the dataset (one NPZ, or a folder of NPZ shards) on the cluster's workers.

    `max_rows` bounds each shard (as an NPZ is bounded); `total_rows`, when given, the whole dataset.
    """
    seconds = {}
    t0 = time.perf_counter()
    if "://" not in os.fspath(source):  # the workers' working folders are not the client's: a path from the root
        source = os.path.abspath(source)
    sharded = is_sharded(source)
    paths = list_shards(source) if sharded else [os.fspath(source)]
    limits = (max_bytes, max_rows, max_dims)
    loaded = [client.submit(tasks.load_whole, p, *limits) for p in paths]
    try:
        infos = client.gather([client.submit(tasks.info_of, f) for f in loaded])
    except DatasetError:
        raise
    check_shards(infos)
    sizes = [i.n for i in infos]
    n, dims = sum(sizes), infos[0].dims
    if total_rows is not None and n > total_rows:
        raise DatasetError(f"The dataset holds {n:,} rows; this scan accepts at most {total_rows:,}.")
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    parts = _plan_parts(paths, sizes, workers)
    whole = {p: f for p, f in zip(paths, loaded, strict=True)}
    raw = []
    for part in parts:
        size = sizes[paths.index(part.path)]
        if part.start == 0 and part.stop == size:
            raw.append(client.submit(tasks.whole_rows, whole[part.path]))
        else:
            raw.append(client.submit(tasks.read_part, part.path, part.start, part.stop, *limits))
    del loaded, whole  # released once their parts exist; Dask keeps their recipe to read them again if need be
    columns = client.gather([client.submit(tasks.labels_and_paths, r) for r in raw])
    labels = np.concatenate([c[0] for c in columns])
    image_paths = np.concatenate([c[1] for c in columns])
    seconds["read"] = time.perf_counter() - t0
    extremes, sums = zip(*client.gather([client.submit(tasks.summary, r) for r in raw]), strict=True)
    if metric == AUTO:
        # auto_metric's rule on the rows that decide it: the lowest value, the shortest and the longest row overall
        choice = auto_metric(np.concatenate(extremes))
        metric, reason = choice.metric, choice.reason
    else:
        reason = "given"
    mean = (np.sum(sums, axis=0) / n).astype(np.float32) if metric == "euclidean" else None
    mean_future = client.scatter(mean, broadcast=True, hash=False) if mean is not None else None
    prepared = [client.submit(tasks.prepare, r, metric, mean_future) for r in raw]
    _wait(prepared)
    seconds["prepare"] = time.perf_counter() - t0 - seconds["read"]
    if sharded:
        digest, embedding_digest = sharded_digests(infos)
    else:
        digest, embedding_digest = infos[0].digest, infos[0].embedding_digest
    name = os.path.basename(os.fspath(source).rstrip("/")) or "dataset"
    dataset = Dataset(
        embeddings=_stand_in(n, dims),
        labels=labels,
        image_paths=image_paths,
        digest=digest,
        embedding_digest=embedding_digest,
        name=name,
    )
    rows = ClusterRows(client, parts, prepared, metric, dims)
    return ClusterDataset(dataset, rows, metric, reason, len(paths), seconds)
