"""An NPZ saved uncompressed (np.savez, as the README advises for large data) is read without copying its
embeddings, and the members' local headers and checksums are still checked."""

import io
import struct
import tracemalloc
import zipfile

import numpy as np

from cleaner.io.dataset import load_npz

from .conftest import good_arrays, good_members, refused, zip_of


def _stored_file(tmp_path, arrays: dict[str, np.ndarray]):
    path = tmp_path / "stored.npz"
    np.savez(path, **arrays)
    return path


def test_a_large_stored_npz_is_in_memory_once(tmp_path):
    rng = np.random.default_rng(3)
    n = 20_000
    arrays = {
        "embeddings": rng.normal(size=(n, 256)).astype(np.float32),
        "labels": np.arange(n) % 7,
        "image_paths": np.array([f"img_{i}.png" for i in range(n)]),
    }
    path = _stored_file(tmp_path, arrays)
    size = path.stat().st_size
    tracemalloc.start()
    try:
        data = load_npz(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(data.embeddings, arrays["embeddings"])
    np.testing.assert_array_equal(data.labels, arrays["labels"])
    assert not data.embeddings.flags.writeable
    # the file's bytes, and the small columns' validated copies: no second copy of 20 MB of embeddings
    assert peak < 1.4 * size, (peak, size)


def test_a_stored_member_whose_local_header_is_gone_is_refused():
    data = bytearray(zip_of(good_members(), zipfile.ZIP_STORED))
    assert data[:4] == b"PK\x03\x04"  # the first member's local header, where the directory says it is
    data[:4] = b"XXXX"
    assert "local header" in refused(bytes(data))


def test_a_stored_member_longer_than_the_file_is_refused():
    data = bytearray(zip_of(good_members(), zipfile.ZIP_STORED))
    entry = data.find(b"PK\x01\x02")  # the central directory's entry of the first member, the embeddings
    assert data[entry + 46 : entry + 46 + 14] == b"embeddings.npy"
    struct.pack_into("<LL", data, entry + 20, 10**8, 10**8)  # its compressed and uncompressed sizes
    assert "is truncated" in refused(bytes(data))


def test_a_misaligned_stored_member_loads_aligned(tmp_path):
    arrays = good_arrays()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy")
            info.extra = struct.pack("<HHB", 0xCAFE, 1, 0)  # an odd-length extra field shifts the data by 5 bytes
            stream = io.BytesIO()
            np.save(stream, value)
            zf.writestr(info, stream.getvalue())
    data = load_npz(buf.getvalue())
    assert data.embeddings.ctypes.data % 4 == 0
    np.testing.assert_array_equal(data.embeddings, arrays["embeddings"])
