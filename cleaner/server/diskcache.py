"""Files in the cache folder: written atomically, bounded in total size, least recently used evicted first."""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable

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


def store_file(folder: Path, name: str, write: Callable[[BinaryIO], None], pattern: str, max_bytes: int) -> None:
    """Write folder/name through a temporary file (readers never see half a file), then evict the least recently
    used files matching pattern until they fit in max_bytes. A cache that cannot be written only costs time."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.replace(tmp, folder / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
        _remove_dead_temporaries(folder)
        files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
        _note(None)
    except OSError as exc:
        _note(exc.strerror or str(exc))
