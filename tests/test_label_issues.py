"""Label-issue ranking: planted look-alike flips and vouching groups come first, ties break by evidence, the queue
re-scores after review decisions, and the thorough (probe) ranking."""

import numpy as np
import pytest

from cleaner.graph.neighbours import exact_neighbours
from cleaner.issues.label import (
    EVIDENCE_WEIGHT,
    LABEL_K,
    LABEL_KERNEL,
    MARGIN_WEIGHT,
    label_issues,
    rescore_label_issues,
)
from cleaner.issues.label_votes import kernel, tally, typical_distance
from cleaner.issues.probe import thorough_label_issues
from cleaner.issues.ranking import review_queue

from .conftest import clustered_arrays


def expected_scores(graph, codes, n_classes, out=None):
    """The documented score, from a dense [N, C] table built here: the reference for the vectorised code."""
    n = len(codes)
    out = np.zeros(n, dtype=bool) if out is None else out
    k = min(LABEL_K, graph.k)
    idx, dist = graph.indices[:, :k], graph.distances[:, :k].astype(np.float64)
    w = np.exp(-dist / (LABEL_KERNEL * np.median(dist[dist > 0]))) * ~out[idx]
    table = np.zeros((n, n_classes))
    np.add.at(table, (np.repeat(np.arange(n), k), codes[idx].ravel()), w.ravel())
    shares = table / np.maximum(table.sum(axis=1, keepdims=True), 1e-300)
    given = shares[np.arange(n), codes]
    others = shares.copy()
    others[np.arange(n), codes] = -1
    other = np.maximum(others.max(axis=1), 0)
    evidence = table[np.arange(n), others.argmax(axis=1)] * (other > 0) / k
    base = (1 - given + MARGIN_WEIGHT * (1 + other - given)) / (1 + 2 * MARGIN_WEIGHT)
    score = (1 - EVIDENCE_WEIGHT) * base + EVIDENCE_WEIGHT * np.minimum(evidence, 1)
    return np.where(out | (table.sum(axis=1) == 0), 0.0, score)


def test_flips_to_a_look_alike_class_come_first():
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 10, size=(4, 8))
    centres[1] = centres[0] + 2.5  # classes 0 and 1 look alike: 2.5 apart against 10 for the others
    emb = np.vstack([c + rng.normal(0, 0.6, size=(50, 8)) for c in centres]).astype(np.float32)
    labels = np.repeat(np.arange(4), 50)
    flips = [4, 17, 33]  # class-0 images labelled as the look-alike class 1
    labels[flips] = 1
    for metric in ("euclidean", "cosine"):
        issues = label_issues(exact_neighbours(emb, 20, metric), labels, 4)
        assert set(review_queue(issues, by="label_issue")[:3].tolist()) == set(flips)
        assert (issues.suggested_label[flips] == 0).all() and issues.flagged[flips].all()


def test_a_group_of_mislabelled_images_that_vouch_for_each_other_comes_first():
    emb, labels = clustered_arrays(n_per_class=60, n_classes=3, dims=8, seed=4)
    labels = labels.copy()
    gang = [10, 11, 12, 13]
    emb[gang] = emb[10] + np.random.default_rng(1).normal(0, 0.2, size=(4, 8))  # close to each other
    labels[gang] = 2
    for metric in ("euclidean", "cosine"):
        issues = label_issues(exact_neighbours(emb, 20, metric), labels, 3)
        assert set(review_queue(issues, by="label_issue")[:4].tolist()) == set(gang)
        assert (issues.suggested_label[gang] == 0).all()


def test_ties_break_by_how_close_the_disagreeing_neighbours_are():
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=4, seed=2)
    labels = labels.copy()
    emb[0] = emb[:40].mean(axis=0)  # amid its class-0 neighbours
    centre = emb[40:80].mean(axis=0)
    emb[41] = centre + 3.0 * (emb[41] - centre) / np.linalg.norm(emb[41] - centre)  # at the edge of class 1
    labels[[0, 41]] = 2
    issues = label_issues(exact_neighbours(emb, 20, "euclidean"), labels, 3)
    assert issues.score[0] > issues.score[41] >= 0.99  # both unanimous, the closer evidence first
    assert review_queue(issues, by="label_issue")[:2].tolist() == [0, 41]
    # No flat top: the flagged scores are all distinct.
    top = issues.score[issues.flagged]
    assert len(np.unique(top)) == len(top)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_scores_match_the_dense_reference(metric):
    emb, labels = clustered_arrays(n_per_class=30, n_classes=4, dims=6, seed=8)
    labels = labels.copy()
    labels[[2, 40, 77, 100]] = [3, 0, 1, 2]
    graph = exact_neighbours(emb, 20, metric)
    issues = label_issues(graph, labels, 4)
    np.testing.assert_allclose(issues.score, expected_scores(graph, labels, 4), atol=1e-6)


def test_tally_matches_a_dense_table():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=(500, 9))
    weights = rng.random((500, 9)) * (rng.random((500, 9)) > 0.2)
    own = rng.integers(0, 6, size=500)
    votes = tally(labels, weights, own)
    table = np.zeros((500, 6))
    np.add.at(table, (np.repeat(np.arange(500), 9), labels.ravel()), weights.ravel())
    shares = table / np.maximum(table.sum(axis=1, keepdims=True), 1e-300)
    np.testing.assert_allclose(votes.given_share, shares[np.arange(500), own])
    shares[np.arange(500), own] = -1
    np.testing.assert_allclose(votes.other_share, np.maximum(shares.max(axis=1), 0))
    has = shares.max(axis=1) > 0
    assert (votes.other_label[has] == shares.argmax(axis=1)[has]).all()
    np.testing.assert_allclose(votes.total, weights.sum(axis=1))
    assert typical_distance(np.zeros(3)) == 1.0 and kernel(np.array([0.0]), 1.0)[0] == 1.0


def planted_for_decisions():
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8, seed=6)
    labels = labels.copy()
    labels[[1, 2, 3]] = 2  # three flips in cluster 0 that vouch a little for each other
    labels[50] = 0
    return exact_neighbours(emb, 20, "euclidean"), labels


def test_an_excluded_row_no_longer_votes_and_leaves_the_queue():
    graph, labels = planted_for_decisions()
    issues = rescore_label_issues(graph, labels, 3, excluded=[1])
    out = np.zeros(len(labels), dtype=bool)
    out[1] = True
    np.testing.assert_allclose(issues.score, expected_scores(graph, labels, 3, out), atol=1e-6)
    assert issues.score[1] == 0 and not issues.flagged[1] and issues.excluded[1]
    # Only row 1 and the rows it voted for change.
    changed = np.flatnonzero(issues.score != label_issues(graph, labels, 3).score)
    assert set(changed.tolist()) <= {1} | set(np.flatnonzero((graph.indices == 1).any(axis=1)).tolist())


def test_a_relabelled_row_votes_with_its_new_label():
    graph, labels = planted_for_decisions()
    issues = rescore_label_issues(graph, labels, 3, relabelled={1: 0, 50: 1})
    fixed = labels.copy()
    fixed[[1, 50]] = [0, 1]
    np.testing.assert_allclose(issues.score, expected_scores(graph, fixed, 3), atol=1e-6)
    assert issues.given_label[1] == 0 and issues.score[1] < 0.1  # now agrees with its neighbours
    assert issues.given_label[50] == 1 and not issues.flagged[[1, 50]].any()


def test_rescoring_from_the_previous_result_equals_a_full_rescore():
    graph, labels = planted_for_decisions()
    issues = label_issues(graph, labels, 3)
    steps = [([1], {}), ([1], {2: 0}), ([1, 70], {2: 0, 50: 1}), ([70], {2: 0, 50: 1})]  # the last undoes one
    for excluded, relabelled in steps:
        issues = rescore_label_issues(graph, labels, 3, excluded=excluded, relabelled=relabelled, previous=issues)
        full = rescore_label_issues(graph, labels, 3, excluded=excluded, relabelled=relabelled)
        for field in ("score", "flagged", "given_label", "suggested_label", "suggestion_share", "excluded"):
            np.testing.assert_allclose(getattr(issues, field), getattr(full, field), atol=1e-7, err_msg=field)
    assert issues.kernel_scale == full.kernel_scale


def test_thorough_ranking_finds_the_flips_and_reports_progress():
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8, seed=9)
    labels = labels.copy()
    flips = [5, 47, 90]
    labels[flips] = [1, 2, 0]
    graph = exact_neighbours(emb, 20, "cosine")
    calls = []
    issues = thorough_label_issues(graph, emb, labels, 3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]
    assert set(review_queue(issues, by="label_issue")[:3].tolist()) == set(flips)
    assert issues.flagged[flips].all() and (issues.suggested_label[flips] == [0, 1, 2]).all()
    assert issues.score.shape == (len(labels),) and ((issues.score >= 0) & (issues.score <= 1)).all()
