"""Which distance the neighbour graph uses when the user leaves it on "auto": a rule on the embeddings alone.

Non-negative features (ReLU activations, pooled CNN features, pixel intensities) carry information in their
length: how strongly an image matches what the network learned. Cosine divides it away, and on
bench/detect.py's table the euclidean graph ranked planted label errors as well or better on every
non-negative embedding, while signed embeddings (PCA, contrastive models) did as well or better with cosine. Rows of one length (unit-normalised embeddings) have the same neighbours under both; cosine then.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

AUTO = "auto"
COSINE, EUCLIDEAN = "cosine", "euclidean"
# Rows whose lengths all lie within this relative spread count as normalised to one length.
_SAME_LENGTH = 1e-3
_CHUNK_ROWS = 65_536  # bounded scratch memory on a million rows


class MetricChoice(NamedTuple):
    metric: str  # "cosine" or "euclidean"
    reason: str  # for the person: why this distance suits these embeddings


def auto_metric(embeddings: np.ndarray) -> MetricChoice:
    """The distance "auto" stands for on these embeddings, with the reason in words."""
    lowest, shortest, longest = np.inf, np.inf, 0.0
    for start in range(0, embeddings.shape[0], _CHUNK_ROWS):
        chunk = np.asarray(embeddings[start : start + _CHUNK_ROWS], dtype=np.float32)
        if chunk.size == 0:
            continue
        lowest = min(lowest, float(chunk.min()))
        lengths = np.sqrt(np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64))
        shortest, longest = min(shortest, float(lengths.min())), max(longest, float(lengths.max()))
    if not np.isfinite(lowest):
        return MetricChoice(COSINE, "no embeddings to look at")
    if longest - shortest <= _SAME_LENGTH * max(longest, 1e-12):
        return MetricChoice(COSINE, "the embeddings all have one length, so both distances find the same neighbours")
    if lowest >= 0.0:
        return MetricChoice(
            EUCLIDEAN,
            "the features are non-negative (as ReLU activations and pixels are), and "
            "their length carries information that cosine would discard",
        )
    return MetricChoice(
        COSINE, "the features are signed (as PCA and contrastive embeddings are): their direction carries the class"
    )


def resolved_metric(metric: str, embeddings: np.ndarray) -> str:
    """`metric` itself, or the one "auto" stands for on these embeddings."""
    return auto_metric(embeddings).metric if metric == AUTO else metric
