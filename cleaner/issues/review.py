"""The review queue's logic: all scores from the shared graph, a reason a person can read, and what is left to review."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from cleaner.io.dataset import Dataset
from cleaner.issues.suspects import ScanResult
from cleaner.issues.scores import review_queue

ORDERS = {
    "worst": "Worst of all scores",
    "label_issue": "Label issue",
    "outlier": "Outlier",
    "near_duplicate": "Near-duplicate",
    "unreadable": "Unreadable image",
}


def reasons(dataset: Dataset, result: ScanResult, row: int) -> list[str]:
    """Why a sample is flagged, strongest first, in words (empty when nothing is flagged).

    Only flagged issues are named, so a card never contradicts the summary's counts."""
    found: list[tuple[float, str]] = []
    labels = result.labels
    if labels.flagged[row] and labels.suggested_label[row] != labels.given_label[row]:
        share = float(labels.suggestion_share[row])
        found.append((float(labels.score[row]),
                      f"label issue {labels.score[row]:.2f}: {share:.0%} of its neighbours say "
                      f"'{dataset.class_names[int(labels.suggested_label[row])]}'"))
    outl = result.outliers
    if outl.flagged[row]:
        ratio = float(outl.mean_distance[row]) / max(outl.typical_distance, 1e-12)
        found.append((float(outl.score[row]), f"outlier {outl.score[row]:.2f}: {ratio:.1f}x the typical neighbour distance"))
    dups = result.duplicates
    if dups.group[row] >= 0:
        size = int((dups.group == dups.group[row]).sum())
        mixed = " with different labels" if dups.mixed_labels[row] else ""
        found.append((float(dups.score[row]), f"near-duplicate: group {int(dups.group[row])} of {size}{mixed}"))
    if result.unreadable is not None and result.unreadable.flagged[row]:
        found.append((1.0, f"unreadable: {result.unreadable.reason[row]}"))
    return [text for _, text in sorted(found, key=lambda item: -item[0])]


def pending_rows(result: ScanResult, by: str, done_rows: Iterable[int], flagged_only: bool = True) -> np.ndarray:
    """The queue ordered most suspect first, without the samples already decided."""
    scores = result.all()
    if by not in {s.name for s in scores} | {"worst"}:
        return np.array([], dtype=np.int64)
    order = review_queue(*scores, by=by, flagged_only=flagged_only)
    done = np.fromiter(done_rows, dtype=np.int64)
    return order[~np.isin(order, done)] if done.size else order
