"""Issue scores: each planted problem must come first in its own review queue."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cleaner.graph.neighbours import NeighbourGraph, exact_neighbours
from cleaner.io.images import ImageAccess
from cleaner.issues.contract import FLAG_SCORE
from cleaner.issues.duplicate import duplicates_to_drop, near_duplicates
from cleaner.issues.image_check import unreadable_images
from cleaner.issues.label import class_confusion, label_issues
from cleaner.issues.outlier import outliers
from cleaner.issues.ranking import review_queue, worst

from .conftest import clustered_arrays

FLIPPED, FAR, DUP_A, DUP_B = 5, 47, 70, 71  # rows of the planted problems (clusters of 30: classes 0, 1, 2)


def planted(n_per_class: int = 30):
    """Three tight clusters with one flipped label, one far outlier and one exact duplicate pair with two labels."""
    emb, labels = clustered_arrays(n_per_class=n_per_class, n_classes=3, dims=16)
    labels = labels.copy()
    labels[FLIPPED] = 2  # sits in cluster 0
    emb[FAR] = emb[FAR] + 60.0  # far from every cluster (clusters are 0.5 wide, centres ~10 apart)
    emb[DUP_B] = emb[DUP_A]
    labels[DUP_B] = 1 if labels[DUP_A] != 1 else 0
    return emb, labels


def in_unit_interval(values: np.ndarray) -> bool:
    return bool(np.all((values >= 0) & (values <= 1)))


@pytest.fixture(params=["euclidean", "cosine"])
def graph_and_labels(request):
    emb, labels = planted()
    return exact_neighbours(emb, 20, request.param), labels


def test_flipped_label_is_first_and_its_true_label_is_suggested(graph_and_labels):
    graph, labels = graph_and_labels
    issues = label_issues(graph, labels, 3)
    # DUP_B is mislabelled too (a copy of DUP_A carrying another label); the copy at distance 0 is the strongest
    # evidence, so it may come first.
    assert FLIPPED in review_queue(issues, by="label_issue")[:2].tolist()
    assert issues.suggested_label[FLIPPED] == 0
    assert issues.given_label[FLIPPED] == 2
    assert issues.flagged[FLIPPED] and issues.score[FLIPPED] >= FLAG_SCORE
    assert in_unit_interval(issues.score) and in_unit_interval(issues.suggestion_share)
    assert issues.score.shape == (len(labels),) and issues.flagged.dtype == bool
    # The flipped sample's cluster-mates keep their label: one wrong neighbour is not a label issue.
    mates = np.flatnonzero((labels == 0) & (np.arange(len(labels)) < 30))
    assert not issues.flagged[mates].any()
    assert "neighbours mostly carry another label" in issues.summary


def test_mislabelled_neighbours_do_not_vouch_for_each_other():
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8, seed=4)
    labels = labels.copy()
    labels[[1, 2, 3]] = 2  # three flips into one cluster: each sees two neighbours that agree with it
    issues = label_issues(exact_neighbours(emb, 20, "euclidean"), labels, 3)
    assert set(review_queue(issues, by="label_issue")[:3].tolist()) == {1, 2, 3}
    assert issues.flagged[[1, 2, 3]].all() and (issues.suggested_label[[1, 2, 3]] == 0).all()


def test_far_outlier_is_first_and_only_flagged(graph_and_labels):
    graph, _ = graph_and_labels
    result = outliers(graph)
    assert review_queue(result, by="outlier")[0] == FAR
    assert result.flagged[FAR] and result.n_flagged == 1
    assert in_unit_interval(result.score)
    # The score never ranks two samples against their mean neighbour distance (the ranking cleanlab uses).
    order = np.argsort(result.mean_distance, kind="stable")
    assert np.all(np.diff(result.score[order]) >= 0)
    assert result.flag_distance > result.typical_distance > 0


def test_exact_duplicate_pair_with_different_labels(graph_and_labels):
    graph, labels = graph_and_labels
    dups = near_duplicates(graph, labels)
    assert set(review_queue(dups, by="near_duplicate")[:2].tolist()) == {DUP_A, DUP_B}
    assert dups.group[DUP_A] == dups.group[DUP_B] == 0
    assert dups.n_groups == 1 and dups.n_flagged == 2
    assert (np.delete(dups.group, [DUP_A, DUP_B]) == -1).all()
    assert dups.mixed_labels[[DUP_A, DUP_B]].all()
    # Of the pair, the copy whose label its neighbours contradict is the one to drop.
    drop = duplicates_to_drop(dups, prefer=label_issues(graph, labels, 3).score)
    assert np.flatnonzero(drop).tolist() == [DUP_B]
    assert dups.score[DUP_A] == pytest.approx(1.0, abs=1e-3)
    assert in_unit_interval(dups.score)
    assert "different labels" in dups.summary


def test_same_label_duplicates_keep_their_first_copy():
    emb, labels = clustered_arrays(n_per_class=20, n_classes=2, dims=6, seed=3)
    emb[[4, 9]] = emb[2]  # three copies of row 2, all labelled 0
    dups = near_duplicates(exact_neighbours(emb, 10, "euclidean"), labels)
    members = np.flatnonzero(dups.flagged)
    assert members.tolist() == [2, 4, 9] and dups.n_groups == 1
    assert not dups.mixed_labels.any()
    assert np.flatnonzero(duplicates_to_drop(dups)).tolist() == [4, 9]
    prefer = np.zeros(len(labels))
    prefer[2] = 0.5
    assert np.flatnonzero(duplicates_to_drop(dups, prefer)).tolist() == [2, 9]


def test_explicit_duplicate_threshold_chains_into_groups():
    emb = np.zeros((12, 2), dtype=np.float32)
    emb[:, 0] = [0, 1, 2, 10, 20, 30, 40, 50, 60, 61, 80, 90]  # 0-1-2 chain, 60-61 pair
    dups = near_duplicates(exact_neighbours(emb, 3, "euclidean"), np.zeros(12, dtype=int), threshold=1.5)
    assert dups.group.tolist() == [0, 0, 0, -1, -1, -1, -1, -1, 1, 1, -1, -1]
    assert dups.threshold == 1.5


def _png(path, size=(16, 16)):
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return str(path)


def test_truncated_png_is_first_with_its_reason(tmp_path):
    good = [_png(tmp_path / f"ok_{i}.png") for i in range(5)]
    data = (tmp_path / "ok_0.png").read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    paths = good[:2] + [str(truncated)] + good[2:]
    result = unreadable_images(paths, ImageAccess(allowed_roots=(tmp_path.resolve(),)), workers=2)
    assert review_queue(result, by="unreadable")[0] == 2
    assert result.flagged.tolist() == [False, False, True, False, False, False]
    assert result.score.tolist() == [0, 0, 1, 0, 0, 0]
    assert "truncated" in result.reason[2] and result.reason[0] == ""
    assert result.summary.startswith("1 image cannot be read")


def test_every_kind_of_unreadable_file_has_a_reason(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("not an image")
    outside = _png(tmp_path / "outside.png")
    paths = [_png(root / "ok.png"), str(root / "empty.png"), str(root / "notes.png"), str(root / "gone.png"), outside]
    result = unreadable_images(paths, ImageAccess(allowed_roots=(root.resolve(),)))
    assert result.flagged.tolist() == [False, True, True, True, True]
    assert [r for r in result.reason.tolist()] == [
        "",
        "empty file",
        "not an image Pillow can read",
        "file not found",
        "outside the folders this server may read",
    ]


def test_worst_queue_and_combined_flags(graph_and_labels):
    graph, labels = graph_and_labels
    scores = (label_issues(graph, labels, 3), outliers(graph), near_duplicates(graph, labels))
    combined = worst(*scores)
    assert in_unit_interval(combined.score)
    assert combined.flagged[[FLIPPED, FAR, DUP_A, DUP_B]].all()
    assert combined.issue[FAR] == "outlier" and combined.issue[DUP_A] == "near_duplicate"
    queue = review_queue(*scores)
    assert sorted(queue.tolist()) == list(range(len(labels)))
    assert set(queue[:4].tolist()) == {FLIPPED, FAR, DUP_A, DUP_B}
    # Ties at the top go to the sample with more kinds of trouble: the duplicate that also carries a foreign label.
    assert list(queue).index(DUP_B) < list(queue).index(DUP_A)
    assert review_queue(*scores, by="outlier")[0] == FAR
    flagged = review_queue(*scores, flagged_only=True)
    assert set(flagged.tolist()) == set(np.flatnonzero(combined.flagged).tolist())
    with pytest.raises(ValueError):
        review_queue(*scores, by="nonsense")


def test_class_confusion_groups_flagged_pairs():
    emb, labels = clustered_arrays(n_per_class=40, n_classes=3, dims=8, seed=5)
    labels = labels.copy()
    labels[[3, 7, 11]] = 1  # class 0 samples labelled 1
    labels[45] = 2  # a class 1 sample labelled 2
    issues = label_issues(exact_neighbours(emb, 20, "euclidean"), labels, 3)
    confusion = class_confusion(issues)
    # The three flips vouch a little for each other, so not all of them need reach the flag; those flagged group.
    flagged_flips = [r for r in (3, 7, 11) if issues.flagged[r]]
    assert len(flagged_flips) >= 2
    assert [(c.given, c.suggested, c.count) for c in confusion] == [(1, 0, len(flagged_flips)), (2, 1, 1)]
    assert sorted(confusion[0].rows.tolist()) == flagged_flips
    assert confusion[1].rows.tolist() == [45]


def test_label_codes_are_checked():
    graph = exact_neighbours(np.random.default_rng(0).normal(size=(20, 3)), 5, "euclidean")
    with pytest.raises(ValueError):
        label_issues(graph, np.full(20, 3), 3)
    with pytest.raises(ValueError):
        label_issues(graph, np.zeros(19, dtype=int), 3)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(
    n=st.integers(12, 40),
    k=st.integers(1, 8),
    n_classes=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    dup_share=st.floats(0, 0.9),
)
def test_scores_stay_in_unit_interval_on_any_graph(n, k, n_classes, seed, dup_share):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 3)).astype(np.float32)
    copies = rng.random(n) < dup_share
    emb[copies] = emb[0]  # many exact duplicates: zero distances must not break any score
    labels = rng.integers(0, n_classes, n)
    graph = exact_neighbours(emb, k, "euclidean")
    scores = (label_issues(graph, labels, n_classes), outliers(graph), near_duplicates(graph, labels))
    for s in scores:
        assert s.score.shape == (n,) and s.flagged.shape == (n,)
        assert np.isfinite(s.score).all() and in_unit_interval(s.score)
    queue = review_queue(*scores)
    assert sorted(queue.tolist()) == list(range(n))


def test_graph_with_only_exact_duplicates():
    graph = NeighbourGraph(
        indices=np.array([[1], [0], [3], [2]], dtype=np.int32),
        distances=np.zeros((4, 1), dtype=np.float32),
        metric="euclidean",
        exact=True,
    )
    dups = near_duplicates(graph, np.array([0, 1, 0, 0]))
    assert dups.group.tolist() == [0, 0, 1, 1]
    assert dups.mixed_labels.tolist() == [True, True, False, False]
    assert (dups.score == 1).all()
    assert in_unit_interval(outliers(graph).score)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300), levels=st.integers(1, 6))
def test_the_flagged_queue_is_the_whole_order_less_the_unflagged(seed, n, levels):
    """Most suspect first; ties to more kinds of trouble, then the lower row: the same order whether the unflagged
    rows are sorted with the rest and dropped, or never sorted."""
    from cleaner.issues.contract import IssueScores

    rng = np.random.default_rng(seed)
    scores = [
        IssueScores(name, (rng.integers(0, levels + 1, n) / levels).astype(np.float32), rng.random(n) < 0.3, "")
        for name in ("label_issue", "outlier")
    ]
    for by in ("label_issue", "worst"):
        whole = review_queue(*scores, by=by)
        key = worst(*scores) if by == "worst" else scores[0]
        expected = sorted(range(n), key=lambda r: (-float(key.score[r]), -sum(float(s.score[r]) for s in scores), r))
        assert whole.tolist() == expected
        flagged = review_queue(*scores, by=by, flagged_only=True)
        assert flagged.tolist() == [r for r in expected if key.flagged[r]]
