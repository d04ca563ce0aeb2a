"""The effect report on data with planted label errors: the audit's interval coverage, the probe's gain as an oracle
works the review queue, and the wall time of one `effect_report`.

    python bench/effect.py [--quick] [--out /tmp/effect.json] [--plot effect_gain.png]

Data (`generate`, written into the JSON as `generator`): 20 classes in 10 look-alike pairs in 64 dimensions. Pair
centres ~ N(0, 1.0^2 I), each class centre = its pair's centre + N(0, 0.22^2 I), each row = its class centre +
N(0, I). A share `noise` of the rows (chosen uniformly, exactly round(noise x N) of them) carries a wrong label: the
pair partner with probability 0.8, else a uniformly chosen other class. A clean split drawn from the same classes,
with true labels and never trained on, measures the probe.

1. Coverage: per noise rate and data seed, the seeded audit (audit_rows(N, size, seed)) with oracle verdicts (bad =
   planted); does the Wilson interval of the bad rate cover the planted rate, and does the bad-left interval cover the
   planted errors the queue did not reach after an oracle worked the flagged queue (up to 1,000 cards)? Also over many
   audits of each dataset.
2. Gain: an oracle takes cards in the scan's review order (`review_queue(..., by="worst")`, the flagged rows first,
   then the rest) and relabels a planted error to its true label or keeps a clean row; `effect_report` with the clean
   split as the trusted file gives the probe's gain after 0, 100, 500, 1000, 2000 decisions, against removing (and
   against relabelling) every planted error. The audit gives verdicts only (no decisions), so 0 decisions is 0 gain.
3. Time: one `effect_report` (audit of 100 with verdicts and decisions, 1000 queue decisions, the audit's rows as the
   trusted rows; the scan computed before the clock starts) against one plain LogisticRegression fit with the probe's
   settings on all rows, standardised, in the same process: `effect_ratio`.
"""

from __future__ import annotations

import os

# One BLAS thread, as bench/detect.py: two OpenBLAS threads on this shared 2-core machine stall each other.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402 - after the BLAS setting
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cleaner.decisions.effect import (  # noqa: E402
    AUDIT_SIZE,
    audit_estimate,
    audit_rows,
    caught_by_review,
    effect_report,
)
from cleaner.decisions.records import AuditVerdict, Decision, Decisions  # noqa: E402
from cleaner.io.dataset import dataset_from_arrays  # noqa: E402
from cleaner.io.dataset_types import Dataset  # noqa: E402
from cleaner.issues.ranking import review_queue  # noqa: E402
from cleaner.issues.suspects import scan  # noqa: E402

GENERATOR = __doc__.split("Data (")[1].split("\n\n")[0]
DIMS, PAIRS, PAIR_SPREAD, CLASS_SPREAD, PARTNER_SHARE = 64, 10, 1.0, 0.22, 0.8
BUDGETS = (0, 100, 500, 1000, 2000)


@dataclass(frozen=True)
class Planted:
    x: np.ndarray  # [N, DIMS] float32
    true: np.ndarray  # [N] true class
    noisy: np.ndarray  # [N] the label the dataset carries
    bad: np.ndarray  # [N] bool: a planted error
    x_val: np.ndarray  # the clean split
    y_val: np.ndarray

    def dataset(self) -> Dataset:
        names = np.array([f"class_{c:02d}" for c in range(2 * PAIRS)])
        paths = np.array([f"/bench/{i:07d}.png" for i in range(self.noisy.size)])
        return dataset_from_arrays(self.x, names[self.noisy], paths, "planted")

    def trusted(self) -> Dataset:
        names = np.array([f"class_{c:02d}" for c in range(2 * PAIRS)])
        paths = np.array([f"/bench/val/{i:07d}.png" for i in range(self.y_val.size)])
        return dataset_from_arrays(self.x_val, names[self.y_val], paths, "clean split")


def generate(n: int, n_val: int, noise: float, seed: int) -> Planted:
    rng = np.random.default_rng(seed)
    classes = 2 * PAIRS
    centres = np.repeat(rng.normal(0, PAIR_SPREAD, (PAIRS, DIMS)), 2, axis=0)
    centres += rng.normal(0, CLASS_SPREAD, (classes, DIMS))
    y = rng.integers(0, classes, n + n_val)
    x = (centres[y] + rng.normal(size=(n + n_val, DIMS))).astype(np.float32)
    k = round(noise * n)
    bad = np.zeros(n, dtype=bool)
    bad[rng.choice(n, k, replace=False)] = True
    noisy = y[:n].copy()
    other = (noisy + rng.integers(1, classes, n)) % classes
    partner = noisy ^ 1  # classes 2i and 2i+1 form a pair
    noisy[bad] = np.where(rng.random(k) < PARTNER_SHARE, partner[bad], other[bad])
    return Planted(x[:n], y[:n], noisy, bad, x[n:], y[n:])


def name_of(code: int) -> str:
    return f"class_{int(code):02d}"


def oracle_audit(decisions: Decisions, dataset: Dataset, planted: Planted, rows: np.ndarray, decide: bool) -> None:
    """Verdicts on the audited rows as a perfect reviewer gives them; `decide` also records them as decisions."""
    for row in rows.tolist():
        path = str(dataset.image_paths[row])
        kind = "relabel" if planted.bad[row] else "keep"
        decisions.set_audit(path, AuditVerdict(kind, name_of(planted.true[row])))
        if decide:
            decisions.put(
                path, Decision(kind, new_label=name_of(planted.true[row]) if kind == "relabel" else "", source="audit")
            )


def oracle_queue(decisions: Decisions, dataset: Dataset, planted: Planted, cards: np.ndarray) -> None:
    for row in cards.tolist():
        path = str(dataset.image_paths[row])
        if planted.bad[row]:
            decisions.put(path, Decision("relabel", new_label=name_of(planted.true[row]), source="queue"))
        else:
            decisions.put(path, Decision("keep", source="queue"))


def coverage(rates: list[float], seeds: int, n: int, depth: int, audits: int, sizes: tuple[int, ...]) -> dict:
    """How often the audit's Wilson intervals cover the planted bad rate and the planted errors left."""
    out = {}
    for rate in rates:
        first = {s: {"bad_rate": 0, "bad_left": 0} for s in sizes}
        many = {s: {"bad_rate": 0, "bad_left": 0, "width": 0.0} for s in sizes}
        for seed in range(seeds):
            planted = generate(n, 0, rate, seed)
            result = scan(planted.dataset())
            order = review_queue(*result.all(), by="worst", flagged_only=True)
            worked = order[:depth]
            true_rate = planted.bad.mean()
            left = planted.bad.copy()
            left[worked] = False
            true_left = int(left.sum())
            for size in sizes:
                for a in range(audits):
                    audit_seed = seed if a == 0 else seeds + seed * audits + a  # a == 0: the seeded audit
                    rows = audit_rows(n, size, audit_seed)
                    est = audit_estimate(n, planted.bad[rows], caught_by_review(order, worked, rows))
                    hit_rate = est.bad.low <= true_rate <= est.bad.high
                    _, low, high = est.bad_left
                    hit_left = low <= true_left <= high
                    if a == 0:
                        first[size]["bad_rate"] += hit_rate
                        first[size]["bad_left"] += hit_left
                    many[size]["bad_rate"] += hit_rate
                    many[size]["bad_left"] += hit_left
                    many[size]["width"] += est.bad.width
        out[str(rate)] = {
            str(size): {
                "seeded_audit_bad_rate_coverage": first[size]["bad_rate"] / seeds,
                "seeded_audit_bad_left_coverage": first[size]["bad_left"] / seeds,
                "all_audits_bad_rate_coverage": many[size]["bad_rate"] / (seeds * audits),
                "all_audits_bad_left_coverage": many[size]["bad_left"] / (seeds * audits),
                "mean_bad_rate_interval_width": many[size]["width"] / (seeds * audits),
                "intervals": seeds * audits,
            }
            for size in sizes
        }
        print(
            f"coverage at noise {rate:.0%}: "
            + "; ".join(
                f"audit {s}: seeded {v['seeded_audit_bad_rate_coverage']:.2f} / left "
                f"{v['seeded_audit_bad_left_coverage']:.2f}, all {v['all_audits_bad_rate_coverage']:.3f} / left "
                f"{v['all_audits_bad_left_coverage']:.3f}"
                for s, v in out[str(rate)].items()
            ),
            flush=True,
        )
    return out


def gain(rates: list[float], seeds: int, n: int, n_val: int, budgets: tuple[int, ...]) -> dict:
    """The probe's gain on the clean split as an oracle works the review order, and with every planted error gone."""
    out = {}
    for rate in rates:
        rows = []
        for seed in range(seeds):
            planted = generate(n, n_val, rate, 1000 + seed)
            dataset, trusted = planted.dataset(), planted.trusted()
            result = scan(dataset)
            order = review_queue(*result.all(), by="worst")
            flagged = int(review_queue(*result.all(), by="worst", flagged_only=True).size)
            audited = audit_rows(n, AUDIT_SIZE, seed)
            curve = []
            for budget in budgets:
                decisions = Decisions()
                oracle_audit(decisions, dataset, planted, audited, decide=False)
                oracle_queue(decisions, dataset, planted, order[:budget])
                report = effect_report(dataset, decisions, result, trusted=trusted, seed=seed)
                left = planted.bad.copy()
                left[order[:budget]] = False
                curve.append(
                    {
                        "decisions": budget,
                        "fixed": int(planted.bad[order[:budget]].sum()),
                        "gain": report.probe.gain,
                        "gain_ci": [report.probe.gain_low, report.probe.gain_high],
                        "accuracy_after": report.probe.accuracy_after,
                        "bad_left_true": int(left.sum()),
                        "bad_left": report.audit.bad_left[0],
                        "bad_left_ci": list(report.audit.bad_left[1:]),
                        "run_dry": report.queue.run_dry if report.queue else None,
                    }
                )
            ideal = {}
            for name, kind in (("remove_all", "exclude"), ("relabel_all", "relabel")):
                decisions = Decisions()
                oracle_audit(decisions, dataset, planted, audited, decide=False)
                for row in np.flatnonzero(planted.bad).tolist():
                    decisions.put(
                        str(dataset.image_paths[row]),
                        Decision(
                            kind, new_label=name_of(planted.true[row]) if kind == "relabel" else "", source="selection"
                        ),
                    )
                probe = effect_report(dataset, decisions, result, trusted=trusted, seed=seed).probe
                ideal[name] = {"gain": probe.gain, "gain_ci": [probe.gain_low, probe.gain_high]}
            rows.append(
                {
                    "seed": 1000 + seed,
                    "planted": int(planted.bad.sum()),
                    "flagged": flagged,
                    "accuracy_before": curve[0]["accuracy_after"],
                    "curve": curve,
                    **ideal,
                }
            )
            print(
                f"gain at noise {rate:.0%}, seed {1000 + seed}: "
                + ", ".join(f"{c['decisions']}: {c['gain']:+.4f}" for c in curve)
                + f"; remove all {ideal['remove_all']['gain']:+.4f}, relabel all {ideal['relabel_all']['gain']:+.4f}",
                flush=True,
            )
        out[str(rate)] = {
            "seeds": rows,
            "mean_gain": {str(b): float(np.mean([r["curve"][i]["gain"] for r in rows])) for i, b in enumerate(budgets)},
            "share_of_ci_above_zero": {
                str(b): float(np.mean([r["curve"][i]["gain_ci"][0] > 0 for r in rows])) for i, b in enumerate(budgets)
            },
            "mean_fixed": {
                str(b): float(np.mean([r["curve"][i]["fixed"] for r in rows])) for i, b in enumerate(budgets)
            },
            "mean_remove_all_gain": float(np.mean([r["remove_all"]["gain"] for r in rows])),
            "mean_relabel_all_gain": float(np.mean([r["relabel_all"]["gain"] for r in rows])),
            "mean_accuracy_before": float(np.mean([r["accuracy_before"] for r in rows])),
        }
    return out


def timing(sizes: list[int], repeats: dict[int, int], noise: float) -> dict:
    """One effect_report against one plain logistic-regression fit on the same rows, in this process."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from cleaner.issues.probe import PROBE_MAX_ITER, PROBE_TOL

    out = {}
    for n in sizes:
        planted = generate(n, 0, noise, 7)
        dataset = planted.dataset()
        start = time.perf_counter()
        result = scan(dataset)
        scan_s = time.perf_counter() - start
        decisions = Decisions()
        oracle_audit(decisions, dataset, planted, audit_rows(n, AUDIT_SIZE, 0), decide=True)
        oracle_queue(decisions, dataset, planted, review_queue(*result.all(), by="worst")[:1000])
        effect_s, reference_s = [], []
        for _ in range(repeats.get(n, 1)):
            start = time.perf_counter()
            effect_report(dataset, decisions, result)
            effect_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            x = dataset.embeddings.astype(np.float64)
            x = ((x - x.mean(0)) / np.maximum(x.std(0), 1e-6)).astype(np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                LogisticRegression(tol=PROBE_TOL, max_iter=PROBE_MAX_ITER).fit(x, dataset.label_codes)
            reference_s.append(time.perf_counter() - start)
        row = {
            "effect_s": float(np.median(effect_s)),
            "reference_fit_s": float(np.median(reference_s)),
            "repeats": len(effect_s),
            "scan_s": scan_s,
        }
        row["effect_ratio"] = row["effect_s"] / row["reference_fit_s"]
        out[str(n)] = row
        print(
            f"time at {n:,} rows: effect_report {row['effect_s']:.2f} s, one plain fit {row['reference_fit_s']:.2f} s,"
            f" ratio {row['effect_ratio']:.2f} (scan {scan_s:.1f} s, not timed)",
            flush=True,
        )
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (rate, found) in zip(colours, results["gain"].items(), strict=False):
        budgets = [int(b) for b in found["mean_gain"]]
        gains = np.array([[c["gain"] for c in s["curve"]] for s in found["seeds"]])
        left.plot(budgets, gains.mean(0), "o-", color=colour, label=f"{float(rate):.0%} wrong labels: oracle queue")
        left.fill_between(budgets, gains.min(0), gains.max(0), color=colour, alpha=0.15)
        left.axhline(
            found["mean_remove_all_gain"],
            color=colour,
            linestyle="--",
            linewidth=1,
            label=f"{float(rate):.0%}: remove every planted error",
        )
        left.axhline(found["mean_relabel_all_gain"], color=colour, linestyle=":", linewidth=1)
    left.set_xlabel("queue decisions (oracle, in the scan's review order)")
    left.set_ylabel("probe accuracy gain on the clean split")
    left.set_title("Probe gain as the queue is worked (mean, band: min-max over seeds; dotted: relabel all)")
    left.title.set_fontsize(9)
    left.legend(fontsize=7)
    rates = list(results["coverage"])
    size = str(AUDIT_SIZE)
    xs = np.arange(len(rates))
    for offset, key, label in (
        (-0.2, "all_audits_bad_rate_coverage", "bad rate"),
        (0.2, "all_audits_bad_left_coverage", "bad left"),
    ):
        right.bar(xs + offset, [results["coverage"][r][size][key] for r in rates], width=0.4, label=label)
    right.axhline(0.95, color="k", linewidth=1)
    right.axhline(0.90, color="k", linestyle="--", linewidth=1)
    right.set_xticks(xs, [f"{float(r):.0%}" for r in rates])
    right.set_ylim(0.8, 1.0)
    right.set_xlabel("planted wrong labels")
    right.set_title(f"Wilson 95% coverage, audit of {AUDIT_SIZE} (all audits)")
    right.title.set_fontsize(9)
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/effect.json", help="JSON to write (default /tmp/effect.json)")
    parser.add_argument("--plot", metavar="PATH", help="also draw the gain curves and the coverage to this PNG")
    parser.add_argument("--quick", action="store_true", help="a small run: fewer seeds and rows, no 100k timing")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.10, 0.20])
    args = parser.parse_args()
    quick = args.quick
    config = {
        "rates": args.rates,
        "coverage_seeds": 4 if quick else 20,
        "coverage_rows": 5000 if quick else 20000,
        "coverage_depth": 1000,
        "coverage_audits_per_dataset": 10 if quick else 50,
        "coverage_audit_sizes": [AUDIT_SIZE, 3 * AUDIT_SIZE],
        "gain_seeds": 1 if quick else 8,
        "gain_rows": 5000 if quick else 20000,
        "gain_clean_split": 5000,
        "budgets": list(BUDGETS),
        "timing_sizes": [5000] if quick else [20000, 100000],
        "timing_repeats": {"20000": 3, "100000": 2, "5000": 1},
    }
    start = time.perf_counter()
    results = {
        "generator": GENERATOR,
        "config": config,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "coverage": coverage(
            args.rates,
            config["coverage_seeds"],
            config["coverage_rows"],
            config["coverage_depth"],
            config["coverage_audits_per_dataset"],
            tuple(config["coverage_audit_sizes"]),
        ),
        "gain": gain(args.rates, config["gain_seeds"], config["gain_rows"], config["gain_clean_split"], BUDGETS),
        "timing": timing(config["timing_sizes"], {int(k): v for k, v in config["timing_repeats"].items()}, noise=0.10),
    }
    results["total_s"] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results: {args.out} ({results['total_s']:.0f} s)")
    if args.plot:
        plot(results, Path(args.plot))
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
