"""Read a whole file or stream into memory, never more than a limit, and files only if they are regular files.

Used for NPZ files (paths, uploads, bytes) and image files alike. Refusals carry a `kind`, so each caller
words them for its own readers.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from cleaner.server.text import one_line

# O_NONBLOCK: a FIFO put where the file was must not hang the server; the fstat check then refuses it.
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
CHUNK = 1 << 20

# ReadRefused.kind
MISSING = "missing"
FOLDER = "folder"
NOT_REGULAR = "not a regular file"
TOO_LARGE = "too large"
CANNOT_OPEN = "cannot open"
UNREADABLE = "unreadable"
TEXT_MODE = "opened as text"
NOT_BYTES = "not bytes"

PathArg = str | bytes | os.PathLike


class ReadRefused(Exception):
    """Why a file or stream was not read.

    `kind` is one of the constants above, `detail` the system's reason (may be empty) and `size` the file's
    size when it was known before reading.
    """

    def __init__(self, kind: str, detail: str = "", size: int | None = None):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind, self.detail, self.size = kind, detail, size


def _reason(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else "") or one_line(exc)


def check_regular(st: os.stat_result, limit: int) -> None:
    """Refuse folders, devices, pipes and sockets, and files over `limit` bytes."""
    if stat.S_ISDIR(st.st_mode):
        raise ReadRefused(FOLDER)
    if not stat.S_ISREG(st.st_mode):
        raise ReadRefused(NOT_REGULAR)
    if st.st_size > limit:
        raise ReadRefused(TOO_LARGE, size=st.st_size)


def read_file(path: PathArg, limit: int) -> bytes | bytearray:
    """The bytes of the regular file at path, refusing one over `limit` bytes without reading past the limit.

    Checked on the open descriptor, so a file swapped after an earlier check (for a FIFO, a device or
    something huge) is still refused or bounded.
    """
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise ReadRefused(MISSING) from None
    except IsADirectoryError:
        raise ReadRefused(FOLDER) from None
    except (OSError, ValueError) as exc:
        raise ReadRefused(CANNOT_OPEN, _reason(exc)) from None
    try:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise ReadRefused(UNREADABLE, _reason(exc)) from None
        check_regular(st, limit)
        fh = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    with fh:
        return _read_regular(fh, limit, st.st_size)


def _read_regular(fh: BinaryIO, limit: int, size: int) -> bytes | bytearray:
    """A regular file of `size` bytes (fstat's word, at most `limit`), read straight into one buffer: a file of
    gigabytes is neither read in pieces nor joined (Linux reads at most 2 GiB per call). If the file grew since
    fstat, the rest is read bounded by `limit`."""
    buffer = bytearray(size + 1)  # the one byte more tells a file that grew
    got = 0
    try:
        with memoryview(buffer) as view:
            while got < len(buffer):
                n = fh.readinto(view[got:])
                if not n:
                    break
                got += n
    except Exception as exc:
        raise ReadRefused(UNREADABLE, _reason(exc)) from exc
    if got <= size:
        del buffer[got:]  # the file shrank since fstat, or exactly its size: keep what is there
        return buffer
    if got > limit:
        raise ReadRefused(TOO_LARGE)
    return bytes(buffer) + read_stream(fh, limit - got)


def read_stream(fh: BinaryIO, limit: int) -> bytes:
    """Read a binary stream to its end, but never more than `limit` + 1 bytes (the one tells it was over)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = fh.read(max(1, min(CHUNK, limit + 1 - total)))
        except Exception as exc:  # OSError, or whatever a broken upload stream raises
            raise ReadRefused(UNREADABLE, _reason(exc)) from exc
        if chunk is None:  # a non-blocking stream with nothing to give now
            raise ReadRefused(UNREADABLE, "the stream has no data available")
        if isinstance(chunk, str):
            raise ReadRefused(TEXT_MODE)
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ReadRefused(NOT_BYTES, type(chunk).__name__)
        if not len(chunk):
            break
        chunk = bytes(chunk)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ReadRefused(TOO_LARGE)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_up_to(fh: BinaryIO, n: int) -> bytes:
    """Up to n bytes; fewer only at the end of the stream."""
    parts, got = [], 0
    while got < n:
        part = fh.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)
