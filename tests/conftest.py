"""Shared fixtures and builders. The cache folder is set before any app code reads the settings."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="cleaner-test-cache-"))
os.environ.setdefault("CLEANER_CACHE_DIR", str(_SESSION_CACHE))
os.environ.setdefault("CLEANER_ALLOWED_ROOTS", str(_SESSION_CACHE / "allowed"))
(_SESSION_CACHE / "allowed").mkdir(exist_ok=True)
# One folder of compiled numba code for the whole run, shared by this process and every server, CLI and worker it
# starts: each would otherwise compile UMAP's kernels again for its own fresh cache folder. The tests of the
# per-folder kernel cache clear it for their own processes (test_layout_service), and test_faults' page runs set
# their own.
os.environ.setdefault("NUMBA_CACHE_DIR", str(_SESSION_CACHE / "numba-shared"))

# The settings above come before cleaner is imported.
from cleaner.io.dataset import load_npz  # noqa: E402
from cleaner.io.dataset_types import Dataset, DatasetError  # noqa: E402
from cleaner.io.images import configure_pillow  # noqa: E402
from cleaner.server.limits import MIN_ROWS  # noqa: E402

# The guards the app and the CLI set where they start, for the tests that call the image readers directly.
configure_pillow()

MB = 1024 * 1024
N, D = 24, 6  # rows and columns of the good test dataset


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


# ---------------------------------------------------------------- NPZ builders


def good_arrays(n: int = N, d: int = D, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embeddings": rng.normal(size=(n, d)).astype(np.float32),
        "labels": np.arange(n) % 3,
        "image_paths": np.array([f"/data/img_{i:04d}.png" for i in range(n)]),
    }


def npz(compressed: bool = True, **arrays: np.ndarray) -> bytes:
    """An NPZ as np.savez(_compressed) writes it; pickling allowed so object arrays really get pickled."""
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def good_npz(compressed: bool = True, **overrides: np.ndarray) -> bytes:
    arrays = good_arrays()
    arrays.update(overrides)
    return npz(compressed, **arrays)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def raw_npy(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy with a hand-written header dict, e.g. "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }"."""
    head = header.encode("latin1")
    size_field = 2 if version[0] == 1 else 4
    pad = -(6 + 2 + size_field + len(head) + 1) % 64
    head += b" " * pad + b"\n"
    length = struct.pack("<H" if size_field == 2 else "<I", len(head))
    return b"\x93NUMPY" + bytes(version) + length + head + data


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def good_members(**overrides: np.ndarray) -> dict[str, bytes]:
    arrays = good_arrays()
    arrays.update(overrides)
    return {f"{k}.npy": npy(v) for k, v in arrays.items()}


def refused(data, **kwargs) -> str:
    """The DatasetError message for loading `data`; fails the test if it loads or raises anything else."""
    with pytest.raises(DatasetError) as info:
        load_npz(data, **kwargs)
    message = str(info.value)
    assert message and "unexpected problem" not in message, message
    return message


def assert_consistent(ds: Dataset) -> None:
    assert ds.embeddings.dtype == np.float32 and ds.embeddings.flags.c_contiguous
    assert ds.embeddings.ndim == 2 and ds.n >= MIN_ROWS
    assert np.isfinite(ds.embeddings).all()
    assert ds.labels.shape == ds.image_paths.shape == ds.label_codes.shape == (ds.n,)
    assert ds.labels.dtype == np.int64 or ds.labels.dtype.kind == "U"
    assert ds.image_paths.dtype.kind == "U"
    assert not ds.embeddings.flags.writeable
    for row in (0, ds.n - 1):
        ds.label_text(row)
        ds.file_name(row)
    for text in list(ds.class_names) + ds.image_paths.tolist():
        text.encode("utf-8")  # valid text the page can show


def raw_zip(entries: list[dict], prefix: bytes = b"", comment: bytes = b"") -> bytes:
    """A zip written by hand, so sizes, CRCs, flags and methods can say anything.

    Each entry: name, payload (the bytes as stored), and optional method, crc, file_size, flags.
    """
    out, directory = bytearray(prefix), bytearray()
    for e in entries:
        name = e["name"].encode()
        payload = e["payload"]
        method = e.get("method", zipfile.ZIP_STORED)
        flags = e.get("flags", 0)
        crc = e.get("crc", zlib.crc32(payload) if method == zipfile.ZIP_STORED else 0)
        size = e.get("file_size", len(payload))
        offset = len(out)
        out += struct.pack(
            "<4s5H3I2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, len(payload), size, len(name), 0
        )
        out += name + payload
        directory += (
            struct.pack(
                "<4s6H3I5H2I",
                b"PK\x01\x02",
                20,
                20,
                flags,
                method,
                0,
                0x21,
                crc,
                len(payload),
                size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
    end = struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(out), len(comment)
    )
    return bytes(out + directory + end + comment)


def npy_header(shape: tuple, descr: str = "<f4", fortran: bool = False) -> bytes:
    return raw_npy(f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape!r}, }}")
