"""The "thorough" label-issue ranking: out-of-fold class probabilities of a linear probe, combined with the kNN votes.

Where the embedding mixes classes (a model trained on other images), a kNN vote sees neighbours of the wrong
class; a logistic regression on the same embeddings can weigh the dimensions that separate the classes. Each
row's probabilities come from a model that never saw its (possibly wrong) label: K folds, K fits. Opt-in and
slower than the default ranking, so scikit-learn is imported here only, never by `cleaner scan`'s default path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from cleaner.graph.neighbours import NeighbourGraph
from cleaner.issues.label import (
    EVIDENCE_WEIGHT,
    LABEL_K,
    LABEL_KERNEL,
    MARGIN_WEIGHT,
    LabelIssues,
    label_issues,
    label_issues_from,
)
from cleaner.issues.label_votes import kernel, margin_score, typical_distance

PROBE_FOLDS = 5
# The probe and the kNN votes count alike: on weak embeddings each catches errors the other misses.
PROBE_WEIGHT = 0.5
# A loose tolerance: the ranking needs the probabilities' order, not the optimum's last digits, and it halves
# the fits' iterations.
PROBE_TOL = 1e-3
PROBE_MAX_ITER = 200

Progress = Callable[[int, int], None]


def _folds(codes: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per row, each class spread evenly over the folds (stratified), in a seeded random order."""
    rng = np.random.default_rng(seed)
    fold = np.empty(codes.shape[0], dtype=np.int64)
    for label in np.unique(codes):
        rows = rng.permutation(np.flatnonzero(codes == label))
        fold[rows] = (np.arange(rows.size) + rng.integers(folds)) % folds
    return fold


def probe_probabilities(
    embeddings: np.ndarray,
    label_codes: np.ndarray,
    n_classes: int,
    folds: int = PROBE_FOLDS,
    progress: Progress | None = None,
    seed: int = 0,
) -> np.ndarray:
    """[N, n_classes] float32 out-of-fold probabilities of a logistic regression on the standardised embeddings."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(embeddings, dtype=np.float32)
    # Standardised once for all folds: the mean and spread use no labels, so nothing of a held-out label leaks.
    x = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    codes = np.asarray(label_codes, dtype=np.int64).reshape(-1)
    fold = _folds(codes, max(2, folds), seed)
    out = np.zeros((codes.shape[0], n_classes), dtype=np.float32)
    total = int(fold.max()) + 1
    for f in range(total):
        train, test = fold != f, fold == f
        present = np.unique(codes[train])
        if present.size == 1:  # a fold that saw one class predicts it
            out[np.ix_(test, present)] = 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model = LogisticRegression(tol=PROBE_TOL, max_iter=PROBE_MAX_ITER).fit(x[train], codes[train])
            out[np.ix_(test, model.classes_)] = model.predict_proba(x[test])
        if progress is not None:
            progress(f + 1, total)
    return out


def knn_probabilities(graph: NeighbourGraph, codes: np.ndarray, n_classes: int, k: int = LABEL_K) -> np.ndarray:
    """[N, n_classes] float32 weighted label shares of each row's k nearest neighbours (the default vote's weights)."""
    k = max(1, min(k, graph.k))
    dist = graph.distances[:, :k]
    weights = kernel(dist, LABEL_KERNEL * typical_distance(dist))
    n = codes.shape[0]
    flat = (np.arange(n)[:, None] * n_classes + codes[graph.indices[:, :k]]).ravel()
    table = np.bincount(flat, weights=weights.ravel(), minlength=n * n_classes).reshape(n, n_classes)
    return (table / np.maximum(table.sum(axis=1, keepdims=True), 1e-300)).astype(np.float32)


def thorough_label_issues(
    graph: NeighbourGraph,
    embeddings: np.ndarray,
    label_codes: np.ndarray,
    n_classes: int,
    progress: Progress | None = None,
    folds: int = PROBE_FOLDS,
    k: int = LABEL_K,
) -> LabelIssues:
    """Label issues from the kNN votes and a cross-validated linear probe's probabilities, averaged per class.

    Same result shape as `label_issues` (suggestions, shares, flags); `progress(done, total)` is called after
    each of the probe's fits. Needs scikit-learn and memory for two [N, n_classes] tables. Review decisions
    re-score with `rescore_label_issues` (the kNN ranking), which recomputes every row when given this result.
    """
    base = label_issues(graph, label_codes, n_classes, k=k)  # checks the labels; its evidence breaks ties
    codes = base.given_label
    probs = PROBE_WEIGHT * probe_probabilities(embeddings, codes, n_classes, folds, progress)
    probs += (1.0 - PROBE_WEIGHT) * knn_probabilities(graph, codes, n_classes, k)
    rows = np.arange(codes.shape[0])
    given = probs[rows, codes].astype(np.float64)
    probs[rows, codes] = -1.0
    other_label = probs.argmax(axis=1).astype(np.int32)
    other = np.maximum(probs[rows, other_label].astype(np.float64), 0.0)
    evidence = np.where(base.suggested_label != codes, base.score, 0.0)  # the kNN's own strength of evidence
    score = margin_score(given, other, evidence, MARGIN_WEIGHT, EVIDENCE_WEIGHT).astype(np.float32)
    lead = other > given
    suggested = np.where(lead, other_label, codes).astype(np.int32)
    # excluded=None, so rescore_label_issues never patches these scores with kNN-only ones: it starts afresh
    return label_issues_from(
        score,
        codes,
        suggested,
        np.where(lead, other, given).astype(np.float32),
        "neighbours and linear probe mostly point to another label",
        None,
        base.kernel_scale,
    )
