"""Shared fixtures. The cache folder is set before any app code reads the settings."""
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="cleaner-test-cache-"))
os.environ.setdefault("CLEANER_CACHE_DIR", str(_SESSION_CACHE))
os.environ.setdefault("CLEANER_ALLOWED_ROOTS", str(_SESSION_CACHE / "allowed"))
(_SESSION_CACHE / "allowed").mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def allowed_root() -> Path:
    return Path(os.environ["CLEANER_ALLOWED_ROOTS"].split(os.pathsep)[0])


def clustered_arrays(n_per_class: int = 30, n_classes: int = 3, dims: int = 16, seed: int = 0):
    """Tight, well separated Gaussian clusters: one per class."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 10, size=(n_classes, dims))
    emb = np.vstack([c + rng.normal(0, 0.5, size=(n_per_class, dims)) for c in centers]).astype(np.float32)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return emb, labels
