"""Per-sample issue scores (label issue, outlier, near-duplicate, unreadable image): pure functions of the kNN graph.

Every score has the same shape, `IssueScores`: a score in [0, 1] per sample (higher = more suspect), a flag per
sample and a one-line summary, so the page, the CLI report and the review queue treat all of them alike.
Flags follow one convention: a sample is flagged when its score reaches FLAG_SCORE (0.9).
No streamlit, umap, sklearn or scipy here: `python -m cleaner scan` imports this module and must start fast.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .neighbours import NeighbourGraph

if TYPE_CHECKING:  # cleaner.images imports Pillow; only unreadable_images needs it, and imports it itself
    from .images import ImageAccess

FLAG_SCORE = 0.9
# Label vote: the 15 nearest of the graph's neighbours. Of k = 10, 15, 20, 30, k=15 was best or within 0.004 of
# the best precision@n on planted flips in digits and MLP-embedded shifted digits (bench/detect.py data, 10 seeds
# not used in the benchmark); farther neighbours add votes from other classes.
LABEL_K = 15
# A flagged label issue: after down-weighting untrustworthy neighbours, under 10% of the neighbourhood's weight
# carries the given label. On planted 5-20% flips this flags 1.0-1.12x as many samples as were flipped with
# recall >= 0.976 (0.5 flags up to 1.7x, 0.8 up to 1.2x), and 0.4% (digits) to 0.7% (MLP digits) of a dataset
# with no planted flips.
LABEL_FLAG = FLAG_SCORE
# Outlier: robust z of log(mean distance to the k neighbours). 4 is beyond Tukey's "far out" fence for normal
# data (about 4.7 counts as far out); no sample of digits or MLP digits reaches it (their maxima: 3.0-3.4).
OUTLIER_Z_FLAG = 4.0
_MIN_LOG_SPREAD = 0.02  # a perfectly regular dataset must not turn float noise into outliers
# Near-duplicate: closer than 0.13 x the median nearest-neighbour distance, as cleanlab's near_duplicate default.
DUPLICATE_RELATIVE = 0.13
_TRUST_FLOOR = 1e-3  # a neighbour whose own label looks wrong still counts a little, so no row loses all votes
_CHUNK = 16384


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

    def flagged_rows(self) -> np.ndarray:
        """Row indices of the flagged samples, most suspect first."""
        return review_queue(self, by=self.name, flagged_only=True)


@dataclass(frozen=True, eq=False)
class LabelIssues(IssueScores):
    """Samples whose neighbours mostly carry another label, with the label they suggest."""

    given_label: np.ndarray  # [N] int32 label codes as given
    suggested_label: np.ndarray  # [N] int32: the neighbours' weighted majority (may equal the given label)
    suggestion_share: np.ndarray  # [N] float32: share of the neighbours' weight behind the suggestion


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


@dataclass(frozen=True)
class Confusion:
    """Flagged label issues given label `given` whose neighbours suggest `suggested`."""

    given: int
    suggested: int
    count: int
    rows: np.ndarray  # row indices, most suspect first


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 sample', '3 samples' (many defaults to one + 's')."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _positive_median(values: np.ndarray) -> float:
    """The median of the positive values (exact duplicates have distance 0), or 1.0 if there are none."""
    pos = values[values > 0]
    return float(np.median(pos)) if pos.size else 1.0


def _vote(
    indices: np.ndarray, weights: np.ndarray, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted share of the given label, the weighted-majority label and its share, per row.

    Works on [rows, k, k] label-agreement blocks instead of a dense [N, n_classes] table, so memory stays
    bounded for a million rows and thousands of classes. Ties go to the label of the nearer neighbour.
    """
    n, k = indices.shape
    given_share = np.empty(n, dtype=np.float64)
    majority = np.empty(n, dtype=np.int32)
    majority_share = np.empty(n, dtype=np.float64)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        lab = codes[indices[start:stop]]  # [r, k]
        w = weights[start:stop]
        total = w.sum(axis=1)
        total = np.where(total > 0, total, 1.0)
        given_share[start:stop] = (w * (lab == codes[start:stop, None])).sum(axis=1) / total
        # support[r, j] = weight of all neighbours sharing neighbour j's label
        support = np.einsum("rjl,rl->rj", lab[:, :, None] == lab[:, None, :], w)
        best = support.argmax(axis=1)
        rows = np.arange(stop - start)
        majority[start:stop] = lab[rows, best]
        majority_share[start:stop] = support[rows, best] / total
    return given_share, majority, majority_share


def label_issues(
    graph: NeighbourGraph, label_codes: np.ndarray, n_classes: int, k: int = LABEL_K
) -> LabelIssues:
    """Score each sample by how little of its neighbourhood agrees with its label (similarity-weighted kNN vote).

    Two passes: the first scores every sample; the second votes again with each neighbour weighted also by how
    trustworthy its own label looked, so a mislabelled neighbour does not vouch for a mislabelled sample.
    """
    codes = np.asarray(label_codes, dtype=np.int32).reshape(-1)
    n = graph.indices.shape[0]
    if codes.shape[0] != n:
        raise ValueError(f"{codes.shape[0]} labels for a graph of {n} rows")
    if n and (codes.min() < 0 or codes.max() >= n_classes):
        raise ValueError(f"label codes must lie in [0, {n_classes})")
    k = max(1, min(k, graph.k))
    idx = graph.indices[:, :k]
    dist = graph.distances[:, :k].astype(np.float64)
    # Closer neighbours count more; the scale is the dataset's typical neighbour distance, so any metric works.
    weights = np.exp(-dist / _positive_median(dist))
    first_share, _, _ = _vote(idx, weights, codes)
    trust = (first_share + _TRUST_FLOOR) / (1.0 + _TRUST_FLOOR)
    share, suggested, suggested_share = _vote(idx, weights * trust[idx], codes)
    score = np.clip(1.0 - share, 0.0, 1.0).astype(np.float32)
    flagged = (score >= LABEL_FLAG) & (suggested != codes)
    count = int(flagged.sum())
    return LabelIssues(
        name="label_issue",
        score=score,
        flagged=flagged,
        summary=f"{plural(count, 'sample whose', 'samples whose')} neighbours mostly carry another label",
        given_label=codes,
        suggested_label=suggested,
        suggestion_share=suggested_share.astype(np.float32),
    )


def outliers(graph: NeighbourGraph) -> Outliers:
    """Score each sample by its mean distance to its k neighbours, relative to the dataset's typical one."""
    mean_distance = graph.distances.astype(np.float64).mean(axis=1)
    # Robust z on a log scale: distances are skewed, and log makes it nearly the same for cosine (a squared
    # length) and euclidean distances, since z does not change when the log is scaled.
    floor = _positive_median(mean_distance) * 1e-6
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


def near_duplicates(
    graph: NeighbourGraph, label_codes: np.ndarray, threshold: float | None = None
) -> NearDuplicates:
    """Group samples linked by graph edges no longer than `threshold` (default: relative to the typical distance)."""
    codes = np.asarray(label_codes).reshape(-1)
    n = graph.indices.shape[0]
    nearest = graph.distances[:, 0].astype(np.float64)
    if threshold is None:
        # Relative, so it adapts to the metric and the embedding's scale; exact duplicates (distance ~0) always pass.
        threshold = DUPLICATE_RELATIVE * _positive_median(nearest)
    threshold = float(threshold)
    rows, cols = np.nonzero(graph.distances <= threshold)
    a = rows.astype(np.int64)
    b = graph.indices[rows, cols].astype(np.int64)
    in_group = np.zeros(n, dtype=bool)
    in_group[a] = True
    in_group[b] = True
    group = np.full(n, -1, dtype=np.int32)
    mixed = np.zeros(n, dtype=bool)
    n_groups = n_mixed = 0
    if a.size:
        root = _components(n, a, b)
        members = np.flatnonzero(in_group)
        roots, gid = np.unique(root[members], return_inverse=True)  # ids ordered by each group's first row
        group[members] = gid
        n_groups = len(roots)
        label_ids = np.unique(codes, return_inverse=True)[1].reshape(-1)
        pairs = np.unique(np.stack([gid, label_ids[members]]), axis=1)  # distinct (group, label) pairs
        labels_per_group = np.bincount(pairs[0], minlength=n_groups)
        mixed_group = labels_per_group > 1
        mixed[members] = mixed_group[gid]
        n_mixed = int(mixed_group.sum())
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


def unreadable_images(
    image_paths: Sequence[str], access: "ImageAccess", workers: int | None = None
) -> UnreadableImages:
    """Try to open and decode every image (missing, empty, truncated, not an image, outside the allowed folders)."""
    from .images import check_readable

    paths = [str(p) for p in image_paths]
    # Reading is mostly waiting on the disk and Pillow's C decoders, which release the GIL: threads overlap it.
    workers = workers or min(16, 4 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(lambda p: check_readable(p, access), paths, chunksize=64))
    reason = np.array(reasons, dtype=str) if reasons else np.array([], dtype=str)
    flagged = np.char.str_len(reason) > 0 if reasons else np.zeros(0, dtype=bool)
    count = int(flagged.sum())
    causes: dict[str, int] = {}
    for text in reason[flagged].tolist():
        key = text.split(" (")[0]  # "corrupt or truncated image (details)" counts as one cause
        causes[key] = causes.get(key, 0) + 1
    detail = ", ".join(f"{c:,} {why}" for why, c in sorted(causes.items(), key=lambda kv: -kv[1]))
    return UnreadableImages(
        name="unreadable",
        score=flagged.astype(np.float32),
        flagged=flagged,
        summary=f"{plural(count, 'image')} cannot be read" + (f" ({detail})" if detail else ""),
        reason=reason,
    )


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


def class_confusion(issues: LabelIssues) -> list[Confusion]:
    """Flagged label issues grouped by (given label, suggested label), largest group first."""
    rows = review_queue(issues, by=issues.name, flagged_only=True)
    rows = rows[issues.given_label[rows] != issues.suggested_label[rows]]
    groups: dict[tuple[int, int], list[int]] = {}
    for row in rows.tolist():  # rows come most suspect first, so each group's rows stay in that order
        groups.setdefault((int(issues.given_label[row]), int(issues.suggested_label[row])), []).append(row)
    out = [
        Confusion(given=g, suggested=s, count=len(r), rows=np.array(r, dtype=np.int64)) for (g, s), r in groups.items()
    ]
    return sorted(out, key=lambda c: (-c.count, c.given, c.suggested))
