"""All suspect scores of one dataset, computed from the one neighbour graph: what the queue, the map and the report read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from cleaner.graph.distance import AUTO, resolved_metric
from cleaner.graph.neighbours import GRAPH_K, NeighbourGraph, neighbour_graph
from cleaner.io.dataset_types import Dataset
from cleaner.issues.contract import IssueScores, ScanInputs
from cleaner.issues.duplicate import NearDuplicates, duplicates_to_drop
from cleaner.issues.label import LabelIssues
from cleaner.issues.outlier import Outliers
from cleaner.issues.ranking import review_queue
from cleaner.issues.registry import issue_kinds
from cleaner.issues.unreadable import UnreadableImages

if TYPE_CHECKING:
    from cleaner.io.images import ImageAccess  # Pillow: imported only when the images are really checked


@dataclass(frozen=True, eq=False)
class ScanResult:
    """Every kind of issue's scores for one dataset, by kind name in the registry's order.

    A kind that could not be scored is absent (the unreadable images, when the files were not checked). The label
    issues, outliers and near-duplicates are always there; the properties give them typed.
    """

    scores: Mapping[str, IssueScores]

    @property
    def labels(self) -> LabelIssues:
        return self.scores["label_issue"]  # type: ignore[return-value]

    @property
    def outliers(self) -> Outliers:
        return self.scores["outlier"]  # type: ignore[return-value]

    @property
    def duplicates(self) -> NearDuplicates:
        return self.scores["near_duplicate"]  # type: ignore[return-value]

    @property
    def unreadable(self) -> UnreadableImages | None:
        return self.scores.get("unreadable")  # type: ignore[return-value]

    def all(self) -> tuple[IssueScores, ...]:
        return tuple(self.scores.values())

    def with_scores(self, scores: IssueScores) -> ScanResult:
        """The same result with one kind's scores replaced or added (e.g. label issues re-scored after decisions)."""
        merged = {**self.scores, scores.name: scores}
        rank = {k.name: i for i, k in enumerate(issue_kinds())}
        return ScanResult(dict(sorted(merged.items(), key=lambda item: rank.get(item[0], len(rank)))))

    def exclusion_rows(self, n: int) -> np.ndarray:
        """The n most suspect rows to leave out of training; one copy of each duplicate group stays, unless it has
        issues of its own: the copy whose label its neighbours support most."""
        dup = self.duplicates
        drop = duplicates_to_drop(dup, prefer=self.labels.score)
        removable = replace(dup, score=np.where(drop, dup.score, 0).astype(np.float32), flagged=drop)
        scores = [s if s is not dup else removable for s in self.all()]
        return review_queue(*scores, by="worst")[: max(0, n)]


def scan(
    dataset: Dataset,
    k: int = GRAPH_K,
    metric: str = AUTO,
    access: ImageAccess | None = None,
    thorough: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Score every image of a dataset for every kind of issue, from one kNN graph of its embeddings.

    Parameters
    ----------
    dataset : Dataset
        From `load_npz`.
    k : int
        Nearest neighbours per image in the graph (the label vote, outliers and near-duplicates all read it).
    metric : {"auto", "cosine", "euclidean"}
        Distance between embeddings; "auto" picks euclidean for non-negative features, else cosine.
    access : ImageAccess, optional
        Where the image files may be read; when given, every image is opened and decoded to find unreadable
        files. Without it that kind of issue is not scored.
    thorough : bool
        Add a cross-validated linear probe on the embeddings to the label-issue ranking (slower; for weak
        embeddings).
    progress : callable, optional
        ``progress(done, total)`` follows the probe's fits.

    Returns
    -------
    ScanResult
        Each kind of issue's scores by name (`result.scores`), with typed accessors `labels`, `outliers`,
        `duplicates` and `unreadable`.

    Raises
    ------
    ValueError
        For a `metric` or `k` out of range.
    """
    graph = neighbour_graph(dataset.embeddings, k=k, metric=resolved_metric(metric, dataset.embeddings))
    return scores_from_graph(dataset, graph, access, thorough=thorough, progress=progress)


def scores_from_graph(
    dataset: Dataset,
    graph: NeighbourGraph,
    access: ImageAccess | None = None,
    thorough: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Every score from a neighbour graph already computed (the app passes the one its map was built on).

    `thorough` adds a cross-validated linear probe on the embeddings to the label-issue ranking (slower; for weak
    embeddings); `progress(done, total)` follows its fits.
    """
    inputs = ScanInputs(dataset, graph, access=access, thorough=thorough, progress=progress)
    found = ((kind.name, kind.score(inputs)) for kind in issue_kinds())
    return ScanResult({name: scores for name, scores in found if scores is not None})
