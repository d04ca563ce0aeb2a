"""cleaner: find mislabeled, corrupted and off-topic images from their embeddings."""
from cleaner.io.dataset import Dataset, DatasetError, load_npz

__all__ = ["Dataset", "DatasetError", "load_npz"]
