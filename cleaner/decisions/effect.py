"""What the review changed: the random audit's estimates, a linear probe trained before and after cleaning, and
whether the review queue has run dry.

The audit is a uniform random sample of the dataset's rows: a prefix of one seeded permutation, so extending it keeps
the rows already judged. On a uniform sample every share measured is an unbiased estimate of the same share over the
whole dataset, and its binomial interval (Wilson score) holds for it; scaled by the number of rows N it bounds a count.
The audit's verdicts live in `Decisions.audit`, apart from the decisions, so the review's other work can be judged
against them.

numpy only at import: scikit-learn and scipy are imported by the functions that fit the probe or test its gain.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cleaner.decisions.records import Decisions, label_codes_after, rows_of
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.issues.ranking import review_queue
from cleaner.issues.suspects import ScanResult

AUDIT_SIZE = 100  # the first audit; each extension adds as many again
QUEUE_WINDOW = 50  # the queue's yield is measured on its last this many decisions
BOOTSTRAP_RESAMPLES = 2000
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile

WILSON = "Wilson score 95%"
BOOTSTRAP = f"paired bootstrap 95% percentile interval ({BOOTSTRAP_RESAMPLES} resamples of the trusted rows)"
MCNEMAR = "McNemar exact (two-sided binomial test on the discordant pairs)"
BAD_LEFT = (
    "N x the audited share that is bad and not caught by the rest of the review (an unbiased estimate on a "
    "uniform sample); its Wilson score 95% interval x N"
)
RUN_DRY = (
    "run dry when the upper end of the queue's yield (Wilson 95%) is at or below the audit's estimated bad "
    "rate: the queue then finds bad images no more often than picking images at random would"
)


class EffectError(DatasetError):
    """The decisions, the audit or the trusted file cannot give the effect of the review; worded for the user."""


@dataclass(frozen=True)
class Proportion:
    """k of n, with a 95% interval; estimate is NaN (and the interval 0..1) when n is 0."""

    k: int
    n: int
    estimate: float
    low: float
    high: float
    method: str = WILSON

    @property
    def width(self) -> float:
        return self.high - self.low

    def scaled(self, total: int) -> tuple[float, float, float]:
        """(estimate, low, high) x total: the count over a population the sample was drawn uniformly from."""
        return self.estimate * total, self.low * total, self.high * total


def wilson(k: int, n: int, z: float = Z95) -> Proportion:
    """The Wilson score interval of k successes in n trials (good coverage even for small n and shares near 0)."""
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"wilson() needs 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Proportion(0, 0, math.nan, 0.0, 1.0)
    low, high = _wilson_bounds(k / n, n, z)
    return Proportion(int(k), int(n), k / n, low, high)


def _wilson_bounds(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # the clip only removes float dust: the true bounds lie in [0, 1]
    return max(0.0, centre - half), min(1.0, centre + half)


def more_to_halve(k: int, n: int, z: float = Z95) -> int | None:
    """How many more samples would halve the Wilson interval's width, if the share stayed at k / n (None for n = 0).

    The width shrinks about as 1/sqrt(n), so about 3n more; computed from the interval itself, which matters for
    shares near 0 (where only about n + z^2 more are needed).
    """
    if n <= 0:
        return None
    p = k / n

    def width(m: float) -> float:
        low, high = _wilson_bounds(p, m, z)
        return high - low

    target = width(n) / 2
    lo, hi = n, 2 * n
    while width(hi) > target:  # the width falls monotonically in the sample size at a fixed share
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if width(mid) <= target else (mid, hi)
    return hi - n


def audit_rows(n_rows: int, size: int, seed: int = 0) -> np.ndarray:
    """The first `size` rows of one seeded uniform permutation of the dataset: a bigger size keeps the smaller's rows."""
    if n_rows < 0 or size < 0:
        raise ValueError(f"audit_rows() needs n_rows >= 0 and size >= 0, got {n_rows} and {size}")
    return _audit_order(n_rows, seed)[: min(size, n_rows)].copy()


@functools.lru_cache(maxsize=4)
def _audit_order(n_rows: int, seed: int) -> np.ndarray:
    # The audit panel asks on every rerun: the permutation of a large dataset is drawn once, not each time.
    order = np.random.default_rng(seed).permutation(n_rows).astype(np.int64)
    order.setflags(write=False)
    return order


def caught_by_review(
    queue_order: np.ndarray | None,
    queue_rows: np.ndarray,
    audited_rows: np.ndarray,
    decided_bad: np.ndarray | None = None,
) -> np.ndarray:
    """[len(audited_rows)] bool: which audited rows the review other than the audit covered.

    A row is caught when (a) `decided_bad` says a later exclude or relabel, not the audit's, covers it, or (b) it sits
    in `queue_order` (the scan's static review order) at or above the deepest position any of `queue_rows` (the rows
    decided from the queue) reached: the reviewer worked past it. Queue decisions on rows outside the order move
    nothing; with `queue_order` None only (a) applies.
    """
    audited = np.asarray(audited_rows, dtype=np.int64).reshape(-1)
    caught = np.zeros(audited.size, dtype=bool) if decided_bad is None else np.asarray(decided_bad, dtype=bool).copy()
    if caught.shape != audited.shape:
        raise ValueError(f"decided_bad has {caught.size} values for {audited.size} audited rows")
    if queue_order is None:
        return caught
    order = np.asarray(queue_order, dtype=np.int64).reshape(-1)
    decided = np.asarray(queue_rows, dtype=np.int64).reshape(-1)
    size = 1 + max([int(a.max()) for a in (order, decided, audited) if a.size] or [0])
    position = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)  # not in the order: never reached
    position[order] = np.arange(order.size)
    reached = position[decided]
    reached = reached[reached < order.size]
    deepest = int(reached.max()) if reached.size else -1
    return caught | (position[audited] <= deepest)


@dataclass(frozen=True)
class AuditEstimate:
    """What the audit says about the whole dataset (N rows) and about the review's other work."""

    n_rows: int
    bad: Proportion  # audited rows with verdict exclude or relabel, of all audited rows
    recall: Proportion  # audited bad rows the rest of the review caught, of the audited bad rows
    left: Proportion  # audited rows bad and not caught, of all audited rows
    more_to_halve: int | None  # more audited images that would halve the bad rate's interval

    @property
    def audited(self) -> int:
        return self.bad.n

    @property
    def bad_at_start(self) -> tuple[float, float, float]:
        """(estimate, low, high) bad images in the dataset before any decision: N x the bad rate and its interval."""
        return self.bad.scaled(self.n_rows)

    @property
    def bad_left(self) -> tuple[float, float, float]:
        """(estimate, low, high) bad images the review has not caught: N x `left`.

        `left` is itself the share of a uniform sample, so N x it is unbiased and its Wilson interval x N bounds the
        count (a ratio of the bad rate and the recall would multiply two errors and be biased).
        """
        return self.left.scaled(self.n_rows)


def audit_estimate(n_rows: int, bad: np.ndarray, caught: np.ndarray) -> AuditEstimate:
    """The audit's estimates from one bool per audited row: whether it is bad, whether the rest of the review caught it."""
    bad = np.asarray(bad, dtype=bool).reshape(-1)
    caught = np.asarray(caught, dtype=bool).reshape(-1)
    if bad.shape != caught.shape:
        raise ValueError(f"bad has {bad.size} values, caught {caught.size}")
    n, k = int(bad.size), int(bad.sum())
    return AuditEstimate(
        n_rows=int(n_rows),
        bad=wilson(k, n),
        recall=wilson(int((bad & caught).sum()), k),
        left=wilson(int((bad & ~caught).sum()), n),
        more_to_halve=more_to_halve(k, n),
    )


@dataclass(frozen=True)
class ClassAccuracy:
    """The probe's accuracy on one class's trusted rows."""

    name: str
    n: int
    before: float
    after: float


@dataclass(frozen=True)
class ProbeEffect:
    """A linear probe trained on the original labels and on the cleaned ones, both scored on the same trusted rows."""

    trusted_rows: int
    training_rows_before: int
    training_rows_after: int
    accuracy_before: float
    accuracy_after: float
    gain_low: float
    gain_high: float
    better: int  # trusted rows wrong before and right after
    worse: int  # trusted rows right before and wrong after
    p_value: float  # McNemar's exact test on better vs worse
    per_class: tuple[ClassAccuracy, ...]
    interval_method: str = BOOTSTRAP
    test_method: str = MCNEMAR

    @property
    def gain(self) -> float:
        return self.accuracy_after - self.accuracy_before


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread of the training rows, as probe.py standardises: the same for both fits and the trusted rows."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)


def _fit_predict(
    x: np.ndarray, y: np.ndarray, x_eval: np.ndarray, which: str, class_names: Sequence[str]
) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from cleaner.issues.probe import PROBE_MAX_ITER, PROBE_TOL  # the scan's probe settings, with its sklearn side

    present = np.unique(y)
    if present.size < 2:
        held = f"only {class_names[int(present[0])]!r}" if present.size else "no rows"
        raise EffectError(f"The training rows {which} hold {held}: the linear probe needs at least two classes.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the same loose settings as the scan's probe
        model = LogisticRegression(tol=PROBE_TOL, max_iter=PROBE_MAX_ITER).fit(x, y)
    return model.predict(x_eval)


def probe_effect(
    embeddings: np.ndarray,
    labels_before: np.ndarray,
    keep_after: np.ndarray,
    labels_after: np.ndarray,
    eval_embeddings: np.ndarray,
    eval_labels: np.ndarray,
    class_names: Sequence[str],
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> ProbeEffect:
    """Fit the probe on the training rows' original labels and on the kept rows' cleaned labels; score both on the
    trusted rows (never trained on), with a paired bootstrap interval on the gain and McNemar's exact p-value.

    Arrays: embeddings [M, D] and labels_before, keep_after (bool), labels_after [M] are the training rows;
    eval_embeddings [E, D] and eval_labels [E] the trusted rows; labels are codes into class_names.
    """
    from scipy.stats import binomtest

    x = np.asarray(embeddings, dtype=np.float32)
    keep = np.asarray(keep_after, dtype=bool).reshape(-1)
    y_eval = np.asarray(eval_labels, dtype=np.int64).reshape(-1)
    if not y_eval.size:
        raise EffectError("No trusted rows are left to measure the probe on.")
    mean, std = _standardiser(x)
    xs = ((x - mean) / std).astype(np.float32)
    xe = ((np.asarray(eval_embeddings, dtype=np.float32) - mean) / std).astype(np.float32)
    right_before = _fit_predict(xs, np.asarray(labels_before), xe, "before cleaning", class_names) == y_eval
    right_after = _fit_predict(xs[keep], np.asarray(labels_after)[keep], xe, "after cleaning", class_names) == y_eval
    better = int((right_after & ~right_before).sum())
    worse = int((right_before & ~right_after).sum())
    e = y_eval.size
    # Resampling trusted rows with replacement only moves the counts of (worse, better, same) rows: drawing those
    # counts from a multinomial is the same paired bootstrap in O(resamples) instead of O(resamples x E).
    counts = np.random.default_rng(seed).multinomial(
        e, [worse / e, better / e, (e - worse - better) / e], size=resamples
    )
    gains = (counts[:, 1] - counts[:, 0]) / e
    low, high = np.percentile(gains, [2.5, 97.5])
    p_value = binomtest(better, better + worse, 0.5).pvalue if better + worse else 1.0
    per_class = tuple(
        ClassAccuracy(
            str(class_names[int(c)]),
            int((y_eval == c).sum()),
            float(right_before[y_eval == c].mean()),
            float(right_after[y_eval == c].mean()),
        )
        for c in np.unique(y_eval)
    )
    return ProbeEffect(
        trusted_rows=int(e),
        training_rows_before=int(x.shape[0]),
        training_rows_after=int(keep.sum()),
        accuracy_before=float(right_before.mean()),
        accuracy_after=float(right_after.mean()),
        gain_low=float(low),
        gain_high=float(high),
        better=better,
        worse=worse,
        p_value=float(p_value),
        per_class=per_class,
    )


@dataclass(frozen=True)
class QueueYield:
    """The share of the last queue decisions that found a bad image, against the audit's base rate."""

    found: Proportion  # bad (exclude or relabel) of the last QUEUE_WINDOW decisions made from the queue
    base_rate: float | None  # the audit's estimated bad rate; None without an audit
    run_dry: bool | None  # None without an audit to compare with
    rule: str = RUN_DRY


def queue_yield(decisions: Decisions, base_rate: float | None, window: int = QUEUE_WINDOW) -> QueueYield | None:
    """The yield of the last `window` queue decisions (in the order made) and whether the queue has run dry."""
    recent = [d for d in decisions.by_path.values() if d.source == "queue"][-window:]
    if not recent:
        return None
    found = wilson(sum(d.kind != "keep" for d in recent), len(recent))
    known = base_rate is not None and not math.isnan(base_rate)
    return QueueYield(found, base_rate if known else None, bool(found.high <= base_rate) if known else None)


@dataclass(frozen=True)
class EffectReport:
    """Everything `effect_report` measures; `to_json` gives it as plain data."""

    n_rows: int
    trusted_source: str  # "audit" or "file"
    probe: ProbeEffect
    audit: AuditEstimate | None
    queue: QueueYield | None
    audit_is_seeded_prefix: bool | None  # whether the audited rows are audit_rows(N, audited, seed): None, no audit
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        p = self.probe
        out: dict[str, Any] = {
            "n_rows": self.n_rows,
            "seed": self.seed,
            "trusted_source": self.trusted_source,
            "trusted_rows": p.trusted_rows,
            "training_rows_before": p.training_rows_before,
            "training_rows_after": p.training_rows_after,
            "probe_accuracy_before": p.accuracy_before,
            "probe_accuracy_after": p.accuracy_after,
            "probe_gain": p.gain,
            "probe_gain_ci": [p.gain_low, p.gain_high],
            "probe_gain_method": p.interval_method,
            "probe_better": p.better,
            "probe_worse": p.worse,
            "probe_mcnemar_p": p.p_value,
            "probe_test_method": p.test_method,
            "probe_per_class": [{"class": c.name, "n": c.n, "before": c.before, "after": c.after} for c in p.per_class],
            "proportion_method": WILSON,
        }
        if self.audit is not None:
            a = self.audit
            start, left = a.bad_at_start, a.bad_left
            out.update(
                {
                    "audited": a.audited,
                    "audited_bad": a.bad.k,
                    "bad_rate": _number(a.bad.estimate),
                    "bad_rate_ci": [a.bad.low, a.bad.high],
                    "bad_at_start": _number(start[0]),
                    "bad_at_start_ci": [start[1], start[2]],
                    "caught": a.recall.k,
                    "review_recall": _number(a.recall.estimate),
                    "review_recall_ci": [a.recall.low, a.recall.high],
                    "bad_left": _number(left[0]),
                    "bad_left_ci": [left[1], left[2]],
                    "bad_left_method": BAD_LEFT,
                    "audit_more_to_halve_interval": a.more_to_halve,
                    "audit_is_seeded_prefix": self.audit_is_seeded_prefix,
                }
            )
        if self.queue is not None:
            q = self.queue
            out.update(
                {
                    "queue_window": q.found.n,
                    "queue_bad": q.found.k,
                    "queue_yield": _number(q.found.estimate),
                    "queue_yield_ci": [q.found.low, q.found.high],
                    "base_rate": q.base_rate,
                    "run_dry": q.run_dry,
                    "run_dry_rule": q.rule,
                }
            )
        return out


def _number(value: float) -> float | None:
    """NaN as None: JSON has no NaN."""
    return None if math.isnan(value) else float(value)


def _check_decisions_fit(dataset: Dataset, decisions: Decisions) -> None:
    paths = set(decisions.by_path) | set(decisions.audit)
    if paths and not rows_of(dataset, paths).size:
        raise EffectError(
            f"None of the {len(paths):,} image paths in the decisions file is in this dataset: "
            "this decisions file is for another dataset."
        )


def _trusted_codes(dataset: Dataset, trusted: Dataset) -> np.ndarray:
    """The trusted file's labels as the dataset's class codes, matched by class name."""
    if trusted.dims != dataset.dims:
        raise EffectError(
            f"The trusted file's embeddings have {trusted.dims} values per image, the dataset's "
            f"{dataset.dims}: both must come from the same model."
        )
    index = {name: i for i, name in enumerate(dataset.class_names)}
    unknown = [name for name in trusted.class_names if name not in index]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown[:5]) + (", …" if len(unknown) > 5 else "")
        raise EffectError(
            f"The trusted file has {len(unknown)} class(es) the dataset does not: {listed}. "
            "Its labels must be the dataset's class names."
        )
    mapping = np.array([index[name] for name in trusted.class_names], dtype=np.int64)
    return mapping[trusted.label_codes]


def static_review_order(result: ScanResult) -> np.ndarray:
    """The scan's review order (worst score first, flagged only): the order the caught rule (b) measures depth in."""
    return review_queue(*result.all(), by="worst", flagged_only=True)


def audit_summary(dataset: Dataset, decisions: Decisions, queue_order: np.ndarray | None) -> AuditEstimate | None:
    """The audit's estimates from the decisions as they stand (None before any audit verdict): cheap enough for
    every rerun of the page, as it reads only the audited rows and the queue's decisions."""
    audited = rows_of(dataset, list(decisions.audit))
    if not audited.size:
        return None
    paths = dataset.image_paths[audited].tolist()
    bad = np.array([decisions.audit[p].bad for p in paths], dtype=bool)
    later = [decisions.by_path.get(p) for p in paths]
    decided_bad = np.array([d is not None and d.kind != "keep" and d.source != "audit" for d in later], dtype=bool)
    queue_rows = rows_of(dataset, [p for p, d in decisions.by_path.items() if d.source == "queue"])
    caught = caught_by_review(queue_order, queue_rows, audited, decided_bad)
    return audit_estimate(dataset.n, bad, caught)


def effect_report(
    dataset: Dataset,
    decisions: Decisions,
    result: ScanResult | None = None,
    trusted: Dataset | None = None,
    seed: int = 0,
) -> EffectReport:
    """The audit's estimates, the probe before and after cleaning, and the queue's yield, from the decisions.

    The probe is scored on trusted rows: the audited rows with a verified label (kept: their label; relabelled: the
    verdict's), all audited rows held out of both fits; or, given `trusted`, every row of that file (dataset rows with
    the same image path are held out of both fits). `result` (the scan) gives the static review order the caught rule
    (b) reads; None applies rule (a) only. Raises EffectError with a message for the user.
    """
    _check_decisions_fit(dataset, decisions)
    audited = rows_of(dataset, list(decisions.audit))
    if not audited.size and trusted is None:
        raise EffectError(
            "No image of this dataset has an audit verdict: audit some images or give --trusted "
            "(a validation NPZ with verified labels)."
        )
    verdicts = [decisions.audit[p] for p in dataset.image_paths[audited].tolist()]
    order = None if result is None else static_review_order(result)
    estimate = audit_summary(dataset, decisions, order)
    prefix = None
    if audited.size:
        prefix = bool(np.array_equal(np.sort(audit_rows(dataset.n, audited.size, seed)), audited))

    train = np.ones(dataset.n, dtype=bool)
    if trusted is None:
        source = "audit"
        index = {name: i for i, name in enumerate(dataset.class_names)}
        # an excluded image has no valid label; a verdict naming a class the dataset lacks cannot be predicted
        labelled = [
            (row, index[v.label])
            for row, v in zip(audited.tolist(), verdicts, strict=True)
            if v.kind != "exclude" and v.label in index
        ]
        eval_rows = np.array([r for r, _ in labelled], dtype=np.int64)
        eval_labels = np.array([c for _, c in labelled], dtype=np.int64)
        eval_x = dataset.embeddings[eval_rows]
        train[audited] = False
        if not eval_rows.size:
            raise EffectError(
                f"No trusted rows are left: all {audited.size:,} audited images were excluded. Audit "
                "more images or give --trusted (a validation NPZ with verified labels)."
            )
    else:
        source = "file"
        eval_labels = _trusted_codes(dataset, trusted)
        eval_x = trusted.embeddings
        train[rows_of(dataset, np.unique(trusted.image_paths).tolist())] = False
    if not train.any():
        raise EffectError("No training rows are left: every image of the dataset is also a trusted row.")
    keep = train.copy()
    keep[rows_of(dataset, decisions.paths("exclude"))] = False
    probe = probe_effect(
        dataset.embeddings[train],
        dataset.label_codes[train],
        keep[train],
        label_codes_after(dataset, decisions)[train],
        eval_x,
        eval_labels,
        dataset.class_names,
        seed=seed,
    )
    found = queue_yield(decisions, estimate.bad.estimate if estimate is not None else None)
    return EffectReport(dataset.n, source, probe, estimate, found, prefix, seed)
