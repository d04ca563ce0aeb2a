"""`python -m cleaner effect`: what the review changed, from the dataset and its decisions CSV, without the app.

Estimates from the random audit (bad images at the start, the review's recall, bad images left), a linear probe
trained before and after cleaning and scored on trusted rows, and whether the review queue has run dry.
Imports scikit-learn and scipy (for the probe and its test).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from cleaner.decisions.effect import AUDIT_SIZE, QUEUE_WINDOW, EffectReport, effect_report
from cleaner.decisions.records import Decisions, DecisionsError, parse_decisions
from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.issues.suspects import scan
from cleaner.server.limits import MAX_LIST_BYTES

PROG = "cleaner effect"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cleaner effect",
        description=(
            "What the review changed: from the random audit, the share of bad images at the start, how many the "
            "review caught and how many are left; a linear probe on the embeddings trained on the original and on "
            "the cleaned labels, scored on trusted rows; and whether the review queue still finds bad images more "
            "often than picking at random."
        ),
        epilog=(
            f"The audit is a uniform random sample (the app's Audit, {AUDIT_SIZE} images at first); its verdicts are "
            "the audit_verdict and audit_label columns of the decisions CSV. Trusted rows: the audited images with a "
            "verified label (held out of both trainings), or every row of --trusted. "
            "Exit codes: 0 done, 1 the JSON could not be written, 2 bad arguments or unusable files."
        ),
    )
    parser.add_argument("npz", metavar="DATA.npz", help="NPZ with 'embeddings', 'labels' and 'image_paths'")
    parser.add_argument(
        "--decisions",
        required=True,
        metavar="DECISIONS.csv",
        help="the decisions CSV the app downloads (with the audit's verdicts)",
    )
    parser.add_argument(
        "--trusted",
        metavar="VAL.npz",
        help="a validation NPZ with verified labels, same format and embedding model: the probe is "
        "scored on it instead of on the audited images",
    )
    parser.add_argument("--json", metavar="OUT.json", help="also write every figure to this JSON file")
    parser.add_argument(
        "--k",
        type=int,
        default=20,
        help="nearest neighbours per image for the scan that gives the review order (default 20, as `cleaner scan`)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the audit sample (as the app's) and of the bootstrap (default 0)"
    )
    return parser


def _error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _read_decisions(path: str) -> Decisions:
    """The decisions CSV as Decisions; DatasetError with a message for the user."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_LIST_BYTES + 1)
    except OSError as exc:
        raise DatasetError(f"could not read it: {exc.strerror or exc}") from exc
    try:
        parsed = parse_decisions(data)
    except DecisionsError as exc:
        raise DatasetError(str(exc)) from exc
    return parsed.as_decisions()


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def _count(x: float) -> str:
    return f"{x:,.0f}"


def describe(report: EffectReport) -> list[str]:
    """The report in plain words, one line per finding."""
    lines = [f"{report.n_rows:,} images"]
    a = report.audit
    if a is not None:
        start, left = a.bad_at_start, a.bad_left
        line = (
            f"audit of {a.audited:,} random images: about {_percent(a.bad.estimate)} bad (95% Wilson interval "
            f"{_percent(a.bad.low)}-{_percent(a.bad.high)}), about {_count(start[0])} images "
            f"({_count(start[1])}-{_count(start[2])}) at the start"
        )
        if a.recall.n:
            line += (
                f"; the review caught about {100 * a.recall.estimate:.0f}% of them ({a.recall.k} of {a.recall.n} "
                f"audited bad images; {100 * a.recall.low:.0f}-{100 * a.recall.high:.0f}%)"
            )
        else:
            line += "; no audited image is bad, so the review's recall cannot be measured yet"
        line += f"; about {_count(left[0])} left ({_count(left[1])}-{_count(left[2])})"
        lines.append(line)
        if a.more_to_halve is not None:
            lines.append(f"auditing about {a.more_to_halve:,} more images would halve the interval")
        if report.audit_is_seeded_prefix is False:
            lines.append(
                f"warning: the audited images are not the first {a.audited:,} of the seeded sample "
                f"(seed {report.seed}); the estimates assume they are a uniform random sample"
            )
    p = report.probe
    pv = f"{p.p_value:.3f}" if p.p_value >= 0.001 else f"{p.p_value:.1e}"
    lines.append(
        f"probe accuracy on {p.trusted_rows:,} trusted rows ({report.trusted_source}): "
        f"{p.accuracy_before:.3f} before, {p.accuracy_after:.3f} after, gain {p.gain:+.3f} "
        f"(paired bootstrap 95%: {p.gain_low:+.3f} to {p.gain_high:+.3f}; McNemar p={pv}); trained on "
        f"{p.training_rows_before:,} rows before, {p.training_rows_after:,} after"
    )
    for c in p.per_class:
        lines.append(f"  {c.name}: {c.before:.3f} -> {c.after:.3f} on {c.n:,} rows")
    q = report.queue
    if q is None:
        lines.append("queue: no decision was made from the review queue")
    else:
        line = (
            f"queue: {q.found.k} of the last {q.found.n} queue decisions found a bad image "
            f"({_percent(q.found.estimate)}, 95% Wilson {_percent(q.found.low)}-{_percent(q.found.high)})"
        )
        if q.run_dry is None:
            line += "; audit some images to compare it with the dataset's base rate"
        elif q.run_dry:
            line += (
                f", no more than the audit's base rate {_percent(q.base_rate or 0.0)}: the queue has run dry, "
                "stop reviewing it"
            )
        else:
            line += f", above the audit's base rate {_percent(q.base_rate or 0.0)}: the queue still pays"
        if q.found.n < QUEUE_WINDOW:
            line += f" (fewer than {QUEUE_WINDOW} decisions so far)"
        lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the effect report; return the exit code."""
    args = _parser().parse_args(argv)
    if args.k < 1:
        return _error("--k must be at least 1")
    try:
        dataset = load_npz(args.npz)
    except DatasetError as exc:
        return _error(f"{args.npz}: {exc}")
    try:
        decisions = _read_decisions(args.decisions)
    except DatasetError as exc:
        return _error(f"{args.decisions}: {exc}")
    trusted: Dataset | None = None
    if args.trusted:
        try:
            trusted = load_npz(args.trusted)
        except DatasetError as exc:
            return _error(f"{args.trusted}: {exc}")
    result = scan(dataset, k=args.k)  # the static review order the queue decisions are placed in
    try:
        report = effect_report(dataset, decisions, result, trusted=trusted, seed=args.seed)
    except DatasetError as exc:
        return _error(str(exc))
    for line in describe(report):
        print(line)
    if args.json:
        out = Path(args.json)
        try:
            out.write_text(json.dumps(_finite(report.to_json()), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"{PROG}: error: could not write {out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"figures: {out}")
    return 0


def _finite(value):
    """NaN anywhere as null: strict JSON readers refuse NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
