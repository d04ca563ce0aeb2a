"""The built-in demo: scikit-learn's 1,797 scanned digits, written as PNG files and loaded like a user's NPZ."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cleaner.io.dataset import load_npz, npz_bytes
from cleaner.io.dataset_types import Dataset
from cleaner.server.diskcache import write_atomically

DEMO_NPZ_NAME = "digits_demo_v2.npz"  # bump the version when the files written change


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    digits = load_digits()
    return digits.images.astype(np.uint8), digits.target.astype(np.int64)


def demo_embeddings(images: np.ndarray) -> np.ndarray:
    """The demo's embedding: the 64 pixel intensities, scaled to [0, 1]."""
    return (images.reshape(len(images), -1) / 16.0).astype(np.float32)


def build_demo(demo_dir: Path) -> Path:
    """Write the digit PNGs and the demo NPZ into demo_dir once; return the NPZ's path."""
    from PIL import Image

    demo_dir = Path(demo_dir)
    npz_path = demo_dir / DEMO_NPZ_NAME
    if npz_path.is_file():
        return npz_path
    images, labels = _digits()
    image_dir = demo_dir / "images_v2"
    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        path = image_dir / f"digit_{i:04d}_label_{label}.png"
        if not path.is_file():
            # 0..16 grey levels, ink dark on white as on paper
            Image.fromarray((255 - img.astype(np.int32) * 255 // 16).astype(np.uint8), mode="L").save(path)
        paths.append(str(path.resolve()))
    data = npz_bytes(demo_embeddings(images), labels, np.asarray(paths))
    return write_atomically(demo_dir, DEMO_NPZ_NAME, data)  # atomic: several sessions may start at once


def load_demo(demo_dir: Path) -> Dataset:
    return load_npz(build_demo(demo_dir), name="Demo: scikit-learn digits (1,797 scans)")


def write_packaged_layouts(demo_dir: Path) -> list[Path]:
    """Compute the demo's default 3D and 2D layouts and store them in the package, so a cold server skips UMAP."""
    from cleaner.graph.distance import COSINE, auto_metric
    from cleaner.graph.neighbours import GRAPH_K, neighbour_graph
    from cleaner.layout.layouts import PACKAGED_LAYOUTS, LayoutParams, LayoutStore, umap_layout

    dataset = load_demo(demo_dir)
    store = LayoutStore(PACKAGED_LAYOUTS, packaged=Path("/nonexistent"))
    written = []
    # The app's default ("auto") and cosine, the distance most other embeddings get.
    metrics = sorted({auto_metric(dataset.embeddings).metric, COSINE})
    for n_components, metric in [(n, m) for n in (3, 2) for m in metrics]:
        params = LayoutParams(n_components=n_components, metric=metric)
        graph = neighbour_graph(dataset.embeddings, k=GRAPH_K, metric=params.metric)
        store.put(dataset.embedding_digest, params, umap_layout(dataset.embeddings, graph, params))
        written.append(PACKAGED_LAYOUTS / store.file_name(dataset.embedding_digest, params))
    return written


if __name__ == "__main__":  # python -m cleaner.io.demo: refresh the shipped demo layouts
    import tempfile

    for path in write_packaged_layouts(Path(tempfile.mkdtemp()) / "demo"):
        print(path)
