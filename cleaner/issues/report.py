"""The scores report: one CSV row per image, in dataset order."""
from __future__ import annotations

import csv
import io

import numpy as np

from cleaner.io.dataset import Dataset
from cleaner.issues.scores import review_queue, worst
from cleaner.issues.suspects import ScanResult

REPORT_COLUMNS = (
    "index",
    "image_path",
    "label",
    "suggested_label",
    "label_issue_score",
    "outlier_score",
    "duplicate_group",
    "unreadable",
)
EXTRA_COLUMNS = (
    "label_issue",
    "outlier",
    "duplicate_score",
    "duplicate_mixed_labels",
    "unreadable_reason",
    "worst_score",
    "worst_issue",
    "review_rank",
)

def report_csv(dataset: Dataset, result: ScanResult) -> str:
    """The report as CSV text: one row per sample in dataset order, REPORT_COLUMNS first."""
    names = dataset.class_names
    labels, outl, dups, unread = result.labels, result.outliers, result.duplicates, result.unreadable
    overall = worst(*result.all())
    rank = np.empty(dataset.n, dtype=np.int64)
    rank[review_queue(*result.all(), by="worst")] = np.arange(1, dataset.n + 1)
    unchecked = [""] * dataset.n
    columns = (
        range(dataset.n),
        dataset.image_paths.tolist(),
        [names[c] for c in labels.given_label.tolist()],
        [names[c] for c in labels.suggested_label.tolist()],
        _fixed(labels.score),
        _fixed(outl.score),
        dups.group.tolist(),
        unchecked if unread is None else unread.flagged.astype(int).tolist(),
        labels.flagged.astype(int).tolist(),
        outl.flagged.astype(int).tolist(),
        _fixed(dups.score),
        dups.mixed_labels.astype(int).tolist(),
        unchecked if unread is None else unread.reason.tolist(),
        _fixed(overall.score),
        overall.issue.tolist(),
        rank.tolist(),
    )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(REPORT_COLUMNS + EXTRA_COLUMNS)
    writer.writerows(zip(*columns))  # column lists, not per-cell numpy indexing: a million rows in seconds
    return buf.getvalue()


def _fixed(values: np.ndarray) -> list[str]:
    return [f"{v:.4f}" for v in values.tolist()]


