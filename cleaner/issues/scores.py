"""Per-sample issue scores (label issue, outlier, near-duplicate, unreadable image): pure functions of the kNN graph.

Every score has the same shape, `IssueScores`: a score in [0, 1] per sample (higher = more suspect), a flag per
sample and a one-line summary, so the page, the CLI report and the review queue treat all of them alike.
Flags follow one convention: a sample is flagged when its score reaches FLAG_SCORE (0.9).
No streamlit, umap, sklearn or scipy here: `python -m cleaner scan` imports this module and must start fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from cleaner.issues.label_votes import Confusion, class_confusion, decided_codes, rows_to_update, score_rows, typical_distance
from cleaner.graph.neighbours import NeighbourGraph


FLAG_SCORE = 0.9
# Label vote: each row's LABEL_K nearest neighbours vote for their labels, weighted by exp(-d / scale) with scale
# LABEL_KERNEL x the graph's typical neighbour distance, so closer neighbours count more under any metric. The
# score mixes how little weight backs the given label with how far the strongest other label leads it
# (MARGIN_WEIGHT), which also catches flips to a look-alike class. Chosen on bench/detect.py's whole table.
LABEL_K = 20
LABEL_KERNEL = 0.5
MARGIN_WEIGHT = 0.25
# Rows whose shares tie (all neighbours carry one other label) are ordered by how close and how many those
# neighbours are: a weight this small only reorders rows the shares cannot tell apart.
EVIDENCE_WEIGHT = 1e-3
# A flagged label issue: with two labels in the neighbourhood, about 10% or less of its weight backs the given label.
# Outlier: robust z of log(mean distance to the k neighbours). 4 is beyond Tukey's "far out" fence for normal
# data (about 4.7 counts as far out); no sample of digits or MLP digits reaches it (their maxima: 3.0-3.4).
OUTLIER_Z_FLAG = 4.0
_MIN_LOG_SPREAD = 0.02  # a perfectly regular dataset must not turn float noise into outliers
# Near-duplicate: closer than 0.13 x the median nearest-neighbour distance, as cleanlab's near_duplicate default.
DUPLICATE_RELATIVE = 0.13


@dataclass(frozen=True, eq=False)
class IssueScores:
    """One kind of issue: a score per sample in [0, 1] (higher = more suspect), a flag per sample, a summary."""

    name: str
    score: np.ndarray  # [N] float32 in [0, 1]
    flagged: np.ndarray  # [N] bool
    summary: str

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())


@dataclass(frozen=True, eq=False)
class LabelIssues(IssueScores):
    """Samples whose neighbours mostly carry another label, with the label they suggest."""

    given_label: np.ndarray  # [N] int32 label codes as given
    suggested_label: np.ndarray  # [N] int32: the neighbours' weighted majority (may equal the given label)
    suggestion_share: np.ndarray  # [N] float32: share of the neighbours' weight behind the suggestion
    excluded: np.ndarray | None = None  # [N] bool: rows left out by review decisions (no vote, score 0)
    kernel_scale: float = 1.0  # distance at which a vote weighs 1/e; re-scoring keeps it


@dataclass(frozen=True, eq=False)
class Outliers(IssueScores):
    """Samples far from all others."""

    mean_distance: np.ndarray  # [N] float32: mean distance to the k nearest neighbours (ranks as cleanlab's score)
    typical_distance: float  # median of mean_distance
    flag_distance: float  # mean_distance from which a sample is flagged


@dataclass(frozen=True, eq=False)
class NearDuplicates(IssueScores):
    """Groups of samples closer to each other than `threshold`."""

    group: np.ndarray  # [N] int32 group id, -1 when the sample has no near-duplicate
    mixed_labels: np.ndarray  # [N] bool: its group holds more than one label
    nearest_distance: np.ndarray  # [N] float32: distance to the closest other sample
    threshold: float
    n_groups: int


@dataclass(frozen=True, eq=False)
class UnreadableImages(IssueScores):
    """Images that cannot be opened and decoded, with the reason."""

    reason: np.ndarray  # [N] str, empty when the image decodes


@dataclass(frozen=True, eq=False)
class WorstScores(IssueScores):
    """The per-sample maximum over several scores, and which one gave it."""

    issue: np.ndarray  # [N] str: name of the score that gave the maximum ("" when all are 0)


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 sample', '3 samples' (many defaults to one + 's')."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def label_issues(
    graph: NeighbourGraph, label_codes: np.ndarray, n_classes: int, k: int = LABEL_K
) -> LabelIssues:
    """Score each sample by how little of its neighbourhood agrees with its label (similarity-weighted kNN vote)."""
    return rescore_label_issues(graph, label_codes, n_classes, k=k)


def rescore_label_issues(
    graph: NeighbourGraph,
    label_codes: np.ndarray,
    n_classes: int,
    excluded: Sequence[int] | np.ndarray | None = None,
    relabelled: Mapping[int, int] | None = None,
    previous: LabelIssues | None = None,
    k: int = LABEL_K,
) -> LabelIssues:
    """Label issues after review decisions: the `excluded` rows (indices) neither vote nor score, `relabelled`
    rows (row -> new code) vote with and are scored against their new label. With `previous` (an earlier result on
    the same graph, k and original labels) only the rows whose neighbourhood a changed decision touches are
    recomputed."""
    n = graph.indices.shape[0]
    codes = decided_codes(label_codes, n_classes, n, relabelled)
    out = np.zeros(n, dtype=bool)
    out[np.asarray(excluded if excluded is not None else [], dtype=np.int64)] = True
    k = max(1, min(k, graph.k))
    if previous is not None and previous.excluded is not None and previous.score.shape[0] == n:
        changed = (previous.given_label != codes) | (previous.excluded != out)
        rows, scale = rows_to_update(graph.indices[:, :k], changed), previous.kernel_scale
        score, suggested = previous.score.copy(), previous.suggested_label.copy()
        share = previous.suggestion_share.copy()
    else:
        rows = np.arange(n)
        scale = LABEL_KERNEL * typical_distance(graph.distances[:, :k])
        score, suggested = np.zeros(n, np.float32), codes.copy()
        share = np.zeros(n, np.float32)
    score[rows], suggested[rows], share[rows] = score_rows(
        graph.indices[rows, :k], graph.distances[rows, :k], codes, rows, ~out, scale, MARGIN_WEIGHT, EVIDENCE_WEIGHT
    )
    suggested[out], share[out] = codes[out], 0.0
    return label_issues_from(score, codes, suggested, share, "neighbours mostly carry another label", out, scale)


def label_issues_from(score: np.ndarray, codes: np.ndarray, suggested: np.ndarray, share: np.ndarray, why: str,
                      excluded: np.ndarray | None, kernel_scale: float) -> LabelIssues:
    """The result shape every ranking returns: flagged where the score is high and another label is suggested."""
    flagged = (score >= FLAG_SCORE) & (suggested != codes)
    count = int(flagged.sum())
    return LabelIssues(
        name="label_issue", score=score, flagged=flagged,
        summary=f"{plural(count, 'sample whose', 'samples whose')} {why}", given_label=codes,
        suggested_label=suggested, suggestion_share=share, excluded=excluded, kernel_scale=float(kernel_scale),
    )

def outliers(graph: NeighbourGraph) -> Outliers:
    """Score each sample by its mean distance to its k neighbours, relative to the dataset's typical one."""
    mean_distance = graph.distances.astype(np.float64).mean(axis=1)
    # Robust z on a log scale: distances are skewed, and log makes it nearly the same for cosine (a squared
    # length) and euclidean distances, since z does not change when the log is scaled.
    floor = typical_distance(mean_distance) * 1e-6
    logd = np.log(np.maximum(mean_distance, floor))
    centre = float(np.median(logd))
    spread = max(1.4826 * float(np.median(np.abs(logd - centre))), _MIN_LOG_SPREAD)
    z = (logd - centre) / spread
    # Monotone in the distance, 0 up to the typical sample, FLAG_SCORE exactly at OUTLIER_Z_FLAG.
    ratio = np.maximum(z, 0.0) / OUTLIER_Z_FLAG
    score = (1.0 - (1.0 - FLAG_SCORE) ** (ratio**2)).astype(np.float32)
    flagged = z >= OUTLIER_Z_FLAG
    typical = float(np.exp(centre))
    flag_distance = float(np.exp(centre + OUTLIER_Z_FLAG * spread))
    count = int(flagged.sum())
    return Outliers(
        name="outlier",
        score=score,
        flagged=flagged,
        summary=(
            f"{plural(count, 'sample')} far from all others (mean distance to their {graph.k} nearest "
            f"neighbours at least {flag_distance / typical:.1f}x the typical)"
        ),
        mean_distance=mean_distance.astype(np.float32),
        typical_distance=typical,
        flag_distance=flag_distance,
    )


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


def _groups(n: int, a: np.ndarray, b: np.ndarray, in_group: np.ndarray, codes: np.ndarray
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


def near_duplicates(
    graph: NeighbourGraph, label_codes: np.ndarray, threshold: float | None = None
) -> NearDuplicates:
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
    summary = (
        f"{plural(n_members, 'sample')} in {plural(n_groups, 'group')} of near-duplicates"
        + (f", {plural(n_mixed, 'group')} with different labels" if n_mixed else "")
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


def worst(*scores: IssueScores) -> WorstScores:
    """Per-sample maximum over the given scores; flagged when any of them flags the sample."""
    if not scores:
        raise ValueError("worst() needs at least one score")
    stack = np.stack([s.score for s in scores])
    best = stack.argmax(axis=0)
    value = stack.max(axis=0)
    names = np.array([s.name for s in scores])
    issue = np.where(value > 0, names[best], "")
    flagged = np.logical_or.reduce([s.flagged for s in scores])
    count = int(flagged.sum())
    return WorstScores(
        name="worst",
        score=value.astype(np.float32),
        flagged=flagged,
        summary=f"{plural(count, 'sample')} with at least one issue",
        issue=issue,
    )


def review_queue(*scores: IssueScores, by: str = "worst", flagged_only: bool = False) -> np.ndarray:
    """Row indices ordered most suspect first by one score (`by` = its name) or by the worst of all of them.

    Ties go to the sample with the larger sum over all the given scores (more kinds of trouble), then the lower row.
    """
    if not scores:
        raise ValueError("review_queue() needs at least one score")
    if by == "worst":
        key = worst(*scores) if len(scores) > 1 else scores[0]
    else:
        matches = [s for s in scores if s.name == by]
        if not matches:
            raise ValueError(f"no score named {by!r}; have {[s.name for s in scores]}")
        key = matches[0]
    total = np.sum([s.score for s in scores], axis=0, dtype=np.float64)
    n = key.score.shape[0]
    order = np.lexsort((np.arange(n), -total, -key.score.astype(np.float64)))
    if flagged_only:
        order = order[key.flagged[order]]
    return order.astype(np.int64)
