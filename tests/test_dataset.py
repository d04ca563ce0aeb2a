"""load_npz on well-formed NPZ files: what loads, and what is refused with which message."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

import cleaner
from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import DatasetError
from cleaner.server.limits import MAX_LABEL_CHARS, MAX_PATH_CHARS, MIN_ROWS

from .conftest import (
    D,
    N,
    assert_consistent,
    good_arrays,
    good_members,
    good_npz,
    npy,
    npz,
    raw_npy,
    refused,
    zip_of,
)

# numpy warnings from the loader (overflow in a cast, ...) are bugs here, not noise
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


# ---------------------------------------------------------------- valid files load


def test_public_api_is_exported():
    assert cleaner.load_npz is load_npz and cleaner.DatasetError is DatasetError
    assert issubclass(DatasetError, ValueError)


@pytest.mark.parametrize("compressed", [True, False], ids=["savez_compressed", "savez"])
@pytest.mark.parametrize(
    "dtype", [np.float32, np.float64, np.float16, np.longdouble, np.int8, np.int32, np.int64, np.uint8, ">f8", "<f4"]
)
def test_numeric_embeddings_load_as_float32(dtype, compressed):
    emb = (good_arrays()["embeddings"] * 10).astype(dtype)
    ds = load_npz(good_npz(compressed, embeddings=emb))
    assert_consistent(ds)
    np.testing.assert_allclose(ds.embeddings, emb.astype(np.float64), rtol=1e-3)


def test_fortran_order_embeddings_keep_their_values():
    emb = np.asfortranarray(np.arange(N * D, dtype=np.float64).reshape(N, D))
    assert npy(emb)[:80].count(b"'fortran_order': True") == 1
    ds = load_npz(good_npz(embeddings=emb))
    np.testing.assert_array_equal(ds.embeddings, emb)
    assert ds.embeddings.flags.c_contiguous
    assert ds.embedding_digest == load_npz(good_npz(embeddings=np.ascontiguousarray(emb))).embedding_digest


def test_non_contiguous_labels_load():
    labels = np.asfortranarray(np.arange(2 * N).reshape(N, 2))[:, 0]
    ds = load_npz(good_npz(labels=labels))
    np.testing.assert_array_equal(ds.labels, labels)


@pytest.mark.parametrize(
    "labels, expected_classes",
    [
        (np.arange(N) % 3, ("0", "1", "2")),
        ((np.arange(N) % 3).astype(np.uint16), ("0", "1", "2")),
        ((np.arange(N) % 2).astype(bool), ("0", "1")),
        ((np.arange(N) % 3).astype(np.float64), ("0", "1", "2")),
        (np.array(["cat", "dog", "émeu"] * (N // 3)), ("cat", "dog", "émeu")),
        (np.array(["cat", "dog", "émeu"] * (N // 3), dtype=">U4"), ("cat", "dog", "émeu")),
        (np.array([b"cat", b"dog", "émeu".encode()] * (N // 3)), ("cat", "dog", "émeu")),
        (np.array(["a b", " padded "] * (N // 2)), (" padded ", "a b")),
    ],
    ids=["int64", "uint16", "bool", "integral-float", "str", "big-endian-str", "utf8-bytes", "spaces"],
)
def test_label_kinds_load(labels, expected_classes):
    ds = load_npz(good_npz(labels=labels))
    assert_consistent(ds)
    assert ds.class_names == expected_classes


def test_mixed_type_labels_become_strings():
    labels = np.array([1, "a"] * (N // 2))  # numpy turns the mix into '<U21'
    assert labels.dtype.kind == "U"
    ds = load_npz(good_npz(labels=labels))
    assert ds.class_names == ("1", "a")


def test_paths_as_bytes_and_unicode_load():
    paths = np.array([f"/data/ünï/{i}.png".encode() for i in range(N)])
    ds = load_npz(good_npz(image_paths=paths))
    assert ds.image_paths[3] == "/data/ünï/3.png"
    assert ds.file_name(3) == "3.png"


def test_extra_keys_and_files_are_ignored():
    data = zip_of({**good_members(), "notes.npy": npy(np.arange(3)), "README.txt": b"hello", "sub/": b""})
    ds = load_npz(data)
    assert ds.n == N
    ds2 = load_npz(good_npz(extra=np.zeros((5, 5)), embeddings_old=np.zeros(3, dtype=object)))
    assert ds2.n == N  # an object array under another key is never read


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "bytearray", "memoryview", "bytesio", "open-file"])
def test_every_source_kind_loads_the_same(kind, tmp_path):
    data = good_npz()
    file = tmp_path / "set.npz"
    file.write_bytes(data)
    source = {
        "str": str(file),
        "path": file,
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "bytesio": io.BytesIO(data),
        "open-file": None,
    }[kind]
    if kind == "open-file":
        with open(file, "rb") as fh:
            ds = load_npz(fh)
    else:
        ds = load_npz(source)
    assert ds.digest == load_npz(data).digest
    if kind in ("str", "path", "open-file"):
        assert ds.name == "set.npz"
    assert load_npz(data, name="mine").name == "mine"


def test_limits_at_exactly_the_maximum_load():
    ds = load_npz(good_npz(), max_rows=N, max_dims=D)
    assert (ds.n, ds.dims) == (N, D)
    assert load_npz(good_npz(**good_arrays(n=MIN_ROWS))).n == MIN_ROWS


def test_digest_depends_on_content_not_on_compression():
    assert load_npz(good_npz(True)).digest == load_npz(good_npz(False)).digest
    changed = good_arrays()
    changed["labels"] = changed["labels"][::-1].copy()
    assert load_npz(npz(**changed)).digest != load_npz(good_npz()).digest


# ---------------------------------------------------------------- shape and length problems


@pytest.mark.parametrize(
    "emb, words",
    [
        (np.zeros(N, dtype=np.float32), ["2-D", "1-D"]),
        (np.zeros((N, 2, 3), dtype=np.float32), ["2-D", "3-D"]),
        (np.zeros((), dtype=np.float32), ["2-D", "0-D"]),
        (np.zeros((0, D), dtype=np.float32), ["0 rows", f"at least {MIN_ROWS}"]),
        (np.zeros((MIN_ROWS - 1, D), dtype=np.float32), [f"{MIN_ROWS - 1} rows"]),
        (np.zeros((N, 1), dtype=np.float32), ["1 column"]),
        (np.zeros((N, 0), dtype=np.float32), ["0 column"]),
    ],
    ids=["1-D", "3-D", "0-D", "zero-rows", "too-few-rows", "one-column", "zero-columns"],
)
def test_embedding_shapes_are_refused(emb, words):
    message = refused(good_npz(embeddings=emb))
    assert "'embeddings'" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("key", ["labels", "image_paths"])
@pytest.mark.parametrize("length", [N - 1, N + 1, 0])
def test_mismatched_lengths_are_refused(key, length):
    column = good_arrays(n=max(length, 1))[key][:length]
    message = refused(good_npz(**{key: column}))
    assert f"'{key}' has {length:,} entries but 'embeddings' has {N:,} rows" in message


@pytest.mark.parametrize("key", ["labels", "image_paths"])
def test_two_dimensional_columns_are_refused(key):
    column = np.repeat(good_arrays()[key][:, None], 2, axis=1)
    assert "must be 1-D" in refused(good_npz(**{key: column}))


def test_row_and_dimension_limits():
    assert "at most 20" in refused(good_npz(), max_rows=20)
    assert f"{N:,} rows" in refused(good_npz(), max_rows=20)
    assert "at most 5" in refused(good_npz(), max_dims=5)
    assert f"{D} dimensions" in refused(good_npz(), max_dims=5)


# ---------------------------------------------------------------- dtypes and values


@pytest.mark.parametrize(
    "emb, words",
    [
        (np.zeros((N, D), dtype=bool), ["bool"]),
        (np.zeros((N, D), dtype="M8[s]"), ["datetime64"]),
        (np.zeros((N, D), dtype="m8[s]"), ["timedelta64"]),
        (np.zeros((N, D), dtype="V8"), ["V8"]),
        (np.zeros((N, D), dtype=[("a", "<f4"), ("b", "<i4")]), ["numeric"]),
        (np.zeros((N, D), dtype=np.complex64), ["complex"]),
        (np.zeros((N, D), dtype=np.complex128), ["complex"]),
        (np.full((N, D), "1.5"), ["<U3"]),
        (np.full((N, D), b"1.5"), ["S3"]),
    ],
    ids=["bool", "datetime", "timedelta", "void", "structured", "complex64", "complex128", "str", "bytes"],
)
def test_wrong_embedding_dtypes_are_refused(emb, words):
    message = refused(good_npz(embeddings=emb))
    assert "'embeddings'" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_non_finite_embeddings_are_refused_with_row(bad, dtype):
    emb = good_arrays()["embeddings"].astype(dtype)
    emb[7, 2] = bad
    emb[9, 0] = bad
    message = refused(good_npz(embeddings=emb))
    assert "2 row(s) with NaN or infinite values" in message and "row 7" in message


def test_float64_values_that_overflow_float32_are_refused():
    emb = good_arrays()["embeddings"].astype(np.float64)
    emb[3, 1] = 1e300
    message = refused(good_npz(embeddings=emb))
    assert "too large for float32" in message and "row 3" in message


@pytest.mark.parametrize(
    "labels, words",
    [
        (np.array([1, "a", None] * (N // 3), dtype=object), ["Python objects", "never unpickles"]),
        (np.linspace(0, 1, N), ["fractional"]),
        (np.full(N, np.nan), ["NaN"]),
        (np.full(N, 1e300), ["huge"]),
        (np.full(N, np.iinfo(np.uint64).max, dtype=np.uint64), ["too large"]),
        (np.array(["a", ""] * (N // 2)), ["empty label at row 1"]),
        (np.array(["x" * (MAX_LABEL_CHARS + 1)] * N), [f"longer than {MAX_LABEL_CHARS}"]),
        (np.array([b"\xff\xfe"] * N), ["not UTF-8"]),
        (np.zeros(N, dtype=np.complex64), ["complex"]),
        (np.zeros(N, dtype="M8[D]"), ["dates or times"]),
        (np.zeros(N, dtype=[("a", "<i4")]), ["integers or strings"]),
    ],
    ids=[
        "object-mixed",
        "fractional",
        "nan",
        "huge-float",
        "huge-uint64",
        "empty",
        "too-long",
        "non-utf8",
        "complex",
        "dates",
        "structured",
    ],
)
def test_bad_labels_are_refused(labels, words):
    message = refused(good_npz(labels=labels))
    assert "'labels'" in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "paths, words",
    [
        (np.array(["/ok.png", ""] * (N // 2)), ["empty path at row 1"]),
        (np.array(["/ok.png", "   \t "] * (N // 2)), ["empty path at row 1"]),
        (np.array(["/" + "a" * MAX_PATH_CHARS] * N), [f"longer than {MAX_PATH_CHARS:,}"]),
        (np.array([b"/" + b"a" * (4 * MAX_PATH_CHARS)] * N), [f"longer than {MAX_PATH_CHARS:,}"]),
        (np.array(["/ok.png", "/a\x00b.png"] * (N // 2)), ["row 1", "NUL"]),
        (np.array(["/ok.png", "\x00/b.png"] * (N // 2)), ["row 1", "NUL"]),
        (np.array(["/ok.png", "/a\nb.png"] * (N // 2)), ["row 1", "line break"]),
        (np.array(["/ok.png", "/a\rb.png"] * (N // 2)), ["row 1", "line break"]),
        (np.arange(N), ["must be strings"]),
        (np.array(["/a.png", 1, None] * (N // 3), dtype=object), ["Python objects"]),
        (np.array([b"/\xff.png"] * N), ["not UTF-8"]),
    ],
    ids=[
        "empty",
        "whitespace",
        "too-long",
        "too-long-bytes",
        "nul",
        "leading-nul",
        "newline",
        "cr",
        "numbers",
        "objects",
        "non-utf8",
    ],
)
def test_bad_paths_are_refused(paths, words):
    message = refused(good_npz(image_paths=paths))
    assert "'image_paths'" in message
    for word in words:
        assert word in message


def test_trailing_nul_in_paths_is_numpy_padding_and_loads():
    ds = load_npz(good_npz(image_paths=np.array([f"/d/{i}.png\x00" for i in range(N)])))
    assert ds.image_paths[0] == "/d/0.png"


def test_lone_surrogates_and_impossible_code_points_are_refused():
    # np.array(['\ud800']) stores the raw code point; str() of it later would break the page.
    for code in (0xD800, 0xDC80, 0x110000, 0xFFFFFFFF):
        raw = np.full(N, code, dtype="<u4").tobytes()
        header = f"{{'descr': '<U1', 'fortran_order': False, 'shape': ({N},), }}"
        for key in ("labels", "image_paths"):
            data = zip_of({**good_members(), f"{key}.npy": raw_npy(header, raw)})
            message = refused(data)
            assert f"'{key}' row 0" in message and "not valid Unicode" in message


# ---------------------------------------------------------------- missing keys


@pytest.mark.parametrize(
    "drop", [("labels",), ("image_paths",), ("embeddings", "labels"), ("embeddings", "labels", "image_paths")]
)
def test_missing_keys_are_named(drop):
    arrays = {k: v for k, v in good_arrays().items() if k not in drop} or {"arr_0": np.zeros(3)}
    message = refused(npz(**arrays))
    for key in drop:
        assert f"'{key}'" in message.split("It holds")[0]
    assert "missing" in message and "Expected 'embeddings', 'labels', 'image_paths'" in message


def test_keys_are_case_sensitive_and_need_the_npy_suffix():
    arrays = good_arrays()
    message = refused(npz(Embeddings=arrays["embeddings"], labels=arrays["labels"], image_paths=arrays["image_paths"]))
    assert "missing 'embeddings'" in message and "'Embeddings'" in message
    members = good_members()
    members["embeddings"] = members.pop("embeddings.npy")
    assert "missing 'embeddings'" in refused(zip_of(members))


# ---------------------------------------------------------------- sources that are not NPZ files


def test_empty_file_and_empty_bytes(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert "empty" in refused(empty)
    assert "empty" in refused(b"")
    assert "empty" in refused(io.BytesIO())


def test_directory_missing_file_and_odd_paths(tmp_path):
    assert "is a folder" in refused(tmp_path)
    assert "There is no file at" in refused(tmp_path / "nope.npz")
    assert "There is no file at" in refused(str(tmp_path / "no" / "such" / "dir.npz"))
    assert "No file path" in refused("")
    assert "No file path" in refused("   ")
    message = refused(str(tmp_path / "a\x00b.npz"))
    assert "NUL" in message and "\x00" not in message
    long_message = refused("/" + "x" * 10_000)
    assert "File name too long" in long_message and len(long_message) < 400
    assert "Could not open" in refused(str(tmp_path / ("y" * 300) / "f.npz"))


def test_devices_and_fifos_are_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    assert "not a regular file" in refused(fifo)  # no writer: a blocking open would hang forever
    assert "not a regular file" in refused("/dev/zero")  # an endless source
    assert "not a regular file" in refused("/dev/null")
    link = tmp_path / "zero.npz"
    link.symlink_to("/dev/zero")
    assert "not a regular file" in refused(link)


def test_size_limit_is_checked_before_reading(tmp_path):
    data = good_npz(compressed=False)  # stored: the arrays are smaller than the file, so the file is the limit
    file = tmp_path / "big.npz"
    file.write_bytes(data)
    limit = len(data) - 1
    assert "this server accepts files up to" in refused(file, max_bytes=limit)
    assert "this server accepts files up to" in refused(data, max_bytes=limit)
    assert "limit" in refused(io.BytesIO(data), max_bytes=limit)
    sparse = tmp_path / "sparse.npz"
    with open(sparse, "wb") as fh:
        fh.truncate(50 * 1024**3)  # 50 GB that take no disk: must be refused from its size alone
    assert "51,200 MB" in refused(sparse, max_bytes=8 * 1024**2)
    assert load_npz(file, max_bytes=len(data)).n == N


class _BrokenStream:
    name = "broken.npz"

    def read(self, n=-1):
        raise OSError(5, "Input/output error")


class _TextStream(io.StringIO):
    pass


class _EndlessStream:
    def read(self, n=-1):
        return b"\0" * max(1, min(n, 1 << 20))


class _BytesPath:
    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return os.fsencode(self.path)


def test_odd_source_objects(tmp_path):
    assert "Input/output error" in refused(_BrokenStream())
    assert "binary mode" in refused(_TextStream("PK\x03\x04"))
    assert "limit" in refused(_EndlessStream(), max_bytes=3 * 1024 * 1024)
    assert "Cannot read a NoneType" in refused(None)
    assert "Cannot read a int" in refused(42)
    file = tmp_path / "ok.npz"
    file.write_bytes(good_npz())
    assert load_npz(_BytesPath(str(file))).n == N


def test_single_npy_pickle_and_other_formats_are_named():
    assert "single .npy array" in refused(npy(good_arrays()["embeddings"]))
    import pickle

    assert "pickle" in refused(pickle.dumps(good_arrays()))
    for junk in (b"hello world", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"\x1f\x8b\x08" + b"\0" * 50, b"PK\x03\x04"):
        assert "not a valid zip archive" in refused(junk)
