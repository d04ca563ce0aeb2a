"""The distance "auto" picks, and what the pick is worth: on features whose length carries the class."""

import numpy as np
import pytest

from cleaner.graph import distance
from cleaner.graph.distance import auto_metric, resolved_metric
from cleaner.io.dataset import dataset_from_arrays
from cleaner.issues.suspects import scan


def _relu_features(n: int = 600, dims: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(size=(n, dims)), 0).astype(np.float32)


def test_non_negative_features_get_euclidean():
    choice = auto_metric(_relu_features())
    assert choice.metric == "euclidean" and "non-negative" in choice.reason


def test_signed_features_get_cosine():
    x = np.random.default_rng(1).normal(size=(500, 16)).astype(np.float32)
    assert auto_metric(x).metric == "cosine"


def test_unit_length_rows_get_cosine_even_when_non_negative():
    x = _relu_features() + 0.01
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    choice = auto_metric(x)
    assert choice.metric == "cosine" and "one length" in choice.reason


def test_a_single_negative_value_in_a_later_chunk_counts(monkeypatch):
    monkeypatch.setattr(distance, "_CHUNK_ROWS", 64)
    x = _relu_features(n=500)
    x[-1, 3] = -0.5  # in the eighth chunk of 64 rows
    assert auto_metric(x).metric == "cosine"


def test_resolved_metric_keeps_an_explicit_choice():
    x = _relu_features()
    assert resolved_metric("cosine", x) == "cosine"
    assert resolved_metric("auto", x) == "euclidean"


def _two_classes_told_apart_by_length(seed: int = 0):
    """Non-negative features of one direction distribution; the class is in the length (1 vs 3), as a network's
    activations grow with how strongly an image matches what it learned."""
    rng = np.random.default_rng(seed)
    n, dims = 400, 16
    direction = np.abs(rng.normal(size=(n, dims)))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    truth = np.repeat([0, 1], n // 2)
    x = (direction * np.where(truth == 0, 1.0, 3.0)[:, None] * rng.uniform(0.9, 1.1, size=(n, 1))).astype(np.float32)
    flipped = np.sort(rng.choice(n, size=12, replace=False))
    labels = truth.copy()
    labels[flipped] = 1 - labels[flipped]
    data = dataset_from_arrays(x, labels, np.array([f"img_{i}.png" for i in range(n)]), "lengths")
    return data, flipped


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_finds_the_label_errors_that_cosine_cannot_see(seed):
    data, flipped = _two_classes_told_apart_by_length(seed)

    def top(result):
        return set(np.argsort(-result.labels.score, kind="stable")[: len(flipped)].tolist())

    found_auto = len(top(scan(data, k=10)) & set(flipped.tolist()))
    found_cosine = len(top(scan(data, k=10, metric="cosine")) & set(flipped.tolist()))
    assert found_auto == len(flipped)  # every planted error heads the queue
    # cosine sees only the directions, which both classes share: the errors are no likelier than any other row
    assert found_cosine <= len(flipped) // 2
