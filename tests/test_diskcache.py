"""Files in the cache folder (cleaner/server/diskcache.py): written atomically, dead temporaries removed, the least
recently used evicted first under a byte budget, and the reason a write failed kept for the page."""

import os
import threading
import time

import pytest

from cleaner.server import diskcache
from cleaner.server.diskcache import evict_oldest, store_file, write_atomically, write_error


@pytest.fixture(autouse=True)
def no_error_left_over():
    diskcache._note(None)
    yield
    diskcache._note(None)


def _aged(path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_bytes_or_a_writer_land_whole_and_nothing_else_is_left(tmp_path):
    folder = tmp_path / "new" / "folder"  # created on the way
    assert write_atomically(folder, "a.bin", b"first") == folder / "a.bin"
    assert (folder / "a.bin").read_bytes() == b"first"
    write_atomically(folder, "a.bin", lambda fh: fh.write(b"second"), durable=True)  # replaces the file
    assert (folder / "a.bin").read_bytes() == b"second"
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    write_atomically(tmp_path, "a.bin", b"old")

    def half(fh) -> None:
        fh.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(tmp_path, "a.bin", half)
    assert (tmp_path / "a.bin").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_readers_never_see_half_a_file(tmp_path):
    sizes = [1 << 10, 1 << 20]
    contents = [bytes([i]) * size for i, size in enumerate(sizes)]
    write_atomically(tmp_path, "f", contents[0])
    stop = threading.Event()
    seen: set[bytes] = set()

    def read() -> None:
        while not stop.is_set():
            seen.add((tmp_path / "f").read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(40):
            write_atomically(tmp_path, "f", contents[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen <= set(contents)


def test_evict_oldest_first_until_within_the_budget(tmp_path):
    for age, name in enumerate(["e.npy", "d.npy", "c.npy", "b.npy", "a.npy"]):  # a.npy the oldest
        (tmp_path / name).write_bytes(b"x" * 100)
        _aged(tmp_path / name, 100 * age)
    (tmp_path / "other.txt").write_bytes(b"y" * 1000)  # not matched by the pattern: neither counted nor evicted
    evict_oldest(tmp_path, "*.npy", 250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npy", "e.npy", "other.txt"]
    evict_oldest(tmp_path, "*.npy", 200)  # already within: nothing goes
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["d.npy", "e.npy"]


def test_evict_oldest_never_removes_the_file_to_keep(tmp_path):
    for age, name in enumerate(["new.csv", "mid.csv", "old.csv"]):
        (tmp_path / name).write_bytes(b"x" * 100)
        _aged(tmp_path / name, 100 * age)
    keep = tmp_path / "old.csv"  # say, the list just saved, with an old time
    evict_oldest(tmp_path, "*.csv", 150, keep=keep)  # keep counts: 100 of the 150
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"]
    evict_oldest(tmp_path, "*.csv", 0, keep=keep)
    assert keep.exists()


def test_store_file_keeps_the_newest_within_the_budget(tmp_path):
    for i in range(6):
        store_file(tmp_path, f"g{i}.npz", lambda fh, i=i: fh.write(bytes([i]) * 400), "g*.npz", 1000)
        _aged(tmp_path / f"g{i}.npz", 100 * (6 - i))  # each written later than the one before
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["g4.npz", "g5.npz"]
    assert (tmp_path / "g5.npz").read_bytes() == bytes([5]) * 400
    assert write_error() is None


def test_store_file_removes_dead_temporaries_only(tmp_path):
    dead, live = tmp_path / "dead.tmp", tmp_path / "live.tmp"
    dead.write_bytes(b"x" * 10)
    live.write_bytes(b"x" * 10)
    _aged(dead, diskcache.STALE_TMP_S + 60)  # a writer that died long ago
    _aged(live, diskcache.STALE_TMP_S - 600)  # may be another process's write still under way
    store_file(tmp_path, "a.npy", lambda fh: fh.write(b"data"), "*.npy", 10**6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "live.tmp"]


def test_a_cache_that_cannot_be_written_says_why_once_and_recovers(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")  # refused even to root, unlike chmod
    store_file(blocker, "a.npy", lambda fh: fh.write(b"data"), "*.npy", 10**6)  # no exception: it only costs time
    assert write_error()
    store_file(tmp_path / "ok", "a.npy", lambda fh: fh.write(b"data"), "*.npy", 10**6)
    assert write_error() is None and (tmp_path / "ok" / "a.npy").read_bytes() == b"data"
