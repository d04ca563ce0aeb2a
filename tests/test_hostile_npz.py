"""load_npz on hostile files: pickles, zip bombs, lying headers, truncation, encryption, odd zips.

Every case must end in DatasetError with a message that says what is wrong, run no code, and use
memory bounded by the limits rather than by what the file claims.
"""

from __future__ import annotations

import io
import pickle
import struct
import tracemalloc
import warnings
import zipfile
import zlib
from contextlib import contextmanager

import numpy as np
import pytest

from cleaner.io.dataset import load_npz
from cleaner.server.limits import MAX_MEMBERS

from .conftest import MB, N, good_arrays, good_members, good_npz, npy, npy_header, raw_npy, raw_zip, refused, zip_of

# numpy warnings from the loader (overflow in a cast, ...) are bugs here, not noise
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


# ---------------------------------------------------------------- raw zip building and patching


def deflated(parts: list[bytes], zeros_mb: int = 0) -> tuple[bytes, int, int]:
    """Raw deflate of parts followed by zeros_mb MiB of zeros, built fast: one fully flushed block of
    1 MiB of zeros repeated. Returns (stream, crc32, uncompressed size)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream, crc, size = bytearray(), 0, 0
    for part in parts:
        stream += comp.compress(part)
        crc, size = zlib.crc32(part, crc), size + len(part)
    stream += comp.flush(zlib.Z_FULL_FLUSH)
    if zeros_mb:
        block_comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        zero_block = block_comp.compress(b"\0" * MB) + block_comp.flush(zlib.Z_FULL_FLUSH)
        stream += zero_block * zeros_mb
        zeros = b"\0" * MB
        for _ in range(zeros_mb):
            crc = zlib.crc32(zeros, crc)
        size += zeros_mb * MB
    stream += comp.flush(zlib.Z_FINISH)
    return bytes(stream), crc, size


def members_with(**replace: dict) -> list[dict]:
    """The three good members as stored raw entries, with some entries replaced."""
    entries = {name: {"name": name, "payload": data} for name, data in good_members().items()}
    for key, entry in replace.items():
        entries[f"{key}.npy"] = {"name": f"{key}.npy", **entry}
    return list(entries.values())


def patch_member(data: bytes, name: str, **fields: int) -> bytes:
    """Overwrite header fields (flags, method, crc, compress_size, file_size) of one member in both the
    local header and the central directory of a zip written by zipfile."""
    local = {
        "flags": (6, "<H"),
        "method": (8, "<H"),
        "crc": (14, "<I"),
        "compress_size": (18, "<I"),
        "file_size": (22, "<I"),
    }
    central = {
        "flags": (8, "<H"),
        "method": (10, "<H"),
        "crc": (16, "<I"),
        "compress_size": (20, "<I"),
        "file_size": (24, "<I"),
    }
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        lh = zf.getinfo(name).header_offset
        pos = zf.start_dir
    buf = bytearray(data)
    while True:
        assert buf[pos : pos + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack_from("<3H", buf, pos + 28)
        if buf[pos + 46 : pos + 46 + name_len] == name.encode():
            break
        pos += 46 + name_len + extra_len + comment_len
    assert buf[lh : lh + 4] == b"PK\x03\x04"
    for field, value in fields.items():
        for base, table in ((lh, local), (pos, central)):
            offset, fmt = table[field]
            struct.pack_into(fmt, buf, base + offset, value)
    return bytes(buf)


@contextmanager
def peak_memory(limit_bytes: int):
    """Fail if Python and numpy allocations inside the block peak above limit_bytes."""
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit_bytes, f"peak {peak / MB:.1f} MB > {limit_bytes / MB:.1f} MB"


def test_raw_zip_builder_makes_loadable_npz():
    assert load_npz(raw_zip(members_with())).n == N


# ---------------------------------------------------------------- pickles never run


class _CreatesMarker:
    """Unpickling this calls open(marker, 'w'): a harmless stand-in for running any code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_npy(marker) -> bytes:
    arr = np.empty(N, dtype=object)
    arr[:] = [_CreatesMarker(marker) for _ in range(N)]
    return npy(arr)


def test_pickle_payload_is_live_when_numpy_is_told_to_trust_it(tmp_path):
    """Proof that the payload below would run code, so its absence later means something."""
    marker = tmp_path / "pwned"
    np.load(io.BytesIO(_evil_npy(marker)), allow_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("key", ["embeddings", "labels", "image_paths", "extra"])
def test_object_array_with_pickle_is_refused_and_never_unpickled(tmp_path, key):
    marker = tmp_path / "pwned"
    members = good_members()
    members[f"{key}.npy"] = _evil_npy(marker)
    if key == "extra":
        assert load_npz(zip_of(members)).n == N  # other keys are never opened
    else:
        message = refused(zip_of(members))
        assert f"'{key}' holds Python objects" in message and "never unpickles" in message
    assert not marker.exists()


def test_structured_dtype_with_an_object_field_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(N, dtype=[("x", "<f4"), ("o", "O")])
    arr["o"] = [_CreatesMarker(marker) for _ in range(N)]
    message = refused(zip_of({**good_members(), "labels.npy": npy(arr)}))
    assert "Python objects" in message
    assert not marker.exists()


def test_pickle_file_and_pickle_member(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_CreatesMarker(marker))
    assert "pickle" in refused(payload)
    assert "lacks the .npy signature" in refused(zip_of({**good_members(), "labels.npy": payload}))
    assert not marker.exists()


def test_header_with_code_is_not_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    header = f"{{'descr': __import__('builtins').open({str(marker)!r}, 'w'), 'fortran_order': False, 'shape': (3,), }}"
    message = refused(zip_of({**good_members(), "embeddings.npy": raw_npy(header)}))
    assert "bad .npy header" in message
    assert not marker.exists()


# ---------------------------------------------------------------- lying .npy headers


@pytest.mark.parametrize(
    "header, words, kwargs",
    [
        (npy_header((10**12, 512)), ["1,000,000,000,000 rows", "at most 1,000,000"], {}),
        (npy_header((10**12, 512)), ["declares", "MB of data", "limit"], {"max_rows": 10**13}),
        (npy_header((100_000, 512)), ["declares 195 MB of data", "limit is 8.0 MB"], {"max_bytes": 8 * MB}),
        (npy_header((400_000, 1000)), ["truncated", "promises 1,526 MB"], {}),  # allowed size, no data
        (npy_header((0, 10**18)), ["0 rows"], {}),
        (npy_header((N, 10**18)), ["dimensions", "at most 4,096"], {}),
        (npy_header((N, -4)), ["negative shape"], {}),
        (npy_header((1,) * 70), ["70 dimensions"], {}),
        (npy_header((N, 4), descr="<U0"), ["unusable data type"], {}),
        (npy_header((N, 4), descr="|V0"), ["unusable data type"], {}),
        (npy_header((N, 4), descr="|O"), ["Python objects"], {}),
        (npy_header((N, 4), descr="|V99999999999999"), ["bad .npy header"], {}),
        (
            raw_npy("{'descr': [('a', '<f4', (100000, 100000))], 'fortran_order': False, 'shape': (24, 4), }"),
            ["bad .npy header"],
            {},
        ),
        (raw_npy("{'descr': ('<f4', (4,)), 'fortran_order': False, 'shape': (24, 4), }"), ["unusable data type"], {}),
        (raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (24, 4), 'extra': 1}"), ["bad .npy header"], {}),
        (raw_npy("{'descr': '<f4', 'fortran_order': 'no', 'shape': (24, 4), }"), ["bad .npy header"], {}),
        (raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': [24, 4], }"), ["bad .npy header"], {}),
        (raw_npy("(" * 4000 + ")" * 4000), ["bad .npy header"], {}),
        (raw_npy("1+" * 3000 + "1"), ["bad .npy header"], {}),  # RecursionError inside ast
        (raw_npy("-" * 9000 + "1"), ["bad .npy header"], {}),  # MemoryError inside the parser
        (raw_npy("{" * 4000), ["bad .npy header"], {}),  # tokenize.TokenError
        (raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (24, 4), }", version=(9, 9)), ["version 9.9"], {}),
        (b"\x93NUMPY\x02\x00" + struct.pack("<I", 4_000_000_000) + b"{", ["4,000,000,000-byte .npy header"], {}),
        (b"\x93NUMPY\x01\x00\x00\x01{'descr'", ["truncated inside its .npy header"], {}),
        (b"\x93NUMPY\x01", ["lacks the .npy signature"], {}),
        (b"", ["lacks the .npy signature"], {}),
        (npy_header((N, 4)) + b"\0" * 10, ["truncated", "only 10 bytes"], {}),
    ],
    ids=[
        "huge-rows",
        "huge-bytes",
        "over-budget",
        "promise-no-data",
        "zero-by-huge",
        "huge-dims",
        "negative",
        "70-dims",
        "U0",
        "V0",
        "object-descr",
        "huge-void",
        "huge-subarray",
        "subarray-descr",
        "extra-key",
        "bad-fortran",
        "list-shape",
        "deep-nesting",
        "recursion",
        "parser-memory",
        "token-error",
        "version-9",
        "4GB-header-length",
        "cut-header",
        "cut-magic",
        "empty-member",
        "short-data",
    ],
)
def test_lying_npy_headers_are_refused_cheaply(header, words, kwargs):
    data = zip_of({**good_members(), "embeddings.npy": header})
    with peak_memory(16 * MB):
        message = refused(data, **kwargs)
    for word in words:
        assert word in message, message


def test_huge_column_header_is_refused_before_reading():
    data = zip_of({**good_members(), "labels.npy": npy_header((10**12,), descr="<i8")})
    with peak_memory(16 * MB):
        assert f"has 1,000,000,000,000 entries but 'embeddings' has {N} rows" in refused(data)


# ---------------------------------------------------------------- zip bombs

BOMB_MB = 200


@pytest.fixture(scope="module")
def zero_bomb():
    """An embeddings member whose header declares (N, 6) float32 and whose deflate stream then holds
    200 MiB more of zeros: ~200 kB on disk."""
    arr = good_arrays()["embeddings"]
    head = npy(arr)
    stream, crc, size = deflated([head], zeros_mb=BOMB_MB)
    assert len(stream) < 400_000 and size > BOMB_MB * MB
    return head, stream, crc, size


def test_bomb_with_honest_sizes_is_refused_from_the_directory(zero_bomb):
    head, stream, crc, size = zero_bomb
    data = raw_zip(members_with(embeddings=dict(payload=stream, method=zipfile.ZIP_DEFLATED, crc=crc, file_size=size)))
    with peak_memory(4 * MB + len(data)):
        message = refused(data, max_bytes=64 * MB)
    assert "'embeddings' would take 200 MB once decompressed" in message and "limit is 64 MB" in message


def test_bomb_declaring_a_small_size_inflates_no_further(zero_bomb):
    """The directory says the member is a little larger than its array; the stream holds 200 MiB more.
    zipfile stops at the declared size, load_npz reads the array and finds the CRC wrong."""
    head, stream, crc, size = zero_bomb
    small = len(head) + 100
    data = raw_zip(members_with(embeddings=dict(payload=stream, method=zipfile.ZIP_DEFLATED, crc=crc, file_size=small)))
    with peak_memory(4 * MB + len(data)):
        message = refused(data)
    assert "'embeddings' inside the NPZ is corrupt" in message and "CRC" in message
    # The same with the CRC patched to match the declared prefix: it loads, having read only that prefix.
    prefix_crc = zlib.crc32(head + b"\0" * 100)
    data = raw_zip(
        members_with(embeddings=dict(payload=stream, method=zipfile.ZIP_DEFLATED, crc=prefix_crc, file_size=small))
    )
    with peak_memory(4 * MB + len(data)):
        ds = load_npz(data)
    np.testing.assert_array_equal(ds.embeddings, good_arrays()["embeddings"])


def test_bomb_patched_into_a_zipfile_written_archive(zero_bomb):
    """The brief's recipe: write a normal zip of a big zero array, then patch both headers' sizes."""
    buf = io.BytesIO()
    big = np.zeros((20_000, 1000), dtype=np.float32)  # 76 MiB of zeros, ~80 kB deflated
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in good_members().items():
            zf.writestr(name, npy(big) if name == "embeddings.npy" else blob)
    del big
    honest = buf.getvalue()
    assert len(honest) < 200_000
    with zipfile.ZipFile(io.BytesIO(honest)) as zf, zf.open("embeddings.npy") as fh:
        first_1000 = fh.read(1000)
    with peak_memory(4 * MB + 2 * len(honest)):
        assert "would take 76 MB once decompressed" in refused(honest, max_bytes=64 * MB)
        lying = patch_member(honest, "embeddings.npy", file_size=1000)
        # zipfile stops inflating at the declared 1000 bytes and then finds the CRC wrong
        assert "CRC" in refused(lying)
        # with the CRC patched too, the header's promise meets the declared size
        lying = patch_member(lying, "embeddings.npy", crc=zlib.crc32(first_1000))
        message = refused(lying)  # default 2 GiB limit: the header's 76 MiB would be allowed
        assert "truncated" in message and "promises 76 MB" in message and "holds only 872 bytes" in message
        assert "declares 76 MB of data" in refused(lying, max_bytes=64 * MB)
        impossible = patch_member(honest, "embeddings.npy", file_size=1_500 * MB)
        assert "impossible" in refused(impossible)


def test_stored_member_whose_sizes_disagree_is_refused():
    data = zip_of(good_members(), zipfile.ZIP_STORED)
    info_size = len(good_members()["embeddings.npy"])
    assert "impossible" in refused(patch_member(data, "embeddings.npy", file_size=info_size * 100))


def test_many_bombs_in_one_file_share_one_budget():
    """Each member within the limit, together over it: the budget is for all arrays."""
    arrays = dict(
        good_arrays(),
        embeddings=np.zeros((N, 150_000), dtype=np.float32),  # 13.7 MiB, tiny deflated
        labels=np.zeros(N, dtype="<U150000"),
    )  # 13.7 MiB more
    message = refused(_savez(arrays), max_bytes=20 * MB, max_dims=200_000)
    assert "'labels'" in message and "limit" in message


# ---------------------------------------------------------------- truncated and corrupt zips


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_every_truncation_is_refused(compression):
    data = zip_of(good_members(), compression)
    for cut in range(len(data)):
        message = refused(data[:cut])
        assert any(w in message for w in ("empty", "zip", "truncated", "corrupt", "single .npy")), (cut, message)


def test_byte_flip_in_stored_array_data_fails_the_crc():
    data = bytearray(zip_of(good_members(), zipfile.ZIP_STORED))
    head = npy(good_arrays()["embeddings"])
    at = bytes(data).find(head) + len(head) - 10  # inside the float data
    data[at] ^= 0x40
    message = refused(bytes(data))
    assert "'embeddings' inside the NPZ is corrupt" in message and "CRC" in message


def test_corrupt_deflate_stream_is_refused():
    data = bytearray(good_npz())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("embeddings.npy")
    start = info.header_offset + 30 + len(info.filename)
    data[start : start + 40] = b"\xff" * 40
    message = refused(bytes(data))
    assert "'embeddings' inside the NPZ is corrupt" in message


def test_local_header_name_mismatch_is_refused():
    data = bytearray(zip_of(good_members(), zipfile.ZIP_STORED))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        offset = zf.getinfo("labels.npy").header_offset
    data[offset + 30 : offset + 31] = b"X"
    assert "'labels' inside the NPZ is corrupt" in refused(bytes(data))


# ---------------------------------------------------------------- encryption, methods, odd archives


def test_encrypted_member_is_refused():
    data = zip_of(good_members(), zipfile.ZIP_DEFLATED)
    message = refused(patch_member(data, "labels.npy", flags=0x1))
    assert "'labels' is encrypted" in message and "password" in message


@pytest.mark.parametrize(
    "compression, words",
    [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")],
    ids=["bzip2", "lzma"],
)
def test_compression_methods_zipfile_cannot_bound_are_refused(compression, words):
    """zipfile inflates bzip2/LZMA chunks without an output cap, so a tiny chunk could explode."""
    message = refused(zip_of(good_members(), compression))
    assert words in message and "stored or deflate" in message


@pytest.mark.parametrize("method, words", [(99, "AES encryption"), (77, "method 77")])
def test_unknown_compression_methods_are_refused(method, words):
    data = zip_of(good_members(), zipfile.ZIP_STORED)
    assert words in refused(patch_member(data, "embeddings.npy", method=method))


def test_hundreds_of_members_are_refused_and_the_maximum_loads():
    members = good_members()
    many = {**members, **{f"extra_{i}.npy": npy(np.arange(2)) for i in range(300)}}
    assert "303 files" in refused(zip_of(many, zipfile.ZIP_STORED))
    just = {**members, **{f"extra_{i}.npy": b"" for i in range(MAX_MEMBERS - 3)}}
    assert load_npz(zip_of(just, zipfile.ZIP_STORED)).n == N
    over = {**just, "one_more.npy": b""}
    assert f"at most {MAX_MEMBERS}" in refused(zip_of(over, zipfile.ZIP_STORED))


def test_huge_table_of_contents_is_refused_before_parsing():
    entries = members_with() + [{"name": "", "payload": b""} for _ in range(25_000)]
    data = raw_zip(entries)
    with peak_memory(8 * MB + 2 * len(data)):
        message = refused(data)
    assert "table of contents" in message


def test_end_record_lying_about_the_directory_is_refused():
    data = bytearray(zip_of(good_members()))
    struct.pack_into("<I", data, len(data) - 22 + 12, 0xFFFF0000)  # central directory size
    message = refused(bytes(data))
    assert "table of contents" in message or "not a valid zip" in message


def zip64_end(data: bytes, directory_size: int | None = None, locator_points_to: int | None = None) -> bytes:
    """The archive with zip64 end records (as zip64 writers leave them) before its end record, whose 32-bit
    fields then say "see zip64". The zip64 record may declare another directory size, and the locator may
    point somewhere other than the record just before it."""
    end = len(data) - 22
    assert data[end : end + 4] == b"PK\x05\x06"
    entries, size, offset = struct.unpack_from("<H2I", data, end + 10)
    record_at = end
    record = struct.pack(
        "<4sQ2H2I4Q",
        b"PK\x06\x06",
        44,
        45,
        45,
        0,
        0,
        entries,
        entries,
        size if directory_size is None else directory_size,
        offset,
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, record_at if locator_points_to is None else locator_points_to, 1)
    classic = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:end] + record + locator + classic


def test_zip64_end_records_are_read_and_bounded():
    data = zip_of(good_members())
    with zipfile.ZipFile(io.BytesIO(zip64_end(data))) as zf:
        assert len(zf.infolist()) == 3  # zipfile reads the directory through the zip64 record
    assert load_npz(zip64_end(data)).n == N
    assert "table of contents" in refused(zip64_end(data, directory_size=0xFFFF0000))
    assert "table of contents" in refused(zip64_end(data, directory_size=(1 << 20) + 1))


def test_zip64_locator_pointing_at_a_lying_record_is_refused():
    """Readers that follow the locator's offset would read the first record; those that look just before
    the locator, the second. A guard must see both."""
    data = zip_of(good_members())
    liar = struct.pack("<4sQ2H2I4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 3, 3, 0xFFFF0000, 0)
    prefixed = liar + data  # the zip's own offsets now count from after the liar, as in a self-extractor
    assert "table of contents" in refused(zip64_end(prefixed, locator_points_to=0))


def test_end_record_behind_a_comment_is_found_and_bounded():
    data = bytearray(zip_of(good_members()))
    comment = b"saved by a tool that signs its archives " * 20
    struct.pack_into("<H", data, len(data) - 2, len(comment))
    honest = bytes(data) + comment
    assert load_npz(honest).n == N
    lying = bytearray(honest)
    struct.pack_into("<I", lying, len(data) - 22 + 12, 0xFFFF0000)
    assert "table of contents" in refused(bytes(lying))


def test_end_record_hidden_in_the_comment_is_the_one_judged():
    """zipfile takes the last end-record signature in the file's final 64 KiB: one planted in the comment."""
    data = bytearray(zip_of(good_members()))
    planted = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 3, 3, 0xFFFF0000, 0, 0)
    struct.pack_into("<H", data, len(data) - 2, len(planted))
    assert "table of contents" in refused(bytes(data) + planted)


def test_prefix_comment_zip64_and_duplicates():
    """Archives that are odd but honest load."""
    members = good_members()
    prefixed = b"#!/bin/sh\necho self-extracting\n" * 10 + zip_of(members)
    assert load_npz(prefixed).n == N
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.comment = b"made by hand" * 100
        for name, blob in members.items():
            with zf.open(name, "w", force_zip64=True) as fh:
                fh.write(blob)
    assert load_npz(buf.getvalue()).n == N
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("embeddings.npy", npy(np.zeros((3, 3))))
            for name, blob in members.items():
                zf.writestr(name, blob)
    assert load_npz(buf.getvalue()).n == N  # the last entry of a name wins, as in zipfile


def test_nested_npz_and_path_like_member_names():
    members = good_members()
    nested = zip_of(
        {
            "embeddings.npy": good_npz(),
            "labels.npy": members["labels.npy"],
            "image_paths.npy": members["image_paths.npy"],
        }
    )
    assert "lacks the .npy signature" in refused(nested)
    traversal = zip_of({f"../../{k}": v for k, v in members.items()})
    assert "missing 'embeddings'" in refused(traversal)


def test_non_utf8_member_names_do_not_crash():
    data = bytearray(raw_zip(members_with() + [{"name": "xx.npy", "payload": b""}]))
    at = bytes(data).rfind(b"xx.npy")
    data[at : at + 2] = b"\xff\xfe"
    assert load_npz(bytes(data)).n == N  # cp437 decodes any byte
    flagged = bytearray(data)
    cd = bytes(flagged).rfind(b"PK\x01\x02")
    struct.pack_into("<H", flagged, cd + 8, 0x800)  # "names are UTF-8", but they are not
    assert "not a valid zip archive" in refused(bytes(flagged))


# ---------------------------------------------------------------- memory of valid but heavy files


@pytest.mark.parametrize(
    "overrides",
    [
        {"embeddings": np.ones((20_000, 350), np.int8)},  # float32 copy is 4x the file's array
        {"embeddings": np.ones((20_000, 45), np.float64)},
        {"labels": np.array([b"x" * 256] * 20_000)},  # bytes become 4-byte unicode
        {"image_paths": np.array([b"/" + b"x" * 300] * 20_000)},
    ],
    ids=["int8-embeddings", "float64-embeddings", "long-byte-labels", "long-byte-paths"],
)
def test_peak_memory_is_a_small_multiple_of_the_limit(overrides):
    n = 20_000
    arrays = {
        "embeddings": np.ones((n, 4), np.float32),
        "labels": np.zeros(n, np.int64),
        "image_paths": np.array([f"/d/{i}.png" for i in range(n)]),
        **overrides,
    }
    data = _savez(arrays)
    limit = 8 * MB
    assert sum(a.nbytes for a in arrays.values()) < limit
    with peak_memory(10 * limit):
        assert load_npz(data, max_bytes=limit).n == n


def _savez(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()
