"""Near-duplicates: groups of samples closer to each other than a small share of the typical distance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cleaner.graph.neighbours import NeighbourGraph
from cleaner.io.dataset_types import Dataset
from cleaner.issues.contract import FLAG_SCORE, IssueKind, IssueScores, fixed
from cleaner.issues.label_votes import typical_distance
from cleaner.server.text import plural

# Near-duplicate: closer than 0.13 x the median nearest-neighbour distance, as cleanlab's near_duplicate default.
DUPLICATE_RELATIVE = 0.13


@dataclass(frozen=True, eq=False)
class NearDuplicates(IssueScores):
    """Groups of samples closer to each other than `threshold`."""

    group: np.ndarray  # [N] int32 group id, -1 when the sample has no near-duplicate
    mixed_labels: np.ndarray  # [N] bool: its group holds more than one label
    nearest_distance: np.ndarray  # [N] float32: distance to the closest other sample
    threshold: float
    n_groups: int


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component root (smallest row) per node for the edges a-b; numpy only, so no scipy import."""
    root = np.arange(n)
    while True:
        low = np.minimum(root[a], root[b])
        before = root.copy()
        np.minimum.at(root, a, low)
        np.minimum.at(root, b, low)
        root = root[root]  # pointer jumping: halves the remaining path length each round
        if np.array_equal(root, before):
            return root


def _groups(
    n: int, a: np.ndarray, b: np.ndarray, in_group: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Group id per row (-1 = none), whether its group holds several labels, and the counts of both."""
    group = np.full(n, -1, dtype=np.int32)
    mixed = np.zeros(n, dtype=bool)
    if not a.size:
        return group, mixed, 0, 0
    root = _components(n, a, b)
    members = np.flatnonzero(in_group)
    roots, gid = np.unique(root[members], return_inverse=True)  # ids ordered by each group's first row
    group[members] = gid
    label_ids = np.unique(codes, return_inverse=True)[1].reshape(-1)
    pairs = np.unique(np.stack([gid, label_ids[members]]), axis=1)  # distinct (group, label) pairs
    mixed_group = np.bincount(pairs[0], minlength=len(roots)) > 1
    mixed[members] = mixed_group[gid]
    return group, mixed, len(roots), int(mixed_group.sum())


def near_duplicates(graph: NeighbourGraph, label_codes: np.ndarray, threshold: float | None = None) -> NearDuplicates:
    """Group samples linked by graph edges no longer than `threshold` (default: relative to the typical distance)."""
    codes = np.asarray(label_codes).reshape(-1)
    n = graph.indices.shape[0]
    nearest = graph.distances[:, 0].astype(np.float64)
    if threshold is None:
        # Relative, so it adapts to the metric and the embedding's scale; exact duplicates (distance ~0) always pass.
        threshold = DUPLICATE_RELATIVE * typical_distance(nearest)
    threshold = float(threshold)
    rows, cols = np.nonzero(graph.distances <= threshold)
    a = rows.astype(np.int64)
    b = graph.indices[rows, cols].astype(np.int64)
    in_group = np.zeros(n, dtype=bool)
    in_group[a] = True
    in_group[b] = True
    group, mixed, n_groups, n_mixed = _groups(n, a, b, in_group, codes)
    if threshold > 0:
        # 1 for an exact copy, FLAG_SCORE at the threshold, then quickly 0: a sample at the typical distance
        # (7.7 thresholds by default) scores about 0.002 and does not crowd the review queue.
        score = FLAG_SCORE ** ((nearest / threshold) ** 2)
        score[in_group] = np.maximum(score[in_group], FLAG_SCORE)  # an approximate graph may miss the closer edge
    else:
        score = in_group.astype(np.float64)
    n_members = int(in_group.sum())
    summary = f"{plural(n_members, 'sample')} in {plural(n_groups, 'group')} of near-duplicates" + (
        f", {plural(n_mixed, 'group')} with different labels" if n_mixed else ""
    )
    return NearDuplicates(
        name="near_duplicate",
        score=score.astype(np.float32),
        flagged=in_group,
        summary=summary,
        group=group,
        mixed_labels=mixed,
        nearest_distance=nearest.astype(np.float32),
        threshold=threshold,
        n_groups=n_groups,
    )


def duplicates_to_drop(duplicates: NearDuplicates, prefer: np.ndarray | None = None) -> np.ndarray:
    """[N] bool: every member of each near-duplicate group but one, the one with the lowest `prefer` value.

    Pass the label-issue score as `prefer` to keep the copy whose label its neighbours support most, so a
    mixed-label pair loses its mislabelled copy; without it the group's first row stays.
    """
    group = duplicates.group
    members = np.flatnonzero(group >= 0)
    drop = np.zeros(group.shape[0], dtype=bool)
    if members.size:
        pref = np.zeros(group.shape[0]) if prefer is None else np.asarray(prefer, dtype=np.float64)
        order = members[np.lexsort((members, pref[members], group[members]))]  # by group, then preference, then row
        first_of_group = np.r_[True, group[order][1:] != group[order][:-1]]
        drop[order[~first_of_group]] = True
    return drop


def _reason(dataset: Dataset, dups: IssueScores, row: int) -> tuple[float, str] | None:
    assert isinstance(dups, NearDuplicates)
    if dups.group[row] < 0:
        return None
    size = int((dups.group == dups.group[row]).sum())
    mixed = " with different labels" if dups.mixed_labels[row] else ""
    return float(dups.score[row]), f"near-duplicate: group {int(dups.group[row])} of {size}{mixed}"


def _columns(dataset: Dataset, dups: IssueScores) -> list[list]:
    assert isinstance(dups, NearDuplicates)
    return [dups.group.tolist(), fixed(dups.score), dups.mixed_labels.astype(int).tolist()]


KIND = IssueKind(
    name="near_duplicate",
    title="Near-duplicate",
    description="near-duplicates (groups of almost identical images, and whether their labels differ)",
    score=lambda inputs: near_duplicates(inputs.graph, inputs.dataset.label_codes),
    reason=_reason,
    main_columns=("duplicate_group",),
    extra_columns=("duplicate_score", "duplicate_mixed_labels"),
    column_values=_columns,
)
