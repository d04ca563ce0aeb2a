"""The one shape every kind of issue has, and what a kind declares so the scan, the queue, the report, the map and
the CLI treat every kind alike.

A kind of issue is an `IssueKind`: its name, its title, how it scores the dataset from the shared kNN graph, its
reason for one flagged sample in words, and its report columns. Its scores are an `IssueScores`: a score in [0, 1]
per sample (higher = more suspect), a flag per sample and a one-line summary. A sample is flagged when its score
reaches FLAG_SCORE. The kinds in use are listed once, in `cleaner.issues.registry`.
No streamlit, umap, sklearn or Pillow here: `cleaner scan` imports this module and must start fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cleaner.graph.neighbours import NeighbourGraph
    from cleaner.io.dataset_types import Dataset
    from cleaner.io.images import ImageAccess

FLAG_SCORE = 0.9
Progress = Callable[[int, int], None]


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


@dataclass(frozen=True)
class ScanInputs:
    """What a kind of issue may score from: the dataset, its one kNN graph, and the image files when reachable."""

    dataset: Dataset
    graph: NeighbourGraph
    access: ImageAccess | None = None  # None: the image files are not checked
    thorough: bool = False  # the label ranking adds a cross-validated linear probe
    progress: Progress | None = None  # progress(done, total) of a slow scoring step


@dataclass(frozen=True)
class IssueKind:
    """Everything the app and the CLI need to know about one kind of issue."""

    name: str  # the scores' name, the report's and the queue's key: "label_issue"
    title: str  # in the page: "Label issue"
    description: str  # for `cleaner scan --help`: "label issues (the neighbours mostly carry another label)"
    score: Callable[[ScanInputs], IssueScores | None]  # None when its inputs are not there (no image access)
    reason: Callable[[Dataset, IssueScores, int], tuple[float, str] | None]  # (strength, words), None: not flagged
    main_columns: tuple[str, ...]  # the report's first columns, in this kind's order
    extra_columns: tuple[str, ...]  # the report's later columns
    column_values: Callable[[Dataset, IssueScores], Sequence[list]]  # one list per column, main then extra
    optional: bool = False  # scored only when its inputs are there (the image files): the page offers to check

    @property
    def columns(self) -> tuple[str, ...]:
        return self.main_columns + self.extra_columns


def fixed(values: np.ndarray) -> list[str]:
    """Scores as report text: four decimals."""
    return [f"{v:.4f}" for v in values.tolist()]
