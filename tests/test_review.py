"""The review queue's words agree with the summary's counts: a card names only flagged issues."""

import numpy as np

from cleaner.io.dataset import dataset_from_arrays
from cleaner.issues.review import pending_rows, reasons
from cleaner.issues.suspects import scan

from .conftest import clustered_arrays


def _planted():
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8, seed=4)
    labels = labels.copy()
    labels[[0, 41, 82]] = [1, 2, 0]  # three flipped labels
    emb = np.vstack([emb, np.full((1, 8), 60.0, dtype=np.float32)])  # one far outlier
    labels = np.append(labels, 0)
    paths = np.array([f"/img/{i}.png" for i in range(len(labels))])
    return dataset_from_arrays(emb, labels, paths, "planted")


def test_cards_name_exactly_the_flagged_issues():
    data = _planted()
    result = scan(data, k=10)
    words = [reasons(data, result, r) for r in range(data.n)]
    named_label = {r for r, w in enumerate(words) if any(x.startswith("label issue") for x in w)}
    named_outlier = {r for r, w in enumerate(words) if any(x.startswith("outlier") for x in w)}
    labels = result.labels
    assert named_label == set(np.flatnonzero(labels.flagged & (labels.suggested_label != labels.given_label)).tolist())
    assert named_outlier == set(np.flatnonzero(result.outliers.flagged).tolist())
    assert {0, 41, 82} <= named_label and data.n - 1 in named_outlier


def test_pending_rows_leave_out_decided_rows_and_keep_the_order():
    data = _planted()
    result = scan(data, k=10)
    full = pending_rows(result, "worst", [])
    rest = pending_rows(result, "worst", full[:2].tolist())
    assert rest.tolist() == full[2:].tolist()


def test_a_cards_neighbours_read_in_one_line():
    from cleaner.issues.review import neighbour_summary

    names = ["dog", "cat", "dog", "dog", "cat", "fox"]
    distances = [0.114, 0.2, 0.31, 0.35, 0.4, 0.449]
    assert neighbour_summary(names, distances) == "dog ×3 · cat ×2 · fox ×1 · distance 0.11–0.45"
    assert neighbour_summary(["dog"] * 2, [0.021, 0.024]) == "dog ×2 · distance 0.02"
