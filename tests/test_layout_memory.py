"""What the layouts cost in memory beside the embeddings they are made from (tracemalloc sees numpy's buffers)."""

import tracemalloc

import numpy as np

from cleaner.layout.layouts import pca_projection


def test_the_pca_preview_is_the_principal_axes_projection_without_a_copy_of_the_embeddings():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(100_000, 64)) * np.linspace(3, 0.1, 64) + 2.0).astype(np.float32)
    tracemalloc.start()
    try:
        got = pca_projection(x, 3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # At most a few blocks of rows beside the result: a centred copy of every row would be x.nbytes more.
    assert peak < 0.4 * x.nbytes, (peak, x.nbytes)
    centred = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    expected = centred @ vecs[:, ::-1][:, :3]
    expected *= np.sign((expected * got).sum(axis=0))  # an axis' sign is arbitrary
    expected = expected / np.abs(expected).max() * 10.0  # the preview's scale: the largest coordinate is 10
    np.testing.assert_allclose(got, expected, atol=1e-3)
