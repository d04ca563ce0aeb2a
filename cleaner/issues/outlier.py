"""Outliers: samples far from all others in the embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cleaner.graph.neighbours import NeighbourGraph
from cleaner.io.dataset_types import Dataset
from cleaner.issues.contract import FLAG_SCORE, IssueKind, IssueScores, fixed
from cleaner.issues.label_votes import typical_distance
from cleaner.server.text import plural

# Outlier: robust z of log(mean distance to the k neighbours). 4 is beyond Tukey's "far out" fence for normal
# data (about 4.7 counts as far out); no sample of digits or MLP digits reaches it (their maxima: 3.0-3.4).
OUTLIER_Z_FLAG = 4.0
_MIN_LOG_SPREAD = 0.02  # a perfectly regular dataset must not turn float noise into outliers


@dataclass(frozen=True, eq=False)
class Outliers(IssueScores):
    """Samples far from all others."""

    mean_distance: np.ndarray  # [N] float32: mean distance to the k nearest neighbours (ranks as cleanlab's score)
    typical_distance: float  # median of mean_distance
    flag_distance: float  # mean_distance from which a sample is flagged


def outliers(graph: NeighbourGraph) -> Outliers:
    """Score each sample by its mean distance to its k neighbours, relative to the dataset's typical one."""
    mean_distance = graph.distances.astype(np.float64).mean(axis=1)
    # Robust z on a log scale: distances are skewed, and log makes it nearly the same for cosine (a squared
    # length) and euclidean distances, since z does not change when the log is scaled.
    floor = typical_distance(mean_distance) * 1e-6
    logd = np.log(np.maximum(mean_distance, floor))
    centre = float(np.median(logd))
    spread = max(1.4826 * float(np.median(np.abs(logd - centre))), _MIN_LOG_SPREAD)
    z = (logd - centre) / spread
    # Monotone in the distance, 0 up to the typical sample, FLAG_SCORE exactly at OUTLIER_Z_FLAG.
    ratio = np.maximum(z, 0.0) / OUTLIER_Z_FLAG
    score = (1.0 - (1.0 - FLAG_SCORE) ** (ratio**2)).astype(np.float32)
    flagged = z >= OUTLIER_Z_FLAG
    typical = float(np.exp(centre))
    flag_distance = float(np.exp(centre + OUTLIER_Z_FLAG * spread))
    count = int(flagged.sum())
    return Outliers(
        name="outlier",
        score=score,
        flagged=flagged,
        summary=(
            f"{plural(count, 'sample')} far from all others (mean distance to their {graph.k} nearest "
            f"neighbours at least {flag_distance / typical:.1f}x the typical)"
        ),
        mean_distance=mean_distance.astype(np.float32),
        typical_distance=typical,
        flag_distance=flag_distance,
    )


def _reason(dataset: Dataset, outl: IssueScores, row: int) -> tuple[float, str] | None:
    assert isinstance(outl, Outliers)
    if not outl.flagged[row]:
        return None
    ratio = float(outl.mean_distance[row]) / max(outl.typical_distance, 1e-12)
    return float(outl.score[row]), f"outlier {outl.score[row]:.2f}: {ratio:.1f}x the typical neighbour distance"


def _columns(dataset: Dataset, outl: IssueScores) -> list[list]:
    return [fixed(outl.score), outl.flagged.astype(int).tolist()]


KIND = IssueKind(
    name="outlier",
    title="Outlier",
    description="outliers (far from every other image)",
    score=lambda inputs: outliers(inputs.graph),
    reason=_reason,
    main_columns=("outlier_score",),
    extra_columns=("outlier",),
    column_values=_columns,
)
