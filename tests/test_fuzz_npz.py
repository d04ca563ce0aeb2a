"""Property-based fuzzing of load_npz: every input either loads into a consistent Dataset or raises
DatasetError with a real message (never the safety net's), within a small memory bound.

deadline is a guard against hangs, not a speed assertion; derandomize keeps CI stable.
"""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.extra import numpy as hnp

from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import Dataset, DatasetError

from .conftest import MB, assert_consistent, good_arrays, good_members, npy, npy_header, npz, raw_zip

# numpy warnings from the loader (overflow in a cast, ...) are bugs here, not noise
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
MAX_BYTES = 8 * MB
MAX_ROWS = 5_000
MAX_DIMS = 512
PEAK_LIMIT = 4 * MAX_BYTES  # the file, the arrays and their validated copies, with room to spare

FUZZ = settings(
    max_examples=250,
    deadline=2000,  # ms: a bound against hangs, not a performance test
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def load_or_refuse(data) -> Dataset | None:
    """The property itself: a consistent Dataset or a DatasetError, and bounded memory either way."""
    tracemalloc.start()  # only around the load: tracing hypothesis itself would triple the run time
    try:
        ds = load_npz(data, max_bytes=MAX_BYTES, max_rows=MAX_ROWS, max_dims=MAX_DIMS)
    except DatasetError as exc:
        message = str(exc)
        assert message.strip(), "empty message"
        assert "unexpected problem" not in message, message  # the safety net caught an unforeseen error
        ds = None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"peak {peak / MB:.1f} MB for a {len(data):,}-byte input"
    if ds is not None:
        assert_consistent(ds)
        assert ds.n <= MAX_ROWS and ds.dims <= MAX_DIMS
    if currently_in_test_context():  # outcome counts for --hypothesis-show-statistics
        event("loaded" if ds is not None else "refused: " + " ".join(message.split()[:4]))
    return ds


# ---------------------------------------------------------------- 1. random bytes


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.binary(max_size=3000).map(lambda b: b"PK\x03\x04" + b),
        st.binary(max_size=3000).map(lambda b: b"\x93NUMPY" + b),
        st.binary(max_size=3000).map(lambda b: b + b"PK\x05\x06" + b[:18]),
        st.binary(max_size=300).map(lambda b: b"\x80\x04" + b),
    )
)
def test_random_bytes(data):
    assert load_or_refuse(data) is None


# ---------------------------------------------------------------- 2. mutated valid NPZ files


def _bases() -> list[bytes]:
    arrays = good_arrays(n=12, d=4)
    text_labels = dict(
        arrays, labels=np.array(["cat", "dog", "émeu"] * 4), embeddings=arrays["embeddings"].astype(np.float64)
    )
    bases = []
    for compressed in (False, True):
        bases.append(npz(compressed, **arrays))
        bases.append(npz(compressed, **text_labels))
    return bases


BASES = _bases()


def _structure_offsets(data: bytes) -> list[int]:
    """Offsets of zip and .npy header fields: where a mutation is most likely to mean something."""
    offsets = set()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            offsets.update(range(info.header_offset, info.header_offset + 30 + len(info.filename) + 128))
        offsets.update(range(zf.start_dir, len(data)))
    return sorted(o for o in offsets if o < len(data))


OFFSETS = [_structure_offsets(b) for b in BASES]
INTERESTING = [
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xff\xff\xff\x7f",
    b"\x00\x00\x00\x80",
    b"\x01",
    b"\x00\x01",
    b"9",
    b"(",
    b")",
    b",",
    b"'O'",
    b"\x08\x00",
    b"\x0c\x00",
    b"\x01\x00",
]


@st.composite
def mutated_npz(draw) -> bytes:
    which = draw(st.integers(0, len(BASES) - 1))
    data = bytearray(BASES[which])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        structural = draw(st.booleans())
        if structural and OFFSETS[which]:
            at = min(draw(st.sampled_from(OFFSETS[which])), len(data) - 1)
        else:
            at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            value = draw(st.sampled_from(INTERESTING))
            data[at : at + len(value)] = value
    return bytes(data)


@FUZZ
@given(mutated_npz())
def test_mutated_npz(data):
    load_or_refuse(data)


def test_unmutated_bases_load():
    for base in BASES:
        assert load_or_refuse(base) is not None


# ---------------------------------------------------------------- 3. random shapes and dtypes through np.savez

DTYPES = [
    "<f4",
    "<f8",
    "<f2",
    ">f8",
    "<i1",
    "<i8",
    "<u8",
    "|b1",
    "<c8",
    "<U3",
    "|S3",
    "<M8[s]",
    "<m8[s]",
    [("a", "<i4"), ("b", "<f2")],
    "object",
]


def _array(shape_strategy):
    @st.composite
    def build(draw):
        shape = draw(shape_strategy)
        dtype = draw(st.sampled_from(DTYPES))
        if dtype == "object":
            values = draw(
                st.lists(
                    st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none()),
                    min_size=int(np.prod(shape)),
                    max_size=int(np.prod(shape)),
                )
            )
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            return arr.reshape(shape)
        arr = draw(hnp.arrays(np.dtype(dtype), shape))
        if draw(st.booleans()) and arr.ndim >= 2:
            arr = np.asfortranarray(arr)
        return arr

    return build()


def _numpy_text(width: int):
    """Any text numpy can hold in '<U{width}' (it drops trailing NULs as padding)."""
    return st.text(max_size=width).map(lambda s: s.rstrip("\x00"))


NUMERIC = ["<f4", "<f8", "<f2", ">f8", "<i1", "<i8", "<u8", "<u1"]


@st.composite
def savez_case(draw):
    """Mostly well-formed arrays (so the loading path is fuzzed too), each field sometimes wild."""
    n = draw(st.sampled_from([10, 11, 16, 25, 25, 0, 3, 9]))
    d = draw(st.sampled_from([2, 3, 6, 6, 0, 1]))
    any_shape = hnp.array_shapes(min_dims=0, max_dims=3, max_side=12)
    col_shape = st.one_of(st.just((n,)), hnp.array_shapes(min_dims=0, max_dims=2, max_side=12))
    finite = st.floats(-1e4, 1e4, width=16)
    emb = draw(
        st.one_of(
            hnp.arrays(st.sampled_from(NUMERIC), (n, d), elements=st.integers(0, 100)),
            hnp.arrays(st.sampled_from(["<f2", "<f4", "<f8"]), (n, d), elements=finite),
            hnp.arrays(st.sampled_from(["<f2", "<f4", "<f8"]), (n, d)),  # NaN, inf and overflow
            _array(st.just((n, d))),
            _array(any_shape),
        )
    )
    labels = draw(
        st.one_of(
            hnp.arrays(st.sampled_from(NUMERIC + ["|b1"]), (n,), elements=st.integers(0, 1)),
            hnp.arrays(np.dtype("<U4"), (n,), elements=_numpy_text(4)),
            hnp.arrays(np.dtype("|S4"), (n,), elements=st.binary(max_size=4).map(lambda b: b.rstrip(b"\x00"))),
            hnp.arrays(st.sampled_from(["<f4", "<f8"]), (n,)),
            _array(col_shape),
        )
    )
    paths = draw(
        st.one_of(
            st.just(np.array([f"/data/{i}.png" for i in range(n)], dtype=str)),
            st.just(np.array([f"/data/ü{i}.png".encode() for i in range(n)])),
            hnp.arrays(np.dtype("<U12"), (n,), elements=_numpy_text(12)),
            _array(col_shape),
        )
    )
    arrays = {"embeddings": emb, "labels": labels, "image_paths": paths}
    if draw(st.integers(0, 3)) == 0:
        arrays["extra"] = draw(_array(hnp.array_shapes(min_dims=0, max_dims=2, max_side=4)))
    drop = draw(st.sampled_from([None] * 9 + ["embeddings", "labels", "image_paths"]))
    if drop:
        del arrays[drop]
    return draw(st.booleans()), arrays


@FUZZ
@given(savez_case())
def test_random_arrays_through_savez(case):
    compressed, arrays = case
    ds = load_or_refuse(npz(compressed, **arrays))
    if ds is not None:  # what loaded is what was saved
        emb = arrays["embeddings"]
        assert ds.n == emb.shape[0] == len(arrays["labels"]) == len(arrays["image_paths"])
        np.testing.assert_array_equal(ds.embeddings, emb.astype(np.float32))
        assert ds.image_paths.tolist() == [
            p.decode() if isinstance(p, bytes) else str(p) for p in arrays["image_paths"].tolist()
        ]


# ---------------------------------------------------------------- 4. zip entries whose fields lie


@st.composite
def lying_zip(draw) -> bytes:
    members = good_members()
    key = draw(st.sampled_from(["embeddings.npy", "labels.npy", "image_paths.npy"]))
    payload = members[key]
    if draw(st.booleans()):  # a header promising a different (maybe huge) shape, over little data
        shape = tuple(draw(st.lists(st.integers(0, 2**40), min_size=0, max_size=3)))
        descr = draw(st.sampled_from(["<f4", "<f8", "<i8", "<U8", "|S2", "|b1"]))
        payload = npy_header(shape, descr) + draw(st.binary(max_size=200))
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, 99, 1234]))
    if method == zipfile.ZIP_DEFLATED:
        comp = __import__("zlib").compressobj(6, 8, -15)
        payload = comp.compress(payload) + comp.flush()
    entry = {"name": key, "payload": payload, "method": method}
    if draw(st.booleans()):
        entry["file_size"] = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 4096)))
    if draw(st.booleans()):
        entry["crc"] = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        entry["flags"] = draw(st.integers(0, 2**16 - 1))
    entries = [{"name": k, "payload": v} for k, v in members.items() if k != key] + [entry]
    return raw_zip(entries)


@FUZZ
@given(lying_zip())
def test_zip_entries_with_lying_fields(data):
    load_or_refuse(data)


def test_fortran_object_and_extra_keys_sanity():
    """Spot checks of the fuzzed space that must come out one way."""
    arrays = good_arrays()
    assert load_or_refuse(npz(True, **dict(arrays, embeddings=np.asfortranarray(arrays["embeddings"])))) is not None
    obj = np.empty(len(arrays["labels"]), dtype=object)
    obj[:] = list(arrays["labels"])
    assert load_or_refuse(npz(True, **dict(arrays, labels=obj))) is None
    assert load_or_refuse(npz(False, **dict(arrays, extra=obj))) is not None
    assert load_or_refuse(npy(arrays["embeddings"])) is None
