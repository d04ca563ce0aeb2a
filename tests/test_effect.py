"""The effect of the review: the audit's statistics, the caught rule, the probe before and after, the queue's yield."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, chisquare

from cleaner.decisions.effect import (
    BOOTSTRAP,
    MCNEMAR,
    WILSON,
    EffectError,
    audit_estimate,
    audit_rows,
    caught_by_review,
    effect_report,
    more_to_halve,
    probe_effect,
    queue_yield,
    wilson,
)
from cleaner.decisions.records import AuditVerdict, Decision, Decisions
from cleaner.io.dataset import dataset_from_arrays
from cleaner.io.dataset_types import DatasetError

REPO = Path(__file__).resolve().parents[1]
Z = 1.959963984540054


def closed_wilson(k: int, n: int) -> tuple[float, float]:
    """The textbook Wilson score interval, written out independently of the module."""
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


def blobs(n: int, seed: int, dims: int = 8, classes: int = 4, gap: float = 2.5):
    """Gaussian classes in a row along the first axis: each class's look-alike is the next one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, dims))
    x[:, 0] += gap * y
    return x.astype(np.float32), y


def dataset_of(x, codes, prefix="/img", names=("a", "b", "c", "d")):
    names = np.asarray(names)
    paths = np.array([f"{prefix}/{i:05d}.png" for i in range(len(codes))])
    return dataset_from_arrays(x, names[np.asarray(codes)], paths, "planted")


# ------------------------------------------------------------------ proportions


@pytest.mark.parametrize("k,n", [(0, 10), (1, 1), (3, 100), (17, 40), (50, 100), (99, 100), (100, 100), (7, 2000)])
def test_wilson_matches_scipy_and_the_closed_formula(k, n):
    found = wilson(k, n)
    ci = binomtest(k, n).proportion_ci(method="wilson")
    assert found.low == pytest.approx(ci.low, abs=1e-12) and found.high == pytest.approx(ci.high, abs=1e-12)
    low, high = closed_wilson(k, n)
    assert found.low == pytest.approx(max(low, 0.0), abs=1e-12) and found.high == pytest.approx(
        min(high, 1.0), abs=1e-12
    )
    assert (found.k, found.n, found.estimate, found.method) == (k, n, k / n, WILSON)


def test_wilson_of_nothing_is_unknown_and_bad_counts_are_refused():
    empty = wilson(0, 0)
    assert math.isnan(empty.estimate) and (empty.low, empty.high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(5, 3)


@pytest.mark.parametrize("k,n", [(5, 100), (50, 100), (0, 100), (12, 300), (1, 20)])
def test_more_to_halve_is_the_smallest_audit_that_halves_the_interval(k, n):
    more = more_to_halve(k, n)
    p = k / n
    width = lambda m: closed_wilson(p * m, m)[1] - closed_wilson(p * m, m)[0]  # noqa: E731 - the share held at p
    assert width(n + more) <= width(n) / 2 < width(n + more - 1)


def test_more_to_halve_is_about_three_times_the_audit_at_half_bad_and_less_near_zero():
    assert more_to_halve(50, 100) == math.ceil(3 * 100 + 3 * Z * Z)  # width z / sqrt(n + z^2) at p = 1/2
    assert more_to_halve(0, 100) == math.ceil(100 + Z * Z)  # width z^2 / (n + z^2) at p = 0
    assert more_to_halve(0, 0) is None


# ------------------------------------------------------------------ the audit sample


def test_audit_rows_extend_by_keeping_the_earlier_rows():
    first, more = audit_rows(10_000, 100, seed=3), audit_rows(10_000, 300, seed=3)
    assert np.array_equal(more[:100], first)
    assert np.unique(more).size == 300 and more.min() >= 0 and more.max() < 10_000
    assert np.array_equal(audit_rows(10_000, 100, seed=3), first)
    assert not np.array_equal(audit_rows(10_000, 100, seed=4), first)
    assert audit_rows(50, 80).size == 50 and np.array_equal(np.sort(audit_rows(50, 80)), np.arange(50))


def test_audit_rows_are_uniform_over_the_rows():
    n, size, seeds = 40, 8, 4000
    counts = np.bincount(np.concatenate([audit_rows(n, size, seed=s) for s in range(seeds)]), minlength=n)
    assert counts.sum() == size * seeds
    assert chisquare(counts).pvalue > 1e-3  # each row is picked size/n of the time
    # and the first pick too: a prefix of a uniform permutation, not a sorted draw
    firsts = np.bincount([audit_rows(n, size, seed=s)[0] for s in range(seeds)], minlength=n)
    assert chisquare(firsts).pvalue > 1e-3


# ------------------------------------------------------------------ the caught rule


def test_caught_rule_on_a_toy_queue():
    order = np.array([5, 3, 9, 1, 7])
    audited = np.array([9, 7, 2, 5])
    # the reviewer decided rows 3 and 1 from the queue: positions 1 and 3; everything up to position 3 was seen
    assert caught_by_review(order, np.array([3, 1]), audited).tolist() == [True, False, False, True]
    # a later selection decision covers row 2, which is not in the queue at all
    decided = np.array([False, False, True, False])
    assert caught_by_review(order, np.array([3, 1]), audited, decided).tolist() == [True, False, True, True]
    # a queue decision on a row the static order does not hold moves nothing
    assert caught_by_review(order, np.array([8]), audited).tolist() == [False] * 4
    assert caught_by_review(order, np.array([], dtype=int), audited).tolist() == [False] * 4
    assert caught_by_review(order, np.array([7]), audited).tolist() == [True, True, False, True]
    # without the scan's order only the later decisions count
    assert caught_by_review(None, np.array([3, 1]), audited, decided).tolist() == decided.tolist()


def test_audit_estimate_against_a_hand_count():
    bad = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    caught = np.array([1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    est = audit_estimate(1000, bad, caught)
    # by hand: 5 bad of 20; caught among them: rows 0, 4, 13 -> 3 of 5; bad and not caught: rows 1, 8 -> 2 of 20
    assert (est.audited, est.bad.k, est.recall.k, est.recall.n, est.left.k) == (20, 5, 3, 5, 2)
    assert est.bad_left[0] == pytest.approx(1000 * 2 / 20)
    low, high = closed_wilson(2, 20)
    assert est.bad_left[1:] == pytest.approx((1000 * low, 1000 * high))
    assert est.bad_at_start[0] == pytest.approx(250.0)
    low, high = closed_wilson(5, 20)
    assert est.bad_at_start[1:] == pytest.approx((1000 * low, 1000 * high))
    assert est.recall.estimate == pytest.approx(0.6)


# ------------------------------------------------------------------ the probe


def test_probe_gains_when_planted_look_alike_flips_are_removed():
    x, y = blobs(3000, seed=0)
    x_val, y_val = blobs(2000, seed=100)
    flip = np.random.default_rng(0).random(y.size) < 0.2
    noisy = np.where(flip, np.where(y == 3, 2, y + 1), y)  # each to its look-alike neighbour
    effect = probe_effect(x, noisy, ~flip, noisy, x_val, y_val, ["a", "b", "c", "d"], seed=0)
    assert effect.accuracy_after > effect.accuracy_before
    assert 0 < effect.gain_low <= effect.gain <= effect.gain_high
    assert effect.p_value < 0.01
    assert effect.p_value == pytest.approx(binomtest(effect.better, effect.better + effect.worse).pvalue)
    assert effect.gain == pytest.approx((effect.better - effect.worse) / 2000)
    assert (effect.trusted_rows, effect.training_rows_before, effect.training_rows_after) == (2000, 3000, (~flip).sum())
    assert [c.n for c in effect.per_class] == np.bincount(y_val).tolist()
    assert sum(c.n * c.after for c in effect.per_class) == pytest.approx(2000 * effect.accuracy_after)
    assert (effect.interval_method, effect.test_method) == (BOOTSTRAP, MCNEMAR)
    again = probe_effect(x, noisy, ~flip, noisy, x_val, y_val, ["a", "b", "c", "d"], seed=0)
    assert (again.gain_low, again.gain_high) == (effect.gain_low, effect.gain_high)


def test_probe_with_unchanged_labels_gains_nothing():
    x, y = blobs(600, seed=1)
    x_val, y_val = blobs(300, seed=2)
    effect = probe_effect(x, y, np.ones(y.size, bool), y, x_val, y_val, ["a", "b", "c", "d"])
    assert effect.gain == 0 and effect.better == effect.worse == 0 and effect.p_value == 1.0
    assert effect.gain_low == effect.gain_high == 0


def test_probe_refuses_training_rows_of_one_class():
    x, y = blobs(200, seed=1)
    keep = y == 2
    with pytest.raises(EffectError, match="only 'c'.*at least two classes"):
        probe_effect(x, y, keep, y, x[:10], y[:10], ["a", "b", "c", "d"])


# ------------------------------------------------------------------ the queue's yield


def test_queue_yield_reads_the_last_fifty_queue_decisions():
    d = Decisions()
    for i in range(60):
        bad = i < 10 or i % 10 == 0  # the first ten, then one in ten: 5 of the last 50
        d.put(f"/q/{i}", Decision("exclude" if bad else "keep", source="queue"))
        d.put(f"/s/{i}", Decision("exclude", source="selection"))  # not from the queue: never counted
    found = queue_yield(d, base_rate=0.25)
    assert (found.found.k, found.found.n) == (5, 50)
    assert found.found.high == pytest.approx(closed_wilson(5, 50)[1])
    assert found.run_dry is True  # the upper end, about 0.21, is below a quarter
    assert queue_yield(d, base_rate=0.2).run_dry is False
    assert queue_yield(d, base_rate=None).run_dry is None
    assert queue_yield(Decisions(), base_rate=0.2) is None


# ------------------------------------------------------------------ effect_report and its errors


def _audited_dataset(n=400, seed=0):
    x, y = blobs(n, seed)
    dataset = dataset_of(x, y)
    d = Decisions()
    rows = audit_rows(n, 60, seed=0)
    names = dataset.class_names
    for i, row in enumerate(rows.tolist()):
        path = str(dataset.image_paths[row])
        given = names[int(dataset.label_codes[row])]
        verdict = (
            AuditVerdict("exclude")
            if i % 10 == 0
            else (
                AuditVerdict("relabel", names[(int(dataset.label_codes[row]) + 1) % 4])
                if i % 10 == 1
                else AuditVerdict("keep", given)
            )
        )
        d.set_audit(path, verdict)
        d.put(
            path, Decision(verdict.kind, new_label=verdict.label if verdict.kind == "relabel" else "", source="audit")
        )
    return dataset, d, rows


def test_effect_report_from_the_audit():
    dataset, d, rows = _audited_dataset()
    # audited image 0 (excluded by the audit) was later excluded from a selection too: caught by rule (a);
    # audited image 1 (relabelled by the audit) keeps only the audit's decision: not caught
    d.put(str(dataset.image_paths[rows[10]]), Decision("exclude", source="selection"))
    report = effect_report(dataset, d, None)
    a = report.audit
    assert (a.audited, a.bad.k, a.recall.n, a.recall.k) == (60, 12, 12, 1)
    assert report.audit_is_seeded_prefix is True
    assert report.trusted_source == "audit" and report.probe.trusted_rows == 54  # the 6 excluded have no label
    assert report.probe.training_rows_before == 400 - 60
    assert a.bad_left[0] == pytest.approx(400 * 11 / 60)
    out = report.to_json()
    json.dumps(out, allow_nan=False)
    for key in (
        "n_rows",
        "trusted_rows",
        "trusted_source",
        "probe_accuracy_before",
        "probe_accuracy_after",
        "probe_gain",
        "probe_gain_ci",
        "audited",
        "bad_rate",
        "bad_rate_ci",
        "review_recall",
        "bad_left",
        "bad_left_ci",
        "probe_gain_method",
        "proportion_method",
        "bad_left_method",
    ):
        assert key in out, key
    assert out["bad_rate"] == pytest.approx(12 / 60) and out["n_rows"] == 400
    assert "queue_yield" not in out  # no decision came from the queue


def test_effect_report_notices_an_audit_that_is_not_the_seeded_sample():
    dataset, d, _ = _audited_dataset()
    d.set_audit(str(dataset.image_paths[audit_rows(400, 61)[-1]]), AuditVerdict("keep", "a"))
    assert effect_report(dataset, d).audit_is_seeded_prefix is True
    other = next(r for r in range(400) if r not in set(audit_rows(400, 62).tolist()))
    d.set_audit(str(dataset.image_paths[other]), AuditVerdict("keep", "a"))
    assert effect_report(dataset, d).audit_is_seeded_prefix is False


def test_effect_report_with_a_trusted_file_holds_its_paths_out_of_training():
    x, y = blobs(300, 0, gap=6.0)
    dataset = dataset_of(x, y)
    rows = np.flatnonzero(y >= 1)[:40]  # classes b, c, d only: codes 0-2 in the file, 1-3 in the dataset
    trusted = dataset_from_arrays(x[rows], np.array(["a", "b", "c", "d"])[y[rows]], dataset.image_paths[rows], "val")
    report = effect_report(dataset, Decisions(), None, trusted=trusted)
    assert report.trusted_source == "file" and report.audit is None
    assert report.probe.trusted_rows == 40 and report.probe.training_rows_before == 260
    assert [c.name for c in report.probe.per_class] == ["b", "c", "d"]
    assert report.probe.accuracy_before > 0.9  # matched by name: codes taken as they are would score about 0
    assert report.to_json()["trusted_source"] == "file" and "bad_rate" not in report.to_json()


def test_errors_are_worded_for_people():
    x, y = blobs(100, 0)
    dataset = dataset_of(x, y)
    d = Decisions()
    d.put("/somewhere/else.png", Decision("exclude"))
    with pytest.raises(DatasetError, match="this decisions file is for another dataset"):
        effect_report(dataset, d)
    with pytest.raises(EffectError, match="audit some images or give --trusted"):
        effect_report(dataset, Decisions())
    narrow = dataset_of(x[:, :5].copy(), y)
    with pytest.raises(EffectError, match="5 values per image.*8"):
        effect_report(dataset, Decisions(), trusted=narrow)
    unknown = dataset_of(x, y, names=("a", "b", "c", "zebra"))
    with pytest.raises(EffectError, match="'zebra'"):
        effect_report(dataset, Decisions(), trusted=unknown)
    excluded = Decisions()
    for row in audit_rows(100, 5).tolist():
        excluded.set_audit(str(dataset.image_paths[row]), AuditVerdict("exclude"))
    with pytest.raises(EffectError, match="No trusted rows are left"):
        effect_report(dataset, excluded)


def test_the_module_imports_neither_streamlit_nor_sklearn():
    code = (
        "import sys, cleaner.decisions.effect; "
        "print(sorted(m for m in ('streamlit', 'sklearn', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
