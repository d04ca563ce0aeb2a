"""The three arrays of an NPZ checked for what cleaner needs: numeric finite embeddings, one label and one
usable path per row. Header-only checks run before the data is read; the rest on the arrays."""

from __future__ import annotations

import numpy as np

from cleaner.io.dataset_types import DatasetError
from cleaner.server.limits import MAX_LABEL_CHARS, MAX_PATH_CHARS, MIN_ROWS


def check_embeddings(shape: tuple[int, ...], dtype: np.dtype, max_rows: int, max_dims: int) -> None:
    """Everything about the embeddings that their header alone tells."""
    if len(shape) != 2:
        raise DatasetError(
            f"'embeddings' must be a 2-D array [N, D] (one row per image); got {len(shape)}-D with shape {shape}."
        )
    kind = dtype.kind
    if kind == "c":
        raise DatasetError("'embeddings' are complex numbers; cleaner needs real floats.")
    if kind == "b":
        raise DatasetError("'embeddings' are booleans (dtype bool); cleaner needs numeric floats.")
    if kind not in "fiu":
        raise DatasetError(f"'embeddings' must be numeric floats; got dtype {dtype}.")
    n, d = shape
    if n < MIN_ROWS:
        raise DatasetError(f"'embeddings' has {n} rows; cleaner needs at least {MIN_ROWS} images.")
    if d < 2:
        raise DatasetError(f"'embeddings' has {d} column(s); an embedding needs at least 2 dimensions.")
    if n > max_rows:
        raise DatasetError(f"The dataset has {n:,} rows; this server accepts at most {max_rows:,}.")
    if d > max_dims:
        raise DatasetError(f"The embeddings have {d:,} dimensions; this server accepts at most {max_dims:,}.")


def check_column(key: str, shape: tuple[int, ...], n: int) -> None:
    """Labels and paths: one entry per row of the embeddings."""
    what = "label" if key == "labels" else "path"
    if len(shape) != 1:
        raise DatasetError(f"'{key}' must be 1-D with one {what} per image; got shape {shape}.")
    if shape[0] != n:
        raise DatasetError(f"'{key}' has {shape[0]:,} entries but 'embeddings' has {n:,} rows.")


_FINITE_ROWS = 16_384


def validate_embeddings(raw: np.ndarray, max_rows: int, max_dims: int) -> np.ndarray:
    """C-contiguous float32 embeddings with no NaN or infinite value."""
    check_embeddings(raw.shape, raw.dtype, max_rows, max_dims)
    with np.errstate(over="ignore", invalid="ignore"):
        emb = np.ascontiguousarray(raw, dtype=np.float32)
    if raw.dtype.kind != "f":  # integers are always finite, and fit float32's range
        return emb
    del raw
    # In blocks of rows: a whole-array mask of a million rows would cost half a gigabyte and most of the time.
    bad_rows = np.concatenate(
        [~np.isfinite(emb[start : start + _FINITE_ROWS]).all(axis=1) for start in range(0, emb.shape[0], _FINITE_ROWS)]
        or [np.zeros(0, dtype=bool)]
    )
    if bad_rows.any():
        first = int(np.flatnonzero(bad_rows)[0])
        raise DatasetError(
            f"'embeddings' has {int(bad_rows.sum()):,} row(s) with NaN or infinite values "
            f"(or values too large for float32), the first at row {first}. Remove or fix them."
        )
    return emb


def validate_labels(raw: np.ndarray, n: int) -> np.ndarray:
    """int64 class ids (from any integer or whole-number float) or non-empty class names."""
    check_column("labels", raw.shape, n)
    kind = raw.dtype.kind
    if kind in "iub":
        if kind == "u" and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
            raise DatasetError("'labels' holds integers too large for int64; use small class ids or class names.")
        return raw.astype(np.int64)
    if kind == "f":
        with np.errstate(all="ignore"):
            wide = raw.astype(np.float64)  # 2**53 does not fit float16
            ok = np.isfinite(wide) & (wide == np.round(wide)) & (np.abs(wide) <= 2.0**53)
        if not ok.all():
            raise DatasetError(
                "'labels' are fractional, huge or NaN floats; use integer class ids or class names "
                f"(the first bad one is at row {int(np.flatnonzero(~ok)[0])})."
            )
        return raw.astype(np.int64)
    if kind in "US":
        labels = _as_text(raw, "labels", MAX_LABEL_CHARS)
        lengths = np.char.str_len(labels)
        if (lengths == 0).any():
            raise DatasetError(f"'labels' has an empty label at row {int(np.flatnonzero(lengths == 0)[0])}.")
        return labels
    if kind in "Mm":
        raise DatasetError(f"'labels' are dates or times (dtype {raw.dtype}); use integer class ids or class names.")
    if kind == "c":
        raise DatasetError("'labels' are complex numbers; use integer class ids or class names.")
    raise DatasetError(f"'labels' must be integers or strings; got dtype {raw.dtype}.")


def _code_points(text: np.ndarray) -> np.ndarray:
    """[N, width] uint32 code points of a 1-D unicode array (0 = padding at the end of each string)."""
    native = np.ascontiguousarray(text, dtype=text.dtype.newbyteorder("="))
    width = native.dtype.itemsize // 4
    return native.view(np.uint32).reshape(native.shape[0], width)


def _as_text(raw: np.ndarray, key: str, max_chars: int) -> np.ndarray:
    """1-D strings or UTF-8 bytes as a native unicode array of valid text no longer than max_chars."""
    from_bytes = raw.dtype.kind == "S"
    if from_bytes:
        if raw.dtype.itemsize > 4 * max_chars:  # a UTF-8 character takes at most 4 bytes
            nbytes = np.char.str_len(raw)
            if nbytes.max(initial=0) > 4 * max_chars:
                raise DatasetError(f"'{key}' holds an entry longer than {max_chars:,} characters.")
            raw = raw.astype(f"S{max(1, int(nbytes.max(initial=1)))}")
        try:
            text = raw.astype(f"U{raw.dtype.itemsize}")  # numpy's own cast: ASCII only, but no Python objects
        except UnicodeDecodeError:
            try:
                text = np.char.decode(raw, "utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"'{key}' holds bytes that are not UTF-8 text.") from exc
        text = np.asarray(text, dtype=str) if text.dtype.kind != "U" else text
    else:
        text = raw
    if not from_bytes:  # (Python's strict UTF-8 decoder never yields these)
        codes = _code_points(text)
        # numpy stores raw UCS4: lone surrogates or numbers past U+10FFFF would break every later str().
        invalid = (codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))
        bad_rows = invalid.any(axis=1)
        if bad_rows.any():
            raise DatasetError(
                f"'{key}' row {int(np.flatnonzero(bad_rows)[0])} holds characters that are not valid Unicode text."
            )
        del codes, invalid
    lengths = np.char.str_len(text)
    if lengths.max(initial=0) > max_chars:
        raise DatasetError(f"'{key}' holds an entry longer than {max_chars:,} characters.")
    return np.ascontiguousarray(text, dtype=f"U{max(1, int(lengths.max(initial=1)))}")


def validate_paths(raw: np.ndarray, n: int) -> np.ndarray:
    """Non-empty one-line paths of valid text, with no NUL character."""
    check_column("image_paths", raw.shape, n)
    if raw.dtype.kind not in "US":
        raise DatasetError(f"'image_paths' must be strings; got dtype {raw.dtype}.")
    paths = _as_text(raw, "image_paths", MAX_PATH_CHARS)
    empty = np.char.str_len(np.char.strip(paths)) == 0
    if empty.any():
        raise DatasetError(f"'image_paths' has an empty path at row {int(np.flatnonzero(empty)[0])}.")
    codes = _code_points(paths)
    nonzero = codes != 0
    # numpy pads with NUL, so a NUL counts only if a real character follows it in the same string
    later = np.logical_or.accumulate(nonzero[:, ::-1], axis=1)[:, ::-1]
    embedded_nul = (~nonzero[:, :-1] & later[:, 1:]).any(axis=1)
    if embedded_nul.any():
        raise DatasetError(f"'image_paths' row {int(np.flatnonzero(embedded_nul)[0])} contains a NUL character.")
    line_break = ((codes == 10) | (codes == 13)).any(axis=1)
    if line_break.any():
        raise DatasetError(
            f"'image_paths' row {int(np.flatnonzero(line_break)[0])} contains a line break; paths must be one line."
        )
    return paths
