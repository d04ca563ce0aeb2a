"""The scores report: one CSV row per image, in dataset order."""

from __future__ import annotations

import csv
import io

import numpy as np

from cleaner.io.dataset_types import Dataset
from cleaner.issues.contract import fixed
from cleaner.issues.ranking import review_queue, worst
from cleaner.issues.registry import issue_kinds
from cleaner.issues.suspects import ScanResult

BASE_COLUMNS = ("index", "image_path")
RANK_COLUMNS = ("worst_score", "worst_issue", "review_rank")


def report_columns() -> tuple[str, ...]:
    """The report's header: the image, each kind's main columns, each kind's other columns, the overall rank."""
    kinds = issue_kinds()
    main = tuple(c for k in kinds for c in k.main_columns)
    extra = tuple(c for k in kinds for c in k.extra_columns)
    return BASE_COLUMNS + main + extra + RANK_COLUMNS


def report_csv(dataset: Dataset, result: ScanResult) -> str:
    """The scan's report as CSV text.

    Parameters
    ----------
    dataset : Dataset
        The dataset that was scanned (from `load_npz`).
    result : ScanResult
        Its scores (from `scan`).

    Returns
    -------
    str
        One row per image in dataset order, with the header of `report_columns()`. A kind of issue that was not
        scored (the unreadable images when the files were not checked) has empty cells.
    """
    main: list[list] = []
    extra: list[list] = []
    for kind in issue_kinds():
        scores = result.scores.get(kind.name)
        values = kind.column_values(dataset, scores) if scores is not None else [[""] * dataset.n] * len(kind.columns)
        main += values[: len(kind.main_columns)]
        extra += values[len(kind.main_columns) :]
    overall = worst(*result.all())
    rank = np.empty(dataset.n, dtype=np.int64)
    rank[review_queue(*result.all(), by="worst")] = np.arange(1, dataset.n + 1)
    columns = [
        range(dataset.n),
        dataset.image_paths.tolist(),
        *main,
        *extra,
        fixed(overall.score),
        overall.issue.tolist(),
        rank.tolist(),
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(report_columns())
    writer.writerows(zip(*columns))  # column lists, not per-cell numpy indexing: a million rows in seconds
    return buf.getvalue()
