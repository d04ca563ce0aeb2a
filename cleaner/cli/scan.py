"""`python -m cleaner scan`: score every sample of an NPZ and write a CSV report, without starting the app.

Imports only numpy and cleaner's core (Pillow once images are checked): no streamlit, plotly, umap, sklearn or
scipy, so a scan of a few thousand rows finishes in well under a second.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cleaner.decisions.records import Decision, Decisions, exclusion_file_name
from cleaner.graph.distance import AUTO, auto_metric
from cleaner.graph.knn_backends import METRICS
from cleaner.graph.neighbours import GRAPH_K, NeighbourGraph, neighbour_graph
from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.io.map_sample import MAP_LIMIT, map_sample_bytes, map_sample_path, sample_rows
from cleaner.io.shards import is_sharded, load_sharded
from cleaner.io.sidecar import sidecar_bytes, sidecar_path
from cleaner.issues.label import LABEL_K
from cleaner.issues.ranking import worst
from cleaner.issues.registry import issue_kinds
from cleaner.issues.report import report_columns, report_csv
from cleaner.issues.suspects import ScanResult, scores_from_graph
from cleaner.server.errors import CleanerError
from cleaner.server.limits import MAX_ROWS
from cleaner.server.text import plural

_PROBE_PATHS = 32  # paths tried to decide whether the images are on this machine at all


def images_reachable(paths: np.ndarray) -> bool:
    """Whether any of a spread of the dataset's image paths exists on this machine."""
    picks = np.unique(np.linspace(0, len(paths) - 1, num=min(_PROBE_PATHS, len(paths))).astype(int))
    for raw in paths[picks].tolist():
        if not os.path.isabs(raw):
            continue
        if os.path.isfile(raw):
            return True
    return False


def _parser() -> argparse.ArgumentParser:
    kinds = issue_kinds()
    parser = argparse.ArgumentParser(
        prog="cleaner scan",
        description=(
            "Score every image of an NPZ (embeddings, labels, image_paths) for "
            + ", ".join(k.description for k in kinds[:-1])
            + f" and {kinds[-1].description}"
            + ", and write one CSV row per image."
        ),
        epilog=(
            f"Columns: {', '.join(report_columns())}. Scores are 0..1, higher = more suspect; suggested_label is "
            "the label the nearest neighbours carry; duplicate_group is -1 for none; review_rank 1 = most suspect. "
            "unreadable is 1 when the image cannot be opened and decoded (missing, empty, truncated, not an "
            "image, or outside every --image-root), 0 when it decodes, and blank when images were not checked. "
            "They are checked when --image-root is given, or else when some of the paths exist on this machine. "
            "Exit codes: 0 done, 1 output could not be written, 2 bad arguments or an unusable NPZ."
        ),
    )
    parser.add_argument(
        "npz",
        metavar="DATA.npz",
        help="NPZ with 'embeddings', 'labels' and 'image_paths', or a folder of such NPZ shards "
        "(same labels in every shard; read in file-name order)",
    )
    parser.add_argument("--out", required=True, metavar="REPORT.csv", help="CSV report to write")
    parser.add_argument(
        "--exclude-top",
        type=int,
        default=0,
        metavar="N",
        help="also write the N most suspect image paths, one per line, to "
        "images_to_exclude_from_training_YYYY_MM_DD.txt next to --out (one copy of each duplicate group stays)",
    )
    parser.add_argument("--exclude-out", metavar="PATH", help="where to write the exclusion list instead")
    parser.add_argument(
        "--k",
        type=int,
        default=GRAPH_K,
        help=f"nearest neighbours per image (default {GRAPH_K}; the label vote uses the nearest {LABEL_K} of them)",
    )
    parser.add_argument(
        "--metric",
        choices=(AUTO, *METRICS),
        default=AUTO,
        help="distance between embeddings (default auto: euclidean for non-negative features such as "
        "ReLU activations, cosine for signed or normalised embeddings, as the app's default)",
    )
    parser.add_argument(
        "--image-root",
        action="append",
        default=[],
        metavar="DIR",
        help="folder the images may be read from (repeatable); paths outside every root count as unreadable",
    )
    parser.add_argument("--no-image-check", action="store_true", help="never open the images")
    parser.add_argument(
        "--thorough",
        action="store_true",
        help="rank label issues with a cross-validated linear probe on the embeddings as well as the "
        "neighbours' votes: slower, better where the embedding mixes classes (imports scikit-learn)",
    )
    parser.add_argument(
        "--precompute",
        action="store_true",
        help="also compute the 3D and 2D maps and write them with the neighbour graph to "
        "DATA.cleaner.npz next to DATA.npz: the app then opens this dataset at once, without computing "
        "(run it on a bigger machine, copy the sidecar next to the NPZ on the server; imports umap-learn)",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="compute the neighbour graph (and with --precompute the maps) on a Dask cluster: a "
        "scheduler address (tcp://HOST:8786) or local:N for N worker processes on this machine; the "
        "workers read the NPZ or the shards themselves (needs dask[distributed])",
    )
    parser.add_argument(
        "--dask-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="give up reaching the --dask scheduler after this long (default 10)",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=MAX_ROWS,
        metavar="N",
        help=f"without --dask, read at most N rows into this process (default {MAX_ROWS:,}, the app's limit; "
        "raise it on a machine with the memory for it)",
    )
    parser.add_argument(
        "--map-limit",
        type=int,
        default=MAP_LIMIT,
        metavar="N",
        help=f"with --precompute, above N images also write DATA.map-sample.cleaner.npz: every "
        f"flagged image and a class-stratified sample, N in all, for the map (default {MAP_LIMIT:,})",
    )
    return parser


def _image_access(args: argparse.Namespace, dataset: Dataset):
    """The ImageAccess for the check, or None when the images should not (or cannot) be checked."""
    if args.no_image_check:
        return None
    roots = tuple(Path(r).expanduser().resolve() for r in args.image_root)
    if not roots:
        if not images_reachable(dataset.image_paths):
            return None
        # The person running the CLI may read their own files anywhere; the app's root limits are for a server.
        roots = (Path(os.path.abspath(os.sep)),)
    from cleaner.io.images import ImageAccess, configure_pillow  # Pillow: imported only when images are checked

    configure_pillow()
    return ImageAccess(allowed_roots=roots)


def _write_exclusions(args: argparse.Namespace, dataset: Dataset, result: ScanResult, out: Path) -> int:
    """The --exclude-top list next to the report; returns the exit code."""
    rows = result.exclusion_rows(args.exclude_top)
    exclusions = Decisions()
    overall = worst(*result.all())
    for row in rows.tolist():
        exclusions.put(str(dataset.image_paths[row]), Decision("exclude", reason=str(overall.issue[row])))
    target = Path(args.exclude_out) if args.exclude_out else out.parent / exclusion_file_name()
    try:
        target.write_text(exclusions.exclusion_text(), encoding="utf-8")
    except OSError as exc:
        print(f"cleaner scan: error: could not write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    n_flagged = int(overall.flagged[rows].sum())
    print(f"  exclusion list: {plural(len(exclusions), 'path')} ({n_flagged:,} of them flagged): {target}")
    return 0


def _print_progress(done: int, total: int) -> None:
    print(f"  linear probe: fold {done} of {total} done", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scan; return the exit code."""
    args = _parser().parse_args(argv)
    if args.k < 1:
        print("cleaner scan: error: --k must be at least 1", file=sys.stderr)
        return 2
    if args.exclude_top < 0:
        print("cleaner scan: error: --exclude-top must not be negative", file=sys.stderr)
        return 2
    if args.exclude_out and not args.exclude_top:
        print("cleaner scan: error: --exclude-out needs --exclude-top N", file=sys.stderr)
        return 2
    for root in args.image_root:
        if not Path(root).expanduser().is_dir():
            print(f"cleaner scan: error: --image-root {root} is not a folder", file=sys.stderr)
            return 2
    if args.max_rows < 1:
        print("cleaner scan: error: --max-rows must be at least 1", file=sys.stderr)
        return 2
    if args.map_limit < 1:
        print("cleaner scan: error: --map-limit must be at least 1", file=sys.stderr)
        return 2
    if args.dask and args.thorough:
        print(
            "cleaner scan: error: --thorough needs every embedding in one process; leave it out with --dask",
            file=sys.stderr,
        )
        return 2
    try:
        with _cluster(args) as client:
            return _scan(args, client)
    except CleanerError as exc:  # the cluster: not installed, not reachable
        print(f"cleaner scan: error: {exc}", file=sys.stderr)
        return 2


def _cluster(args: argparse.Namespace):
    """The Dask client for --dask (dask imported only then), or no cluster."""
    if not args.dask:
        return contextlib.nullcontext()
    from cleaner.distributed.cluster import cluster_client

    print(f"dask: connecting to {args.dask}", flush=True)
    return cluster_client(args.dask, timeout=args.dask_timeout)


def _load(args: argparse.Namespace, client) -> tuple[Dataset, NeighbourGraph, object]:
    """The dataset and its graph: in this process, or on the cluster (then also what its maps are made from)."""
    if client is None:
        read = load_sharded if is_sharded(args.npz) else load_npz
        dataset = read(args.npz, max_rows=args.max_rows)
        if args.metric == AUTO:
            choice = auto_metric(dataset.embeddings)
            args.metric = choice.metric  # the sidecar's maps then carry the same distance as the app's "auto"
            print(f"distance: {choice.metric} ({choice.reason})")
        return dataset, neighbour_graph(dataset.embeddings, k=args.k, metric=args.metric), None
    from cleaner.distributed.graph import distributed_graph
    from cleaner.distributed.scan import open_on_cluster

    workers = len(client.scheduler_info().get("workers", {}))
    opened = open_on_cluster(client, args.npz, args.metric)
    if args.metric == AUTO:
        print(f"distance: {opened.metric} ({opened.metric_reason})")
    args.metric = opened.metric
    print(
        f"  read on {workers} Dask workers: {opened.dataset.n:,} rows from {plural(opened.n_shards, 'file')} in "
        f"{len(opened.rows.parts)} parts",
        flush=True,
    )
    found = distributed_graph(opened.rows, args.k)
    how = "exact" if found.nprobe is None else f"inverted file, {found.nprobe} lists probed"
    print(f"  neighbour graph on the cluster ({how})", flush=True)
    return opened.dataset, found.graph, (opened, found)


def _scan(args: argparse.Namespace, client) -> int:
    start = time.perf_counter()
    try:
        dataset, graph, on_cluster = _load(args, client)
    except DatasetError as exc:
        print(f"cleaner scan: error: {args.npz}: {exc}", file=sys.stderr)
        return 2
    access = _image_access(args, dataset)
    progress = _print_progress if args.thorough else None
    result = scores_from_graph(dataset, graph, access, thorough=args.thorough, progress=progress)
    out = Path(args.out)
    try:
        out.write_text(report_csv(dataset, result), encoding="utf-8")
    except OSError as exc:
        print(f"cleaner scan: error: could not write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{dataset.n:,} images scanned in {time.perf_counter() - start:.1f} s; report: {out}")
    for scores in result.all():
        print(f"  {scores.name}: {scores.summary}")
    if result.unreadable is None:
        why = (
            "--no-image-check" if args.no_image_check else "no --image-root given and the image paths do not exist here"
        )
        print(f"  unreadable: not checked ({why})")
    if args.exclude_top and _write_exclusions(args, dataset, result, out):
        return 1
    return _write_sidecar(args, dataset, graph, result, on_cluster) if args.precompute else 0


def _maps(args: argparse.Namespace, dataset: Dataset, graph: NeighbourGraph, on_cluster) -> tuple[dict, str]:
    """({3: (params, coords), 2: (params, coords)}, the name of the algorithm that made them): in this process, or by
    landmarks on the cluster."""
    from cleaner.layout.layouts import cluster_layout_algorithm, layout_algorithm

    start = time.perf_counter()
    if on_cluster is not None:
        from cleaner.distributed.layout import distributed_layouts

        opened, found = on_cluster
        seconds: dict = {}
        layouts = distributed_layouts(opened.rows, found, args.metric, seconds=seconds)
        refined = "refined on one worker" if seconds["refined"] else "not refined (too few or too many rows)"
        print(
            f"  3D and 2D maps computed on the cluster by landmarks, {refined} ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        return layouts, cluster_layout_algorithm()
    from cleaner.layout.layouts import (  # umap-learn: imported only when maps are really computed
        LayoutParams,
        umap_layout,
    )

    layouts = {}
    for dims in (3, 2):
        params = LayoutParams(n_components=dims, metric=args.metric)  # the app's default map settings
        layouts[dims] = (params, umap_layout(dataset.embeddings, graph, params))
        print(f"  {dims}D map computed ({time.perf_counter() - start:.1f} s so far)", flush=True)
    return layouts, layout_algorithm(dataset.n)


def _write_sidecar(
    args: argparse.Namespace, dataset: Dataset, graph: NeighbourGraph, result: ScanResult, on_cluster=None
) -> int:
    """The maps the app would compute, with the graph, next to the NPZ (or the folder of shards), and above the
    map limit the map sample; returns the exit code."""
    layouts, algorithm = _maps(args, dataset, graph, on_cluster)
    target = sidecar_path(args.npz)
    try:
        target.write_bytes(sidecar_bytes(dataset.embedding_digest, graph, layouts, algorithm))
    except OSError as exc:
        print(f"cleaner scan: error: could not write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"  precomputed neighbours and maps: {target} (the app uses them when it opens {Path(args.npz).name})")
    if dataset.n <= args.map_limit:
        return 0
    overall = worst(*result.all())
    rows, n_flagged, how = sample_rows(overall.flagged, overall.score, dataset.label_codes, args.map_limit)
    sample = map_sample_path(args.npz)
    try:
        sample.write_bytes(map_sample_bytes(dataset.embedding_digest, dataset.n, rows, n_flagged, how, layouts))
    except OSError as exc:
        print(f"cleaner scan: error: could not write {sample}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"  map sample: {len(rows):,} of {dataset.n:,} images ({how}): {sample}")
    return 0
