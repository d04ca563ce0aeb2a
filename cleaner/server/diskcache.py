"""Files in the cache folder: written atomically, bounded in total size, least recently used evicted first."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

STALE_TMP_S = 3600  # a temporary file this old belongs to a writer that died (no live write takes an hour)
_write_error: list[str] = []  # the last reason the cache could not be written, for the page to say once
_error_lock = threading.Lock()


def write_error() -> str | None:
    """Why the cache folder could not be written last time (None when the last write worked)."""
    with _error_lock:
        return _write_error[-1] if _write_error else None


def _note(error: str | None) -> None:
    with _error_lock:
        _write_error[:] = [error] if error else []


def _remove_dead_temporaries(folder: Path) -> None:
    """Temporary files of writes killed midway (a crash, SIGKILL): otherwise they stay, outside the size bound."""
    deadline = time.time() - STALE_TMP_S
    for path in folder.glob("*.tmp"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < deadline:
                path.unlink()


def write_atomically(folder: Path, name: str, data: bytes | Callable[[BinaryIO], None], durable: bool = False) -> Path:
    """Write folder/name through a temporary file in folder, renamed into place: a reader, or a crash, sees the old
    file or the new one, never half of one. `data` is the bytes, or a function writing them to a binary file.
    durable: the bytes reach the disk before the rename (for files whose point is to outlive a crash).
    Raises OSError; no temporary file is left behind."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return folder / name


def evict_oldest(folder: Path, pattern: str, max_bytes: int, keep: Path | None = None) -> None:
    """Delete the files matching pattern least recently modified first until they fit in max_bytes, counting `keep`
    (which is never deleted) among them. Raises OSError when a file goes meanwhile (another process evicting)."""
    files = sorted((p for p in Path(folder).glob(pattern) if p != keep), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files) + (keep.stat().st_size if keep is not None else 0)
    while files and total > max_bytes:
        oldest = files.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink(missing_ok=True)


def store_file(folder: Path, name: str, write: Callable[[BinaryIO], None], pattern: str, max_bytes: int) -> None:
    """Write folder/name atomically, then evict the least recently used files matching pattern until they fit in
    max_bytes. A cache that cannot be written only costs time: the reason is kept for `write_error`."""
    try:
        write_atomically(folder, name, write)
        _remove_dead_temporaries(folder)
        evict_oldest(folder, pattern, max_bytes)
        _note(None)
    except OSError as exc:
        _note(exc.strerror or str(exc))
