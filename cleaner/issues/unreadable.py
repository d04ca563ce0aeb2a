"""Unreadable images: files that cannot be opened and decoded, with the reason (checked by cleaner.issues.image_check)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cleaner.io.dataset_types import Dataset
from cleaner.issues.contract import IssueKind, IssueScores, ScanInputs


@dataclass(frozen=True, eq=False)
class UnreadableImages(IssueScores):
    """Images that cannot be opened and decoded, with the reason."""

    reason: np.ndarray  # [N] str, empty when the image decodes


def _score(inputs: ScanInputs) -> UnreadableImages | None:
    if inputs.access is None:
        return None
    from cleaner.issues.image_check import unreadable_images  # Pillow: imported only when images are really checked

    return unreadable_images(inputs.dataset.image_paths, inputs.access)


def _reason(dataset: Dataset, unreadable: IssueScores, row: int) -> tuple[float, str] | None:
    assert isinstance(unreadable, UnreadableImages)
    return (1.0, f"unreadable: {unreadable.reason[row]}") if unreadable.flagged[row] else None


def _columns(dataset: Dataset, unreadable: IssueScores) -> list[list]:
    assert isinstance(unreadable, UnreadableImages)
    return [unreadable.flagged.astype(int).tolist(), unreadable.reason.tolist()]


KIND = IssueKind(
    name="unreadable",
    title="Unreadable image",
    description="unreadable files (missing, empty, truncated, not an image, outside the allowed folders)",
    score=_score,
    reason=_reason,
    main_columns=("unreadable",),
    extra_columns=("unreadable_reason",),
    column_values=_columns,
    optional=True,
)
