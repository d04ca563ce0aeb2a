"""The map of a dataset larger than the browser can draw: which rows it shows, and their places.

Above the map limit (MAP_LIMIT rows by default) `cleaner scan --precompute` writes `DATA.map-sample.cleaner.npz` beside
the sidecar: every flagged image (up to the limit, the most suspect first) and a class-stratified, seeded sample of
the others, each class keeping its share of the rows left. The review queue, the scores and the exports still cover
every row; the map draws these rows only (and a selection drawn on it selects only them).

The file is read like any user file: bounded, never unpickled, every array's header checked before its data is
read, every value checked before use.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cleaner.io.dataset_types import DatasetError
from cleaner.io.npz_source import read_source
from cleaner.io.npz_zip import open_zip, read_member
from cleaner.server.errors import CleanerError
from cleaner.server.limits import MAP_LIMIT

__all__ = [
    "MAP_LIMIT",
    "MAP_SAMPLE_FORMAT",
    "MAP_SAMPLE_SUFFIX",
    "MapSample",
    "MapSampleProblem",
    "map_sample_bytes",
    "map_sample_path",
    "read_map_sample",
    "sample_rows",
]

MAP_SAMPLE_SUFFIX = ".map-sample.cleaner.npz"  # ends as a sidecar does: the app's file list hides it
MAP_SAMPLE_FORMAT = "cleaner-map-sample-1"
_TEXT = ("format", "embedding_digest", "how", "layout_key_3", "layout_key_2")


class MapSampleProblem(CleanerError, ValueError):
    """Why a map sample cannot be used, worded for the person who made it."""


@dataclass(frozen=True, eq=False)
class MapSample:
    """The rows the map shows (ascending) out of n_rows, how they were drawn, and their 3D and 2D places."""

    rows: np.ndarray  # [m] int64 ascending
    n_rows: int
    n_flagged: int  # of the rows, how many are flagged images (all of them, when they fit)
    how: str  # in words, for the page: "every flagged image (1,234) and a class-stratified sample ..."
    layouts: dict[str, np.ndarray]  # LayoutParams.key() -> [m, 2 or 3] float32


def map_sample_path(data_path: str | os.PathLike) -> Path:
    """DATA.npz -> DATA.map-sample.cleaner.npz; FOLDER -> FOLDER.map-sample.cleaner.npz, in the same folder."""
    path = Path(data_path)
    stem = path.name[:-4] if path.name.lower().endswith(".npz") else path.name
    return path.with_name(stem + MAP_SAMPLE_SUFFIX)


def sample_rows(
    flagged: np.ndarray, suspicion: np.ndarray, label_codes: np.ndarray, limit: int, seed: int = 42
) -> tuple[np.ndarray, int, str]:
    """(rows ascending, how many of them are flagged, how they were drawn): every flagged row (the `limit` most
    suspect if more), then the rest of the limit split over the classes in proportion to their unflagged rows
    (largest remainders), drawn uniformly within each class with `seed`."""
    n = len(flagged)
    if n <= limit:
        return np.arange(n, dtype=np.int64), int(flagged.sum()), "every image"
    chosen = np.flatnonzero(flagged)
    if len(chosen) >= limit:
        order = np.lexsort((chosen, -suspicion[chosen].astype(np.float64)))
        rows = np.sort(chosen[order[:limit]])
        return rows, limit, f"the {limit:,} most suspect of the {len(chosen):,} flagged images"
    room = limit - len(chosen)
    rest = np.flatnonzero(~flagged)
    codes = label_codes[rest]
    sizes = np.bincount(codes)
    exact = sizes * (room / len(rest))
    share = np.floor(exact).astype(np.int64)
    left = room - int(share.sum())
    if left > 0:
        share[np.argsort(-(exact - share), kind="stable")[:left]] += 1
    rng = np.random.default_rng(seed)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    picked = [chosen]
    for code, count in enumerate(share.tolist()):
        if count:
            members = rest[order[starts[code] : starts[code + 1]]]
            picked.append(rng.choice(members, size=min(count, len(members)), replace=False))
    rows = np.sort(np.concatenate(picked)).astype(np.int64)
    how = (
        f"every flagged image ({len(chosen):,}) and a class-stratified random sample of {room:,} of the "
        f"{len(rest):,} others (seed {seed})"
    )
    return rows, len(chosen), how


def map_sample_bytes(
    embedding_digest: str,
    n_rows: int,
    rows: np.ndarray,
    n_flagged: int,
    how: str,
    layouts: dict[int, tuple[object, np.ndarray]],
) -> bytes:
    """The map sample's file: the rows, how they were drawn, and their places on the 3D and 2D maps
    (`layouts[n_components] = (params, coords of every row)`)."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        format=np.array(MAP_SAMPLE_FORMAT),
        embedding_digest=np.array(embedding_digest),
        how=np.array(how),
        n_rows=np.array(n_rows, dtype=np.int64),
        n_flagged=np.array(n_flagged, dtype=np.int64),
        rows=np.asarray(rows, dtype=np.int64),
        **{f"layout_key_{d}": np.array(layouts[d][0].key()) for d in (3, 2)},
        **{f"layout_{d}": np.ascontiguousarray(layouts[d][1][rows], dtype=np.float32) for d in (3, 2)},
    )
    return buf.getvalue()


def read_map_sample(path: str | os.PathLike, embedding_digest: str, n_rows: int, max_bytes: int) -> MapSample:
    """The map sample, checked against the dataset it must belong to; MapSampleProblem if unusable."""

    def shaped(shape: tuple, kind: str):
        def check(found: tuple[int, ...], dtype: np.dtype) -> None:
            fits = len(found) == len(shape) and all(s is None or s == f for s, f in zip(shape, found))
            if not fits or dtype.kind != kind or (kind == "U" and dtype.itemsize > 4 * 1024):
                raise DatasetError(f"an array has shape {tuple(found)} and type {dtype}, expected {shape} {kind}")

        return check

    expected = {
        **{k: ((), "U") for k in _TEXT},
        "n_rows": ((), "i"),
        "n_flagged": ((), "i"),
        "rows": ((None,), "i"),
        "layout_3": ((None, 3), "f"),
        "layout_2": ((None, 2), "f"),
    }
    try:
        data = read_source(str(path), max_bytes)
        arrays, budget = {}, max_bytes
        with open_zip(data) as zf:
            names = {info.filename for info in zf.infolist()}
            if names != {k + ".npy" for k in expected}:
                raise DatasetError("it does not hold exactly the expected arrays")
            for key, (shape, kind) in expected.items():
                arrays[key] = read_member(zf, key, budget, shaped(shape, kind), whole=data)
                budget -= arrays[key].nbytes
    except DatasetError as exc:
        raise MapSampleProblem(f"it could not be read ({exc})") from exc
    text = {k: str(arrays[k][()]) for k in _TEXT}
    if text["format"] != MAP_SAMPLE_FORMAT:
        raise MapSampleProblem("it was not written by this version of `cleaner scan --precompute`")
    if text["embedding_digest"] != embedding_digest or int(arrays["n_rows"]) != n_rows:
        raise MapSampleProblem("it was made for other embeddings (the data changed after the scan)")
    rows = arrays["rows"].astype(np.int64)
    if len(rows) and (rows[0] < 0 or rows[-1] >= n_rows or (np.diff(rows) <= 0).any()):
        raise MapSampleProblem("its rows are not distinct rows of the dataset in ascending order")
    layouts = {}
    for d in (3, 2):
        coords = arrays[f"layout_{d}"]
        if len(coords) != len(rows) or not np.isfinite(coords).all():
            raise MapSampleProblem(f"its {d}D map does not hold one finite place per sampled row")
        layouts[text[f"layout_key_{d}"]] = coords
    return MapSample(rows=rows, n_rows=n_rows, n_flagged=int(arrays["n_flagged"]), how=text["how"], layouts=layouts)
