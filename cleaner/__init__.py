"""cleaner: find mislabeled, corrupted and off-topic images in a classification dataset from its embeddings.

From a notebook::

    import cleaner

    dataset = cleaner.load_npz("my_dataset.npz")  # embeddings, labels, image_paths
    result = cleaner.scan(dataset)
    print(result.labels.summary)
    with open("report.csv", "w") as f:
        f.write(cleaner.report_csv(dataset, result))

Every error meant for a person is a `CleanerError` (a bad file is a `DatasetError`). The page is
`streamlit run streamlit_app.py`; the command line is `cleaner scan` and `cleaner effect`.
"""

from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset, DatasetError
from cleaner.issues.report import report_csv
from cleaner.issues.suspects import ScanResult, scan
from cleaner.server.errors import CleanerError

__all__ = ["CleanerError", "Dataset", "DatasetError", "ScanResult", "load_npz", "report_csv", "scan"]
