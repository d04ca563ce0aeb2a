"""How many lists the inverted-file search probes: calibrated on a sample of rows against the exact answer, then
checked on a second sample; the search widens until both reach the wanted recall, and gives up (for the exact
search) when so wide a search would cost more than the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cleaner.graph.exact import exact_rows
from cleaner.graph.inverted_file import InvertedLists, probe, probe_all
from cleaner.graph.knn_rows import ComparedRows, cores, drop_self, recall

# Rows in each of the two samples (calibration, check) whose recall is measured against the exact answer.
RECALL_SAMPLE = 300
# The calibration sample aims this much higher, so that its sampling error does not leave the whole graph
# below the wanted recall.
CALIBRATION_MARGIN = 0.01
# Probing more than this share of the lists, with its k-means, calibration and gathering of the lists, costs
# about as much as the exact search, which is then used instead.
EXACT_SHARE = 0.4


def widest(nlist: int) -> int:
    """The most lists worth probing: beyond EXACT_SHARE of them the exact search costs no more."""
    return max(1, int(EXACT_SHARE * nlist))


def wider(nprobe: int, most: int) -> int:
    """The next number of lists to try: half as many again, and the most allowed before going past it."""
    step = int(math.ceil(nprobe * 1.5))
    return most if nprobe < most < step else step


def fewest(reaches: Callable[[int], bool], nprobe: int, most: int) -> int | None:
    """The first number of probed lists, widening from nprobe by half each step up to most, that reaches the
    recall; None if even most does not. (Not bisected back to the very fewest: that leaves the whole graph's
    recall nearer the wanted one than a sample of rows can vouch for.)"""
    while nprobe <= most:
        if reaches(nprobe):
            return nprobe
        nprobe = wider(nprobe, most)
    return None


def calibrate(
    lists: InvertedLists,
    data: ComparedRows,
    rows: np.ndarray,
    truth_d2: np.ndarray,
    k: int,
    nprobe: int,
    min_recall: float,
) -> int | None:
    """Probed lists, from nprobe up, whose graph reaches min_recall (and the margin) on the rows; None when
    that would take more than EXACT_SHARE of the lists."""

    def reaches(probed: int) -> bool:
        ids, d2 = drop_self(*probe(lists, data, rows, k + 1, probed), rows, k)
        return recall(ids, d2, truth_d2) >= min_recall + CALIBRATION_MARGIN

    import faiss

    # Hundreds of small kNN calls: on a busy machine a thread team per call mostly waits for its threads.
    faiss.omp_set_num_threads(1)
    try:
        return fewest(reaches, nprobe, widest(lists.nlist))
    finally:
        faiss.omp_set_num_threads(cores())


def calibrated_graph(
    lists: InvertedLists, data: ComparedRows, k: int, first_nprobe: int, min_recall: float, seed: int
) -> tuple[int, np.ndarray, np.ndarray] | None:
    """The inverted-file graph whose recall on both samples reaches min_recall: (nprobe, int32 ids, squared
    distances), -1 where a row's probed lists held fewer than k others; None when only probing more than
    EXACT_SHARE of the lists would reach it."""
    rng = np.random.default_rng(seed + 1)
    sample = rng.choice(data.n, size=min(data.n, 2 * RECALL_SAMPLE), replace=False)
    calibration_rows, check_rows = sample[: len(sample) // 2], sample[len(sample) // 2 :]
    calibration_d2 = exact_rows(data, calibration_rows, k)[1]
    check_d2 = None  # computed once the inverted file proves worth probing
    nprobe = first_nprobe
    while True:
        nprobe = calibrate(lists, data, calibration_rows, calibration_d2, k, nprobe, min_recall)
        if nprobe is None:
            return None
        ids, d2 = probe_all(lists, data, k, nprobe)
        if check_d2 is None:
            check_d2 = exact_rows(data, check_rows, k)[1]
        if recall(ids[check_rows], d2[check_rows], check_d2) >= min_recall:
            return nprobe, ids, d2
        nprobe = wider(nprobe, widest(lists.nlist))
