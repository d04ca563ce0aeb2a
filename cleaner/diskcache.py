"""Files in the cache folder: written atomically, bounded in total size, least recently used evicted first."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


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
        files = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
    except OSError:
        pass
