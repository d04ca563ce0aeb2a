"""The inverted file (cleaner/graph/inverted_file.py) and the calibration of how many of its lists are probed
(cleaner/graph/calibration.py), against the exact search."""

import numpy as np
import pytest

from cleaner.graph import calibration
from cleaner.graph.calibration import (
    CALIBRATION_MARGIN,
    EXACT_SHARE,
    calibrate,
    calibrated_graph,
    fewest,
    wider,
    widest,
)
from cleaner.graph.exact import exact_rows
from cleaner.graph.inverted_file import build_lists, probe, probe_all
from cleaner.graph.knn_backends import FaissBackend
from cleaner.graph.knn_rows import ComparedRows, cores, drop_self, recall


def _clusters(n: int, dims: int = 24, n_clusters: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dims)) * 4
    return (centers[rng.integers(0, n_clusters, n)] + rng.normal(size=(n, dims))).astype(np.float32)


def _lists(x: np.ndarray, metric: str = "euclidean", seed: int = 42):
    data = ComparedRows(x, metric)
    return data, build_lists(data, FaissBackend(seed=seed)._train_quantizer, seed)


def _tried(first: int, most: int) -> list[int]:
    """The numbers of probed lists the widening tries, from first up to most."""
    tried, nprobe = [], first
    while nprobe <= most:
        tried.append(nprobe)
        nprobe = wider(nprobe, most)
    return tried


# -- widening


def test_widening_grows_by_half_and_stops_at_the_widest():
    assert [wider(n, 1000) for n in (1, 2, 3, 5, 8)] == [2, 3, 5, 8, 12]
    assert wider(315, 400) == 400  # 473 would skip 316..400
    assert wider(400, 400) == 600  # past the widest: the search gives up
    assert _tried(2, 20) == [2, 3, 5, 8, 12, 18, 20]


def test_the_widest_is_a_share_of_the_lists():
    for nlist in (1, 2, 3, 10, 77, 1000):
        assert widest(nlist) == max(1, int(EXACT_SHARE * nlist))


def test_widening_tries_the_widest_allowed_before_giving_up():
    assert fewest(lambda probed: probed >= 350, 315, 400) == 400
    assert fewest(lambda probed: probed >= 5, 2, 400) == 5  # 2, 3, 5
    assert fewest(lambda probed: probed >= 401, 315, 400) is None
    asked = []
    fewest(lambda probed: asked.append(probed) or False, 2, 20)
    assert asked == _tried(2, 20)


# -- the inverted file


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_every_row_is_in_exactly_one_list_its_nearest_centroids(metric):
    x = _clusters(2000, seed=1)
    data, lists = _lists(x, metric)
    assert lists.nlist == max(1, min(int(round(np.sqrt(2000))), 2000 // 39))
    np.testing.assert_array_equal(np.sort(lists.order), np.arange(2000))
    assert lists.bounds[0] == 0 and lists.bounds[-1] == 2000 and (np.diff(lists.bounds) >= 0).all()
    centroids = lists.quantizer.reconstruct_n(0, lists.nlist)
    rows = data[np.arange(2000)].astype(np.float64)
    nearest = np.argmin(((rows[:, None, :] - centroids[None].astype(np.float64)) ** 2).sum(-1), axis=1)
    for number in range(lists.nlist):
        members = lists.members(number)
        assert (nearest[members] == number).mean() > 0.99  # float32 ties aside, each row in its nearest list


def test_probing_every_list_is_the_exact_search():
    x = _clusters(1500, seed=2)
    data, lists = _lists(x)
    rows = np.arange(0, 1500, 7)
    ids, d2 = drop_self(*probe(lists, data, rows, 11, lists.nlist), rows, 10)
    _, truth_d2 = exact_rows(data, rows, 10)
    np.testing.assert_allclose(d2, truth_d2, atol=1e-3)
    assert recall(ids, d2, truth_d2) == 1.0


def test_probing_finds_only_rows_of_the_probed_lists():
    x = _clusters(1500, seed=3)
    data, lists = _lists(x)
    rows = np.arange(0, 1500, 11)
    ids, _ = probe(lists, data, rows, 5, 1)
    own_list = np.empty(1500, dtype=np.int64)
    for number in range(lists.nlist):
        own_list[lists.members(number)] = number
    probed = lists.quantizer.search(data[rows], 1)[1][:, 0]
    found = ids >= 0
    assert (own_list[np.where(found, ids, 0)] == probed[:, None])[found].all()


def test_probing_all_rows_leaves_out_the_row_itself_and_keeps_the_order():
    x = _clusters(1500, seed=4)
    data, lists = _lists(x)
    ids, d2 = probe_all(lists, data, 8, 3)
    assert ids.shape == d2.shape == (1500, 8) and ids.dtype == np.int32
    assert not (ids == np.arange(1500)[:, None]).any()
    valid = (ids >= 0).all(axis=1)
    assert (np.diff(d2[valid], axis=1) >= -1e-6).all()
    rows = np.flatnonzero(valid)[:50]
    expected = ((data[rows].astype(np.float64)[:, None, :] - data[ids[rows]].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_allclose(d2[rows], expected, atol=1e-3)


# -- calibration


def test_calibration_picks_the_first_tried_number_of_lists_that_reaches_the_recall():
    x = _clusters(4000, dims=32, n_clusters=6, seed=5)  # few wide clusters: one list is far from enough
    data, lists = _lists(x)
    rows = np.random.default_rng(0).choice(4000, 300, replace=False)
    truth_d2 = exact_rows(data, rows, 15)[1]
    min_recall = 0.97

    def reached(probed: int) -> float:
        ids, d2 = drop_self(*probe(lists, data, rows, 16, probed), rows, 15)
        return recall(ids, d2, truth_d2)

    nprobe = calibrate(lists, data, rows, truth_d2, 15, 1, min_recall)
    assert nprobe is not None and nprobe > 1
    assert reached(nprobe) >= min_recall + CALIBRATION_MARGIN
    tried = _tried(1, widest(lists.nlist))
    assert all(reached(fewer) < min_recall + CALIBRATION_MARGIN for fewer in tried[: tried.index(nprobe)])


def test_calibration_gives_up_beyond_the_widest_and_restores_the_threads():
    import faiss

    x = _clusters(2000, seed=6)
    data, lists = _lists(x)
    rows = np.arange(0, 2000, 10)
    truth_d2 = exact_rows(data, rows, 10)[1]
    assert calibrate(lists, data, rows, truth_d2, 10, 2, 1.01) is None
    assert faiss.omp_get_max_threads() == cores()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_calibrated_graph_reaches_the_recall_on_every_row(metric):
    x = _clusters(5000, seed=7)
    data, lists = _lists(x, metric)
    nprobe, ids, d2 = calibrated_graph(lists, data, 10, 2, 0.97, seed=42)
    assert 2 <= nprobe <= widest(lists.nlist)
    _, truth_d2 = exact_rows(data, np.arange(5000), 10)
    assert recall(ids, d2, truth_d2) >= 0.97
    again = calibrated_graph(lists, data, 10, 2, 0.97, seed=42)  # seeded: the same samples, the same graph
    assert again[0] == nprobe
    np.testing.assert_array_equal(again[1], ids)


def test_the_check_on_the_second_sample_widens_the_search(monkeypatch):
    tried = []

    def no_calibration(lists, data, rows, truth_d2, k, nprobe, min_recall):
        tried.append(nprobe)
        return nprobe

    monkeypatch.setattr(calibration, "calibrate", no_calibration)
    x = _clusters(4000, dims=32, n_clusters=6, seed=8)
    data, lists = _lists(x)
    nprobe, ids, d2 = calibrated_graph(lists, data, 15, 1, 0.97, seed=42)
    assert tried == _tried(1, widest(lists.nlist))[: len(tried)] and tried[-1] == nprobe and nprobe > 1
    sample = np.random.default_rng(43).choice(4000, 600, replace=False)  # the check sample, drawn as the search does
    check = sample[300:]
    assert recall(ids[check], d2[check], exact_rows(data, check, 15)[1]) >= 0.97
    assert len(tried) > 1  # the narrower try before fell short on the check sample
    fewer_ids, fewer_d2 = probe_all(lists, data, 15, tried[-2])
    assert recall(fewer_ids[check], fewer_d2[check], exact_rows(data, check, 15)[1]) < 0.97


def test_no_graph_when_no_affordable_probe_reaches_the_recall():
    x = _clusters(2000, seed=9)
    data, lists = _lists(x)
    assert calibrated_graph(lists, data, 10, 2, 1.01, seed=42) is None
