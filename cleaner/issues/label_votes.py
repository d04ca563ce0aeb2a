"""Neighbour votes on labels: the arithmetic behind the label-issue score, on plain arrays.

Each row's k nearest neighbours vote for their own labels, closer ones with more weight. From the votes come the
share behind the row's given label, the strongest other label and its share, and how close and unanimous that
other label's voters are (the evidence that orders rows whose shares tie). Pure numpy and vectorised over rows,
so the whole of a 100k-row graph is re-scored in a fraction of a second after each review decision. The label kind
(cleaner.issues.label) builds its LabelIssues from these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

_TINY = 1e-12


@dataclass(frozen=True)
class Tally:
    """Per row: weighted shares of the neighbours' labels (the weights of each row sum to 1)."""

    given_share: np.ndarray  # [r] share behind the row's own label
    other_label: np.ndarray  # [r] int32: the label with most weight among the others (own label if none)
    other_share: np.ndarray  # [r] its share
    other_evidence: np.ndarray  # [r] in [0, 1]: summed kernel weight of its voters / k (close and many -> 1)
    total: np.ndarray  # [r] summed weight of all voters (0 when none may vote)


def typical_distance(distances: np.ndarray) -> float:
    """The median of the positive neighbour distances (exact duplicates have distance 0), or 1.0 if none."""
    positive = distances[distances > 0]
    return float(np.median(positive)) if positive.size else 1.0


def kernel(distances: np.ndarray, scale: float) -> np.ndarray:
    """Vote weight of a neighbour at each distance: 1 for a copy, 1/e at `scale`."""
    return np.exp(-np.asarray(distances, dtype=np.float64) / max(scale, _TINY))


def tally(labels: np.ndarray, weights: np.ndarray, own: np.ndarray) -> Tally:
    """Weighted label shares of rows whose neighbours carry `labels` [r, k] with `weights` [r, k] in [0, 1]
    (0 = no vote). Sums runs of equal labels in each sorted row, so memory is O(r k) whatever the number of
    classes. Among other labels with equal weight the lowest label code wins."""
    r, k = labels.shape
    w_in = np.clip(np.asarray(weights, dtype=np.float64), 0.0, 1.0)
    given_weight = (w_in * (labels == own[:, None])).sum(axis=1)
    # One sort of label * 2 + weight orders each row by label and carries the weights along (weights are in
    # [0, 1]), several times faster than an argsort followed by gathering the weights.
    key = np.sort(labels.astype(np.float64) * 2.0 + w_in, axis=1)
    lab = np.floor(key / 2.0)
    w = key - 2.0 * lab
    cum = np.cumsum(w, axis=1)
    last = np.ones((r, k), dtype=bool)
    last[:, :-1] = lab[:, 1:] != lab[:, :-1]
    before = np.zeros((r, k))
    before[:, 1:] = np.where(last[:, :-1], cum[:, :-1], 0.0)
    # Weights are >= 0, so the cumulative sums grow: a running maximum carries each run's starting offset.
    run = np.where(last, cum - np.maximum.accumulate(before, axis=1), 0.0)
    total = cum[:, -1]
    norm = np.where(total > 0, total, 1.0)
    given = given_weight / norm
    foreign = np.where(last & (lab != own[:, None]), run, -1.0)
    best = foreign.argmax(axis=1)
    rows = np.arange(r)
    has_other = foreign[rows, best] > 0
    other_label = np.where(has_other, lab[rows, best], own).astype(np.int32)
    other_weight = np.where(has_other, foreign[rows, best], 0.0)
    return Tally(
        given_share=given,
        other_label=other_label,
        other_share=other_weight / norm,
        other_evidence=np.clip(other_weight / k, 0.0, 1.0),
        total=total,
    )


def margin_score(
    given_share: np.ndarray, other_share: np.ndarray, evidence: np.ndarray, margin_weight: float, evidence_weight: float
) -> np.ndarray:
    """Label-issue score in [0, 1]: (1 - given share) plus margin_weight x (other share - given share), scaled
    so a unanimous other label scores 1 and a unanimous given label 0, then nudged up by the evidence."""
    lead = 1.0 - given_share + margin_weight * (1.0 + other_share - given_share)
    base = np.clip(lead / (1.0 + 2.0 * margin_weight), 0.0, 1.0)
    return (1.0 - evidence_weight) * base + evidence_weight * np.clip(evidence, 0.0, 1.0)


def rows_to_update(indices: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """Rows whose votes or own label a change touches: the changed rows and every row with one among its neighbours."""
    return np.flatnonzero(changed | changed[indices].any(axis=1))


def score_rows(
    indices: np.ndarray,
    distances: np.ndarray,
    codes: np.ndarray,
    rows: np.ndarray,
    votes: np.ndarray,
    scale: float,
    margin_weight: float,
    evidence_weight: float,
) -> tuple[np.ndarray, ...]:
    """Score, suggested label and its share for `rows`, whose neighbours are `indices` [r, k] at `distances`;
    only rows where `votes` is True vote, and a row without voters (or without a vote itself) scores 0."""
    own = codes[rows]
    counted = tally(codes[indices], kernel(distances, scale) * votes[indices], own)
    lead = counted.other_share > counted.given_share
    suggested = np.where(lead, counted.other_label, own).astype(np.int32)
    share = np.where(lead, counted.other_share, counted.given_share).astype(np.float32)
    fresh = margin_score(
        counted.given_share, counted.other_share, counted.other_evidence, margin_weight, evidence_weight
    )
    score = np.where((counted.total > 0) & votes[rows], fresh, 0.0).astype(np.float32)
    return score, np.where(votes[rows], suggested, own), np.where(votes[rows], share, 0.0).astype(np.float32)


def decided_codes(
    label_codes: np.ndarray, n_classes: int, n: int, relabelled: Mapping[int, int] | None = None
) -> np.ndarray:
    """The label codes as int32 with the relabelled rows' new codes, checked against the graph and n_classes."""
    codes = np.array(label_codes, dtype=np.int32).reshape(-1)
    if codes.shape[0] != n:
        raise ValueError(f"{codes.shape[0]} labels for a graph of {n} rows")
    if relabelled:
        rows = np.fromiter(relabelled.keys(), dtype=np.int64, count=len(relabelled))
        codes[rows] = np.fromiter(relabelled.values(), dtype=np.int32, count=len(relabelled))
    if n and (codes.min() < 0 or codes.max() >= n_classes):
        raise ValueError(f"label codes must lie in [0, {n_classes})")
    return codes
