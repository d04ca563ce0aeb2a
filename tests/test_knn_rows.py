"""The pieces every kNN search shares (cleaner/graph/knn_rows.py), and the exact search built on them
(cleaner/graph/exact.py): rows as compared, blocks and chunks covering every row once, drop_self, recall,
to_metric, tasks on every core."""

import threading

import numpy as np
import pytest

from cleaner.graph import knn_rows
from cleaner.graph.exact import exact_rows
from cleaner.graph.knn_rows import (
    ComparedRows,
    blocks,
    chunk_rows,
    cores,
    drop_self,
    in_parallel,
    prepared,
    recall,
    to_metric,
)


def _brute_d2(x: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """Squared euclidean distances, in float64, from the given rows to every row (of unit rows for cosine)."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    d2 = ((x[rows, None, :] - x[None, :, :]) ** 2).sum(-1)
    d2[np.arange(len(rows)), rows] = np.inf  # never the row itself
    return d2


def test_cores_is_at_least_one():
    assert cores() >= 1


@pytest.mark.parametrize("n", [1, 63, 64, 1000, 12_345])
@pytest.mark.parametrize("most", [1, 100, 256, 10**6])
def test_blocks_cover_every_row_exactly_once(n, most):
    starts = blocks(n, most)
    covered = np.concatenate([np.arange(s, min(s + starts.step, n)) for s in starts])
    np.testing.assert_array_equal(covered, np.arange(n))
    assert starts.step <= max(most, 64)


def test_chunk_rows_keep_a_chunk_within_its_bytes():
    for dims in (1, 64, 512, 4096, 10**6):
        rows = chunk_rows(dims)
        assert rows >= 256
        assert rows == 256 or rows * 4 * dims <= knn_rows.CHUNK_BYTES


def test_prepared_rows_are_float32_unit_length_for_cosine_and_leave_the_input_alone():
    x = np.random.default_rng(0).normal(size=(50, 7))
    x[3] = 0.0  # a zero row stays zero, not NaN
    before = x.copy()
    cosine = prepared(x, "cosine", slice(None))
    assert cosine.dtype == np.float32 and cosine.flags.c_contiguous
    norms = np.linalg.norm(cosine, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), 1.0, rtol=1e-6)
    assert norms[3] == 0.0
    np.testing.assert_array_equal(x, before)
    rows = np.array([5, 1, 9])
    np.testing.assert_array_equal(prepared(x, "euclidean", rows), x[rows].astype(np.float32))


def test_compared_rows_keep_euclidean_differences_and_centre_the_data():
    x = (20.0 + np.random.default_rng(1).normal(size=(200, 16))).astype(np.float32)
    data = ComparedRows(x, "euclidean")
    assert (data.n, data.dims) == (200, 16)
    rows = data[np.arange(200)]
    assert np.abs(rows.mean(axis=0)).max() < 1e-3  # the common offset is gone
    np.testing.assert_allclose(rows[3] - rows[7], x[3] - x[7], atol=1e-4)
    np.testing.assert_array_equal(data[slice(10, 20)], rows[10:20])
    cosine = ComparedRows(x, "cosine")
    np.testing.assert_array_equal(cosine[np.arange(5)], prepared(x, "cosine", np.arange(5)))
    x_copy = x.copy()
    for compared in (data, cosine):
        got = compared[slice(0, 5)]
        got -= 1.0  # the caller's rows are never written through a view
    np.testing.assert_array_equal(x, x_copy)


def test_to_metric_converts_squared_distances():
    d2 = np.array([[-1e-6, 0.0, 0.5, 2.0, 4.0, 9.0]], dtype=np.float32)
    cosine = to_metric(d2, "cosine")
    expected = np.minimum(np.maximum(d2.astype(np.float64), 0) / 2, 2.0)
    assert cosine.dtype == np.float32
    np.testing.assert_allclose(cosine, expected, rtol=1e-6)
    euclidean = to_metric(d2, "euclidean")
    np.testing.assert_allclose(euclidean, np.sqrt(np.maximum(d2.astype(np.float64), 0)), rtol=1e-6)
    assert euclidean.dtype == np.float32 and euclidean.min() == 0.0


def test_drop_self_removes_the_row_or_else_the_farthest():
    rows = np.array([10, 11, 12])
    ids = np.array([[10, 3, 4], [5, 11, 6], [7, 8, 9]])  # row 12 was crowded out by equally near duplicates
    d2 = np.array([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.5]], dtype=np.float32)
    kept, kept_d2 = drop_self(ids, d2, rows, 2)
    np.testing.assert_array_equal(kept, [[3, 4], [5, 6], [7, 8]])
    np.testing.assert_array_equal(kept_d2, [[1.0, 2.0], [0.0, 3.0], [0.0, 0.0]])
    assert not (kept == rows[:, None]).any()


def test_recall_is_the_share_no_farther_than_the_exact_kth():
    rng = np.random.default_rng(2)
    k = 8
    truth_d2 = np.sort(rng.uniform(1.0, 5.0, size=(30, k)), axis=1)
    kth = truth_d2[:, -1:]
    found = rng.integers(0, 1000, size=(30, k))
    for good in range(k + 1):
        # The first `good` neighbours at or inside the k-th exact distance, the rest clearly beyond it.
        found_d2 = np.where(np.arange(k) < good, kth * rng.uniform(0.0, 1.0, size=(30, k)), kth * 1.5 + 1.0)
        assert recall(found, found_d2, truth_d2) == pytest.approx(good / k)
    missing = found.copy()
    missing[:, :2] = -1  # missing neighbours never count, whatever their distance
    assert recall(missing, truth_d2, truth_d2) == pytest.approx((k - 2) / k)
    assert recall(found, kth + 1e-4 * kth / 2, truth_d2) == 1.0  # within the rounding tolerance


def test_in_parallel_runs_every_task_once():
    counts = [0] * 200
    lock = threading.Lock()

    def task(i: int) -> None:
        with lock:
            counts[i] += 1

    in_parallel([lambda i=i: task(i) for i in range(200)])
    assert counts == [1] * 200
    in_parallel([])  # no task, no error


def test_in_parallel_raises_a_task_error():
    def fail() -> None:
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        in_parallel([lambda: None, fail, lambda: None])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("queries", ["sample", "all"])  # the two ways the exact search splits its work
def test_exact_search_over_many_small_chunks_equals_brute_force(metric, queries, monkeypatch):
    monkeypatch.setattr(knn_rows, "CHUNK_BYTES", 256 * 4 * 12)  # 256-row chunks: many of them, and a short last one
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 12)).astype(np.float32)
    rows = np.sort(rng.choice(3000, 150, replace=False)) if queries == "sample" else np.arange(3000)
    ids, d2 = exact_rows(ComparedRows(x, metric), rows, 7)
    truth = _brute_d2(x, rows, metric)
    expected_ids = np.argsort(truth, axis=1, kind="stable")[:, :7]
    assert ids.dtype == np.int32 and ids.shape == d2.shape == (len(rows), 7)
    assert not (ids == rows[:, None]).any()
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(d2, np.take_along_axis(truth, expected_ids, 1), atol=1e-4)


def test_exact_search_when_k_is_every_other_row():
    x = np.random.default_rng(4).normal(size=(6, 3)).astype(np.float32)
    rows = np.arange(6)
    ids, _ = exact_rows(ComparedRows(x, "euclidean"), rows, 5)
    for row, found in zip(rows, ids, strict=True):
        assert sorted(found.tolist()) == [r for r in range(6) if r != row]
