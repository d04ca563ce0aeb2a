"""Rankings across kinds of issue: the worst score per sample, and the review order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cleaner.issues.contract import IssueScores
from cleaner.server.text import plural


@dataclass(frozen=True, eq=False)
class WorstScores(IssueScores):
    """The per-sample maximum over several scores, and which one gave it."""

    issue: np.ndarray  # [N] str: name of the score that gave the maximum ("" when all are 0)


def _worst_score_and_flags(scores: tuple[IssueScores, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample maximum score, and whether any score flags the sample."""
    return np.max([s.score for s in scores], axis=0), np.logical_or.reduce([s.flagged for s in scores])


def worst(*scores: IssueScores) -> WorstScores:
    """Per-sample maximum over the given scores; flagged when any of them flags the sample."""
    if not scores:
        raise ValueError("worst() needs at least one score")
    stack = np.stack([s.score for s in scores])
    best = stack.argmax(axis=0)
    value, flagged = _worst_score_and_flags(scores)
    names = np.array([s.name for s in scores])
    issue = np.where(value > 0, names[best], "")
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
    if by == "worst":  # worst()'s score and flags, without naming each row's issue: not needed for an order
        score, flagged = _worst_score_and_flags(scores)
    else:
        matches = [s for s in scores if s.name == by]
        if not matches:
            raise ValueError(f"no score named {by!r}; have {[s.name for s in scores]}")
        score, flagged = matches[0].score, matches[0].flagged
    # Only the rows in the queue are sorted: the queue is ordered again on every decision, in every session.
    rows = np.flatnonzero(flagged) if flagged_only else np.arange(score.shape[0])
    total = np.sum([s.score[rows] for s in scores], axis=0, dtype=np.float64)
    order = rows[np.lexsort((rows, -total, -score[rows].astype(np.float64)))]
    return order.astype(np.int64)
