"""All suspect scores of one dataset, computed from the one neighbour graph: what the queue, the map and the report read."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from cleaner.io.dataset import Dataset
from cleaner.graph.distance import AUTO, resolved_metric
from cleaner.graph.neighbours import NeighbourGraph, neighbour_graph
from cleaner.issues.scores import (
    IssueScores,
    LabelIssues,
    NearDuplicates,
    Outliers,
    UnreadableImages,
    duplicates_to_drop,
    label_issues,
    near_duplicates,
    outliers,
    review_queue,
)


@dataclass(frozen=True, eq=False)
class ScanResult:
    """All scores of one dataset; `unreadable` is None when the images were not checked."""

    labels: LabelIssues
    outliers: Outliers
    duplicates: NearDuplicates
    unreadable: UnreadableImages | None

    def all(self) -> tuple[IssueScores, ...]:
        found = (self.labels, self.outliers, self.duplicates, self.unreadable)
        return tuple(s for s in found if s is not None)

    def exclusion_rows(self, n: int) -> np.ndarray:
        """The n most suspect rows to leave out of training; one copy of each duplicate group stays, unless it has
        issues of its own: the copy whose label its neighbours support most."""
        dup = self.duplicates
        drop = duplicates_to_drop(dup, prefer=self.labels.score)
        removable = replace(dup, score=np.where(drop, dup.score, 0).astype(np.float32), flagged=drop)
        scores = [s if s is not dup else removable for s in self.all()]
        return review_queue(*scores, by="worst")[: max(0, n)]


def scan_dataset(dataset: Dataset, k: int = 20, metric: str = AUTO, access=None, thorough: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> ScanResult:
    """Every score of the dataset; images are checked only when an ImageAccess is given."""
    graph = neighbour_graph(dataset.embeddings, k=k, metric=resolved_metric(metric, dataset.embeddings))
    return scores_from_graph(dataset, graph, access, thorough=thorough, progress=progress)


def scores_from_graph(dataset: Dataset, graph: NeighbourGraph, access=None, thorough: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> ScanResult:
    """Every score from a neighbour graph already computed (the app passes the one its map was built on).

    `thorough` adds a cross-validated linear probe on the embeddings to the label-issue ranking (slower; for weak
    embeddings); `progress(done, total)` follows its fits.
    """
    n_classes = len(dataset.class_names)
    if thorough:
        from cleaner.issues.probe import thorough_label_issues  # scikit-learn: imported only when asked for

        labels = thorough_label_issues(graph, dataset.embeddings, dataset.label_codes, n_classes, progress)
    else:
        labels = label_issues(graph, dataset.label_codes, n_classes)
    unreadable = None
    if access is not None:
        from cleaner.issues.image_check import unreadable_images  # Pillow: imported only when the images are really checked

        unreadable = unreadable_images(dataset.image_paths, access)
    return ScanResult(
        labels=labels,
        outliers=outliers(graph),
        duplicates=near_duplicates(graph, dataset.label_codes),
        unreadable=unreadable,
    )


