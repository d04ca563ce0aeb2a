"""Label issues: samples whose neighbours mostly carry another label, and the label they suggest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cleaner.graph.neighbours import GRAPH_K, NeighbourGraph
from cleaner.io.dataset_types import Dataset
from cleaner.issues.contract import FLAG_SCORE, IssueKind, IssueScores, ScanInputs, fixed
from cleaner.issues.label_votes import decided_codes, rows_to_update, score_rows, typical_distance
from cleaner.server.text import plural

# Label vote: each row's LABEL_K nearest neighbours vote for their labels, weighted by exp(-d / scale) with scale
# LABEL_KERNEL x the graph's typical neighbour distance, so closer neighbours count more under any metric. The
# score mixes how little weight backs the given label with how far the strongest other label leads it
# (MARGIN_WEIGHT), which also catches flips to a look-alike class. Chosen on bench/detect.py's whole table.
LABEL_K = GRAPH_K
LABEL_KERNEL = 0.5
MARGIN_WEIGHT = 0.25
# Rows whose shares tie (all neighbours carry one other label) are ordered by how close and how many those
# neighbours are: a weight this small only reorders rows the shares cannot tell apart.
EVIDENCE_WEIGHT = 1e-3


@dataclass(frozen=True, eq=False)
class LabelIssues(IssueScores):
    """Samples whose neighbours mostly carry another label, with the label they suggest."""

    given_label: np.ndarray  # [N] int32 label codes as given
    suggested_label: np.ndarray  # [N] int32: the neighbours' weighted majority (may equal the given label)
    suggestion_share: np.ndarray  # [N] float32: share of the neighbours' weight behind the suggestion
    excluded: np.ndarray | None = None  # [N] bool: rows left out by review decisions (no vote, score 0)
    kernel_scale: float = 1.0  # distance at which a vote weighs 1/e; re-scoring keeps it


def label_issues(graph: NeighbourGraph, label_codes: np.ndarray, n_classes: int, k: int = LABEL_K) -> LabelIssues:
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


def label_issues_from(
    score: np.ndarray,
    codes: np.ndarray,
    suggested: np.ndarray,
    share: np.ndarray,
    why: str,
    excluded: np.ndarray | None,
    kernel_scale: float,
) -> LabelIssues:
    """The result shape every ranking returns: flagged where the score is high and another label is suggested."""
    flagged = (score >= FLAG_SCORE) & (suggested != codes)
    count = int(flagged.sum())
    return LabelIssues(
        name="label_issue",
        score=score,
        flagged=flagged,
        summary=f"{plural(count, 'sample whose', 'samples whose')} {why}",
        given_label=codes,
        suggested_label=suggested,
        suggestion_share=share,
        excluded=excluded,
        kernel_scale=float(kernel_scale),
    )


@dataclass(frozen=True)
class Confusion:
    """Flagged label issues given label `given` whose neighbours suggest `suggested`."""

    given: int
    suggested: int
    count: int
    rows: np.ndarray  # row indices, most suspect first


def class_confusion(issues: LabelIssues) -> list[Confusion]:
    """Flagged label issues grouped by (given label, suggested label), largest group first."""
    rows = np.flatnonzero(issues.flagged & (issues.given_label != issues.suggested_label))
    rows = rows[np.lexsort((rows, -issues.score[rows].astype(np.float64)))]  # most suspect first, then row order
    groups: dict[tuple[int, int], list[int]] = {}
    for row in rows.tolist():  # rows come most suspect first, so each group's rows stay in that order
        groups.setdefault((int(issues.given_label[row]), int(issues.suggested_label[row])), []).append(row)
    out = [
        Confusion(given=g, suggested=s, count=len(r), rows=np.array(r, dtype=np.int64)) for (g, s), r in groups.items()
    ]
    return sorted(out, key=lambda c: (-c.count, c.given, c.suggested))


def _score(inputs: ScanInputs) -> LabelIssues:
    dataset = inputs.dataset
    n_classes = len(dataset.class_names)
    if inputs.thorough:
        from cleaner.issues.probe import thorough_label_issues  # scikit-learn: imported only when asked for

        return thorough_label_issues(inputs.graph, dataset.embeddings, dataset.label_codes, n_classes, inputs.progress)
    return label_issues(inputs.graph, dataset.label_codes, n_classes)


def _reason(dataset: Dataset, labels: IssueScores, row: int) -> tuple[float, str] | None:
    assert isinstance(labels, LabelIssues)
    if not labels.flagged[row] or labels.suggested_label[row] == labels.given_label[row]:
        return None
    share = float(labels.suggestion_share[row])
    suggested = dataset.class_names[int(labels.suggested_label[row])]
    return float(labels.score[row]), (
        f"label issue {labels.score[row]:.2f}: {share:.0%} of its neighbours say '{suggested}'"
    )


def _columns(dataset: Dataset, labels: IssueScores) -> list[list]:
    assert isinstance(labels, LabelIssues)
    names = dataset.class_names
    return [
        [names[c] for c in labels.given_label.tolist()],
        [names[c] for c in labels.suggested_label.tolist()],
        fixed(labels.score),
        labels.flagged.astype(int).tolist(),
    ]


KIND = IssueKind(
    name="label_issue",
    title="Label issue",
    description="label issues (the neighbours mostly carry another label; the label they suggest)",
    score=_score,
    reason=_reason,
    main_columns=("label", "suggested_label", "label_issue_score"),
    extra_columns=("label_issue",),
    column_values=_columns,
)
