"""The review queue's logic: all scores from the shared graph, a reason a person can read, and what is left to review."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cleaner.io.dataset_types import Dataset
from cleaner.issues.ranking import review_queue
from cleaner.issues.registry import WORST, kind_named
from cleaner.issues.suspects import ScanResult


def reasons(dataset: Dataset, result: ScanResult, row: int) -> list[str]:
    """Why a sample is flagged, strongest first, in words (empty when nothing is flagged).

    Only flagged issues are named, so a card never contradicts the summary's counts."""
    found = [kind_named(name).reason(dataset, scores, row) for name, scores in result.scores.items()]
    return [text for _, text in sorted((f for f in found if f is not None), key=lambda item: -item[0])]


def pending_rows(result: ScanResult, by: str, done_rows: Iterable[int], flagged_only: bool = True) -> np.ndarray:
    """The queue ordered most suspect first, without the samples already decided."""
    scores = result.all()
    if by not in {s.name for s in scores} | {WORST}:
        return np.array([], dtype=np.int64)
    order = review_queue(*scores, by=by, flagged_only=flagged_only)
    done = np.fromiter(done_rows, dtype=np.int64)
    return order[~np.isin(order, done)] if done.size else order
