"""Label-issue detection on real embedded data with planted label flips: `cleaner scan` against cleanlab Datalab.

    pip install -r bench/requirements.txt   # cleanlab is a benchmark-only dependency
    python bench/detect.py [--seeds 3] [--json-out results.json]

Data (nothing is downloaded):
- digits_pixels: scikit-learn's 1,797 scanned digits, the 64 pixel intensities / 16 (the app's demo embedding).
- digits_shifted_mlp: a larger set built from the same real scans. One third of the 1,797 originals (and their
  shifted copies) train a one-hidden-layer MLP with their true labels, like a backbone pretrained on other
  images; the other two thirds, each shifted by -1, 0 and +1 pixel in x and y (9 copies), are embedded by the
  64 ReLU units of its hidden layer: 10,782 x 64. Flips are planted on this embedded part only.

For each set, flip rate (5%, 10%) and seed, n = round(rate * N) labels move to a random other class. Both tools
get the same NPZ; precision@n is the share of planted flips among each tool's n most suspect label scores (ties
in row order). cleaner's scores are read back from its CSV report; cleanlab's from `Datalab(data={"label": y},
label_name="label").find_issues(features=X)` (its defaults: every issue type it runs on features). Wall seconds
are whole fresh processes (interpreter start, imports, load, compute, write), one untimed warm-up each first.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FLIP_RATES = (0.05, 0.10)
SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
TARGET_TIME_RATIO = 1 / 3


def cleanlab_worker(npz_path: str, out_path: str) -> None:
    """Run in its own process: cleanlab's label scores for an NPZ, saved as .npy (lower = more suspect)."""
    from cleanlab import Datalab  # timed: this import is part of cleanlab's cost

    with np.load(npz_path, allow_pickle=False) as data:
        features, labels = data["embeddings"], data["labels"]
    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=features)
    np.save(out_path, lab.get_issues("label")["label_score"].to_numpy())


def digits_pixels() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as the app's demo embeds them."""
    sys.path.insert(0, str(REPO))
    from sklearn.datasets import load_digits

    from cleaner.demo import demo_embeddings

    digits = load_digits()
    return demo_embeddings(digits.images.astype(np.uint8)), digits.target.astype(np.int64)


def _shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move every 8x8 image by (dy, dx) pixels, filling the uncovered border with blank paper."""
    out = np.zeros_like(images)
    h, w = images.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def digits_shifted_mlp(hidden: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Shifted digits embedded by the hidden layer of an MLP trained on a disjoint third of the originals."""
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    images, target = digits.images / 16.0, digits.target
    order = np.random.default_rng(12345).permutation(len(target))
    backbone_rows, data_rows = order[: len(target) // 3], order[len(target) // 3 :]

    def augmented(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([_shift(images[rows], dy, dx).reshape(len(rows), -1) for dy, dx in SHIFTS])
        return x, np.tile(target[rows], len(SHIFTS))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 300 epochs are plenty for an embedding
        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=300, random_state=0).fit(*augmented(backbone_rows))
    x, y = augmented(data_rows)
    hidden_layer = np.maximum(x @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0)
    return hidden_layer.astype(np.float32), y.astype(np.int64)


def flip_labels(labels: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Move round(rate * N) labels, chosen at random, to a random other class; return the labels and the rows."""
    rng = np.random.default_rng(seed)
    n_classes = int(labels.max()) + 1
    rows = rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False)
    flipped = labels.copy()
    flipped[rows] = (labels[rows] + rng.integers(1, n_classes, size=len(rows))) % n_classes
    return flipped, np.sort(rows)


def precision_at_n(suspicion: np.ndarray, planted: np.ndarray) -> float:
    """Share of the planted rows among the len(planted) most suspect rows (higher suspicion first, ties by row)."""
    top = np.argsort(-suspicion, kind="stable")[: len(planted)]
    return float(np.isin(top, planted).sum() / len(planted))


def timed(command: list[str]) -> float:
    """Wall seconds of a fresh process; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return seconds


def run_cleaner(npz: Path, work: Path) -> tuple[float, np.ndarray]:
    report = work / "report.csv"
    seconds = timed([sys.executable, "-m", "cleaner", "scan", str(npz), "--out", str(report)])
    with open(report, newline="", encoding="utf-8") as fh:
        scores = np.array([float(row["label_issue_score"]) for row in csv.DictReader(fh)])
    return seconds, scores


def run_cleanlab(npz: Path, work: Path) -> tuple[float, np.ndarray]:
    out = work / "cleanlab_label_score.npy"
    seconds = timed([sys.executable, str(Path(__file__).resolve()), "--cleanlab-worker", str(npz), str(out)])
    return seconds, 1.0 - np.load(out)  # cleanlab: low label quality = suspect


def bench_set(name: str, embeddings: np.ndarray, labels: np.ndarray, seeds: int, work: Path) -> dict:
    sys.path.insert(0, str(REPO))
    from cleaner.dataset import npz_bytes

    paths = np.array([f"/nonexistent/{name}/img_{i:06d}.png" for i in range(len(labels))])  # images are not read
    results = []
    for rate in FLIP_RATES:
        per_seed = {"cleaner": [], "cleanlab": [], "cleaner_s": [], "cleanlab_s": []}
        for seed in range(seeds):
            noisy, planted = flip_labels(labels, rate, seed)
            npz = work / f"{name}_{rate}_{seed}.npz"
            npz.write_bytes(npz_bytes(embeddings, noisy, paths))
            if not results and seed == 0:  # warm the page cache and Python's bytecode cache for both tools
                run_cleaner(npz, work)
                run_cleanlab(npz, work)
            seconds, scores = run_cleaner(npz, work)
            per_seed["cleaner"].append(precision_at_n(scores, planted))
            per_seed["cleaner_s"].append(seconds)
            seconds, scores = run_cleanlab(npz, work)
            per_seed["cleanlab"].append(precision_at_n(scores, planted))
            per_seed["cleanlab_s"].append(seconds)
        mean = {key: float(np.mean(values)) for key, values in per_seed.items()}
        results.append(
            {
                "flip_rate": rate,
                "n_flipped": int(round(rate * len(labels))),
                "precision_at_n": {
                    "cleaner": round(mean["cleaner"], 4),
                    "cleanlab": round(mean["cleanlab"], 4),
                    "cleaner_per_seed": [round(v, 4) for v in per_seed["cleaner"]],
                    "cleanlab_per_seed": [round(v, 4) for v in per_seed["cleanlab"]],
                },
                "wall_seconds": {
                    "cleaner_scan": round(mean["cleaner_s"], 3),
                    "cleanlab": round(mean["cleanlab_s"], 3),
                    "ratio_scan_to_cleanlab": round(mean["cleaner_s"] / mean["cleanlab_s"], 3),
                    "cleaner_scan_per_seed": [round(v, 3) for v in per_seed["cleaner_s"]],
                    "cleanlab_per_seed": [round(v, 3) for v in per_seed["cleanlab_s"]],
                },
                "targets_met": {
                    "precision_at_least_cleanlab": mean["cleaner"] >= mean["cleanlab"],
                    "time_at_most_a_third": mean["cleaner_s"] <= TARGET_TIME_RATIO * mean["cleanlab_s"],
                },
            }
        )
        print(f"{name} {rate:.0%}: {json.dumps(results[-1]['precision_at_n'])}", file=sys.stderr, flush=True)
    return {"name": name, "n": int(len(labels)), "dims": int(embeddings.shape[1]), "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="flip seeds per set and rate (default 3: 0, 1, 2)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    import cleanlab

    started = time.perf_counter()
    load_before = os.getloadavg()
    sets = {"digits_pixels": digits_pixels, "digits_shifted_mlp": digits_shifted_mlp}
    with tempfile.TemporaryDirectory(prefix="cleaner-bench-") as tmp:
        out_sets = [bench_set(name, *build(), seeds=args.seeds, work=Path(tmp)) for name, build in sets.items()]
    report = {
        "command": "python bench/detect.py" + (f" --seeds {args.seeds}" if args.seeds != 3 else ""),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cleanlab": cleanlab.__version__,
            "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "sets": out_sets,
        "all_targets_met": all(all(r["targets_met"].values()) for s in out_sets for r in s["results"]),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--cleanlab-worker":
        cleanlab_worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit(main())
