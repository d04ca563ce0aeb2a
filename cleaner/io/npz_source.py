"""Where an NPZ comes from (a path, its bytes or an open file) read into memory, bounded, in words for users."""

from __future__ import annotations

import os
from typing import BinaryIO

from cleaner.io import bounded_read as br
from cleaner.io.dataset_types import DatasetError
from cleaner.server.text import mb, one_line, shown

NpzSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def too_large(what: str, size: int, limit: int) -> DatasetError:
    return DatasetError(f"{what} is {mb(size)}; this server accepts files up to {mb(limit)}.")


def read_source(source: NpzSource, limit: int) -> bytes:
    """Read the whole source, refusing anything larger than `limit` bytes without reading past it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        with memoryview(source) as view:
            if view.nbytes > limit:
                raise too_large("The file", view.nbytes, limit)
            return source if type(source) is bytes else view.tobytes()
    if isinstance(source, (str, os.PathLike)):
        return _read_path(source, limit)
    if not callable(getattr(source, "read", None)):
        raise DatasetError(
            f"Cannot read a {type(source).__name__}: give a file path, the file's bytes or a file opened with 'rb'."
        )
    try:
        return br.read_stream(source, limit)
    except br.ReadRefused as refusal:
        raise _stream_error(refusal, limit) from refusal


def _read_path(source: str | os.PathLike, limit: int) -> bytes:
    try:
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"That is not a usable file path ({one_line(exc)}).") from exc
    if not path.strip():
        raise DatasetError("No file path was given.")
    if "\x00" in path:
        raise DatasetError(f"The path {shown(path)} contains a NUL character, which no file name can hold.")
    try:
        return br.read_file(path, limit)
    except br.ReadRefused as refusal:
        raise _path_error(refusal, path, limit) from None


def _path_error(refusal: br.ReadRefused, path: str, limit: int) -> DatasetError:
    where = shown(path)
    if refusal.kind == br.MISSING:
        return DatasetError(f"There is no file at {where}.")
    if refusal.kind == br.FOLDER:
        return DatasetError(f"{where} is a folder, not an NPZ file.")
    if refusal.kind == br.NOT_REGULAR:
        return DatasetError(f"{where} is not a regular file (it is a device, pipe or socket).")
    if refusal.kind == br.TOO_LARGE and refusal.size is not None:
        return too_large(shown(os.path.basename(path)) or where, refusal.size, limit)
    if refusal.kind == br.CANNOT_OPEN:
        return DatasetError(f"Could not open {where}: {refusal.detail}.")
    return _stream_error(refusal, limit)


def _stream_error(refusal: br.ReadRefused, limit: int) -> DatasetError:
    if refusal.kind == br.TOO_LARGE:
        return DatasetError(f"The file is larger than this server's limit of {mb(limit)}.")
    if refusal.kind == br.TEXT_MODE:
        return DatasetError("The file was opened as text; open it in binary mode ('rb').")
    if refusal.kind == br.NOT_BYTES:
        return DatasetError(f"Reading the file gave a {refusal.detail}, not bytes.")
    return DatasetError(f"Could not read the file: {refusal.detail or refusal.kind}.")


def source_name(source: object) -> str:
    """The name to show for a dataset read from source: the file's name, or 'upload.npz' for bytes and streams."""
    try:
        if isinstance(source, (str, os.PathLike)):
            return os.path.basename(os.fsdecode(os.fspath(source))) or "dataset"
        name = getattr(source, "name", None)
        return (os.path.basename(name) or "upload.npz") if isinstance(name, str) else "upload.npz"
    except Exception:  # a path-like whose __fspath__ raises: the name is only for display
        return "dataset"
