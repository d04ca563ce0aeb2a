"""The 3D and 2D maps across the cluster, by cleaner's landmark layout (cleaner/layout/landmarks.py):

- the landmarks: `choose_landmarks` (seeded, uniform: every class keeps its share), their prepared rows gathered;
- UMAP on the landmarks on one worker each for the 3D and the 2D map, at once (`landmark_layout` run on the
  landmarks alone: their own kNN graph, the landmark epochs, no refinement);
- every other row placed from its neighbours in the shared graph on all workers: `membership_strengths` per part,
  then the rounds of `place_from_neighbours`, each round one task per part against the places known at the start
  of the round (so the result is the single-machine placement's), both maps in one pass;
- a row with no path to a landmark goes to its nearest landmark (`nearest_rows`) with the same seeded jitter;
- then the single-machine layout's last step, `refine_placed` (a few epochs of umap-learn's optimiser over every
  row from the placed start), on one worker per map: the graph's parts are joined there. Without it classes that
  are well apart come out as strands (each row sits at a mean of its neighbours, none pushed apart). It needs the
  whole graph and umap-learn's edge arrays in one worker's memory (~1.5 KB per row), so above REFINE_MAX_ROWS rows
  it is skipped and the scan says so.
"""

from __future__ import annotations

import time

import numpy as np

from cleaner.distributed import tasks
from cleaner.distributed.graph import ClusterRows, DistributedGraph
from cleaner.layout.landmarks import choose_landmarks, nearest_rows
from cleaner.layout.layouts import LANDMARK_COUNT, LANDMARK_REFINE_EPOCHS, UMAP_SMALL_DATA_ROWS, LayoutParams

DIMS = (3, 2)
REFINE_MAX_ROWS = 5_000_000  # the refinement's whole graph and edge arrays in one worker: ~8 GB at this size


def distributed_layouts(
    rows: ClusterRows,
    found: DistributedGraph,
    metric: str,
    landmarks: int | None = None,
    seconds: dict | None = None,
    refine_epochs: int = LANDMARK_REFINE_EPOCHS,
    refine_max_rows: int = REFINE_MAX_ROWS,
) -> dict[int, tuple[LayoutParams, np.ndarray]]:
    """{3: (params, coords), 2: (params, coords)} with the app's default map settings for this metric.
    `seconds` receives each stage's time, and "refined": whether the refinement ran."""
    seconds = {} if seconds is None else seconds
    client, n = rows.client, rows.n
    params = {d: LayoutParams(n_components=d, metric=metric) for d in DIMS}
    first = params[DIMS[0]]
    n_neighbors = max(2, min(first.n_neighbors, found.graph.k + 1))  # as the single-machine layout's
    t0 = time.perf_counter()
    chosen = choose_landmarks(n, min(LANDMARK_COUNT if landmarks is None else landmarks, n), first.seed)
    landmark_x = rows.gather_rows(chosen)
    shared = client.scatter(landmark_x, broadcast=True, hash=False)
    maps = {d: rows.submit(tasks.landmark_map, shared, params[d], n_neighbors, pure=False) for d in DIMS}
    weights = [rows.submit(tasks.weights_of, g, n_neighbors) for g in found.parts]
    landmark_coords = {d: maps[d].result() for d in DIMS}
    t1 = time.perf_counter()
    seconds["landmark_umap"] = t1 - t0
    width = sum(DIMS)
    coords = np.zeros((n, width), dtype=np.float32)
    placed = np.zeros(n, dtype=bool)
    coords[chosen] = np.hstack([landmark_coords[d] for d in DIMS])
    placed[chosen] = True
    rounds = 0
    while not placed.all():
        now_c, now_p = client.scatter([coords, placed], broadcast=True, hash=False)
        results = client.gather(
            [
                rows.submit(tasks.place_round, g, w, part.offset, now_c, now_p)
                for part, g, w in zip(rows.parts, found.parts, weights, strict=True)
            ]
        )
        new = [r for r in results if len(r[0])]
        if not new:
            break
        for new_rows, new_coords in new:  # after the round: no row saw a place found in the same round
            coords[new_rows] = new_coords
            placed[new_rows] = True
        rounds += 1
    seconds["placement"] = time.perf_counter() - t1
    seconds["placement_rounds"] = rounds
    out, column = {}, 0
    lost = np.flatnonzero(~placed)
    seconds["unplaced"] = int(len(lost))
    near = chosen[nearest_rows(rows.gather_rows(lost), landmark_x, metric)] if len(lost) else lost
    for d in DIMS:
        these = np.ascontiguousarray(coords[:, column : column + d])
        column += d
        if len(lost):
            rng = np.random.default_rng(params[d].seed)
            scale = float(np.median(landmark_coords[d].std(axis=0))) * 0.01 or 1e-3
            these[lost] = these[near] + rng.normal(scale=scale, size=(len(lost), d))
        out[d] = (params[d], these)
    t2 = time.perf_counter()
    # umap-learn lays out fewer than its small-data bound from the rows it is given (here: the start), not the graph.
    refine = refine_epochs > 0 and UMAP_SMALL_DATA_ROWS <= n <= refine_max_rows
    if refine:
        starts = {d: client.scatter(out[d][1], hash=False) for d in DIMS}
        futures = {
            d: rows.submit(
                tasks.refined_map, found.parts, starts[d], chosen, params[d], refine_epochs, found.nprobe is None
            )
            for d in DIMS
        }
        out = {d: (params[d], futures[d].result()) for d in DIMS}
    seconds["refined"] = refine
    seconds["refine"] = time.perf_counter() - t2
    return out
