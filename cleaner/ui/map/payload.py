"""What the map component draws, without Streamlit: points, classes, colours and marks as compact binary messages.

The events the browser sends back are in `map_events`, the geometry of a drawn shape in `map_shapes`.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from cleaner.ui.map.palette import class_colours as palette_colours

MAX_CLASS_TRACES = 40  # more classes than this are drawn as one trace coloured by class code
# Hover names cost their length per point; above this many points they are left out, so a large map stays within
# 8 bytes a point and its hover shows label and score only.
HOVER_NAMES_MAX_POINTS = 20_000
COORD_LEVELS = 65_535  # coordinates as 16-bit fixed point in the bounding box: levels above its minimum
SCORE_LEVELS = 255  # scores as 8-bit: 0..255 for 0..1
FORMAT_VERSION = 1


def plain_text(value: object) -> str:
    """Text for Plotly labels: its pseudo-HTML is escaped so a label shows literally and never runs."""
    return html.escape(str(value), quote=False)


# ---------------------------------------------------------------- fixed point


def quantise_coords(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels (n, dims) uint16, minimum per axis, step per axis) of coordinates in their bounding box.

    A coordinate is the box's minimum plus a whole number of steps, step = extent / 65535 per axis, so it moves by
    at most half a step: 1/131,070 of the box's extent on that axis. Drawn, the box spans the plot (some 500-1,300
    pixels) at the default view, so the error is below 0.01 pixel there, and below a pixel while the map is zoomed
    in less than ~100x; the map's zoom stops at MAX_ZOOM (see map_component.js): at most 0.6 pixel.
    """
    c = np.asarray(coords, dtype=np.float64)
    lo = c.min(axis=0) if len(c) else np.zeros(c.shape[1])
    hi = c.max(axis=0) if len(c) else np.zeros(c.shape[1])
    step = (hi - lo) / COORD_LEVELS
    safe = np.where(step > 0, step, 1.0)
    levels = np.clip(np.rint((c - lo) / safe), 0, COORD_LEVELS).astype(np.uint16)
    return levels, lo, step


def dequantise_coords(levels: np.ndarray, lo: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The coordinates the browser draws: minimum + level x step in float64, stored as float32 (as the JS does)."""
    return (lo + levels.astype(np.float64) * step).astype(np.float32)


def _pack(head: dict[str, Any], *arrays: np.ndarray) -> bytes:
    """One binary message: a 4-byte little-endian length, that much JSON, zero padding to 8 bytes, the arrays."""
    text = json.dumps(head, separators=(",", ":")).encode()
    pad = (-(4 + len(text))) % 8
    parts = [np.uint32(len(text)).tobytes(), text, b"\0" * pad]
    parts += [np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes() for a in arrays]
    return b"".join(parts)


def unpack(message: bytes) -> tuple[dict[str, Any], memoryview]:
    """The inverse of `_pack` (what decode.js does): the JSON head and the bytes of the arrays after it."""
    length = int(np.frombuffer(message[:4], dtype="<u4")[0])
    head = json.loads(message[4 : 4 + length])
    start = 4 + length + (-(4 + length)) % 8
    return head, memoryview(message)[start:]


# ---------------------------------------------------------------- payload


@dataclass(frozen=True, eq=False)
class MapPayload:
    """Everything the map draws, as compact arrays, sent in three elements: the points (`points_message()`:
    16-bit fixed-point coordinates), their colours (`colours_message()`: 8-bit class codes and scores, names,
    palette) and the marks (`marks_data()`: selected and excluded rows). A recolouring or a relabel resends the
    colours only (1-2 bytes a point), a selection the marks only."""

    coords: np.ndarray  # (n, 2) or (n, 3) float32: the map's coordinates (`drawn_coords()`: as the browser draws them)
    class_codes: np.ndarray  # (n,) uint8 or uint16
    class_names: tuple[str, ...]
    class_colours: tuple[str, ...]
    excluded_rows: np.ndarray  # sorted unique int32
    selected_rows: np.ndarray  # sorted unique int32
    score: np.ndarray | None = None  # (n,) uint8 levels 0..255 for 0..1, or None to colour by class
    score_name: str = "score"
    hover_names: tuple[str, ...] | None = None  # escaped file names, only for small maps
    title: str = ""
    # team mode: the excluded rows a teammate excluded (marked apart from yours); None outside team mode
    team_excluded_rows: np.ndarray | None = None
    levels: np.ndarray | None = field(default=None, repr=False)  # (n, dims) uint16 fixed point
    lo: np.ndarray | None = field(default=None, repr=False)
    step: np.ndarray | None = field(default=None, repr=False)
    _messages: dict[tuple, bytes] = field(default_factory=dict, repr=False)  # encoded once, shared by with_marks
    _refs: dict[tuple, str] = field(default_factory=dict, repr=False)  # each message's tag (`message_ref`)
    _derived: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.coords.shape[0])

    @property
    def dims(self) -> int:
        return int(self.coords.shape[1])

    def drawn_coords(self) -> np.ndarray:
        """The coordinates as the browser draws them (16-bit fixed point, within 1/131,070 of the box of `coords`):
        what a drawn shape is resolved against. Computed on the first event, then kept."""
        if "drawn" not in self._derived:
            assert self.levels is not None and self.lo is not None and self.step is not None
            self._derived["drawn"] = dequantise_coords(self.levels, self.lo, self.step)
        return self._derived["drawn"]

    def points_message(self, **extra: str | int) -> bytes:
        """The map element's data: JSON head (n, dims, box, and `extra`, e.g. the component key and height) and the
        uint16 levels, axis after axis. Encoded once per `extra`: the same bytes object on every run, and Streamlit
        sends an unchanged element as a reference to the browser's copy."""
        tag = ("points", *sorted(extra.items()))
        if tag not in self._messages:
            assert self.levels is not None and self.lo is not None and self.step is not None
            self._refs[tag] = secrets.token_hex(8)
            head = {
                "v": FORMAT_VERSION,
                "ref": self._refs[tag],
                "n": self.n,
                "dims": self.dims,
                "lo": self.lo.tolist(),
                "step": self.step.tolist(),
                **extra,
            }
            self._messages[tag] = _pack(head, np.ascontiguousarray(self.levels.T))
        return self._messages[tag]

    def colours_message(self, **extra: str | int) -> bytes:
        """The colours element's data: JSON head (classes, palette, score name, small maps' hover names, `extra`),
        the class codes (uint8, or uint16 above 256 classes) and the scores (uint8), if any."""
        tag = ("colours", *sorted(extra.items()))
        if tag not in self._messages:
            self._refs[tag] = secrets.token_hex(8)
            head = {
                "v": FORMAT_VERSION,
                "ref": self._refs[tag],
                "n": self.n,
                **extra,
                "classes": list(self.class_names),
                "colours": list(self.class_colours),
                "one_trace": len(self.class_names) > MAX_CLASS_TRACES,
                "code_bytes": self.class_codes.dtype.itemsize,
                "has_score": self.score is not None,
                "score_name": self.score_name,
                "title": self.title,
                "names": list(self.hover_names) if self.hover_names is not None else None,
            }
            arrays = [self.class_codes] + ([self.score] if self.score is not None else [])
            self._messages[tag] = _pack(head, *arrays)
        return self._messages[tag]

    def message_ref(self, part: str, **extra: str | int) -> str:
        """The tag in the head of the "points" or "colours" message encoded with `extra`: a rerun that would send the
        browser the same message sends this tag instead, and the browser checks it against the message it holds."""
        (self.points_message if part == "points" else self.colours_message)(**extra)
        return self._refs[(part, *sorted(extra.items()))]

    def marks_data(self) -> dict[str, Any]:
        """The marks element's `data=`: the selected and excluded rows, each as Arrow (see `encode_rows`); in team
        mode ("team": true) also the excluded rows a teammate excluded ("team_excluded")."""
        data: dict[str, Any] = {
            "selected": encode_rows(self.selected_rows, self.n),
            "excluded": encode_rows(self.excluded_rows, self.n),
        }
        if self.team_excluded_rows is not None:
            data["team"] = True
            data["team_excluded"] = encode_rows(self.team_excluded_rows, self.n)
        return data

    def with_marks(
        self,
        *,
        selected_rows: Sequence[int] | np.ndarray | None = None,
        excluded_rows: Sequence[int] | np.ndarray | None = None,
        team_excluded_rows: Sequence[int] | np.ndarray | None = None,
    ) -> MapPayload:
        """The same map with another selection and excluded set; the per-point data (and its encoding) is shared.
        `team_excluded_rows` (team mode only, else None): which of the excluded rows a teammate excluded."""
        excluded = _rows(excluded_rows, self.n, "excluded rows")
        theirs = None
        if team_excluded_rows is not None:
            theirs = np.intersect1d(_rows(team_excluded_rows, self.n, "teammates' excluded rows"), excluded)
        return replace(
            self,
            selected_rows=_rows(selected_rows, self.n, "selected rows"),
            excluded_rows=excluded,
            team_excluded_rows=theirs,
        )

    def encoded_bytes(self, part: str = "map") -> int:
        """Bytes of the points and colours messages ("map"), one of them ("points", "colours") or the marks
        element's Arrow tables ("marks")."""
        if part == "points":
            return len(self.points_message())
        if part == "colours":
            return len(self.colours_message())
        if part == "map":
            return len(self.points_message()) + len(self.colours_message())
        import pyarrow as pa

        total = 0
        for value in self.marks_data().values():
            table = pa.Table.from_pandas(value, preserve_index=False)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            total += sink.getvalue().size
        return total

    def bytes_per_point(self) -> float:
        """Bytes per point of what a page load sends for the map (points and colours)."""
        return self.encoded_bytes() / max(1, self.n)


def encode_rows(rows: np.ndarray, n: int) -> pd.DataFrame:
    """Rows as the browser gets them: int32 row numbers ("row"), or a bit per point ("bits", little-endian bit
    order) when that is smaller — a large selection costs n/8 bytes instead of 4 bytes a row."""
    rows = np.asarray(rows, dtype=np.int64)
    if 4 * len(rows) <= (n + 7) // 8:
        return pd.DataFrame({"row": rows.astype(np.int32)}, copy=False)
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return pd.DataFrame({"bits": np.packbits(mask, bitorder="little")}, copy=False)


def decode_rows(frame: pd.DataFrame, n: int) -> np.ndarray:
    """The inverse of `encode_rows` (what map_marks.js does in the browser)."""
    if "row" in frame:
        return frame["row"].to_numpy(dtype=np.int64)
    bits = np.unpackbits(frame["bits"].to_numpy(dtype=np.uint8), bitorder="little")[:n]
    return np.flatnonzero(bits)


def _rows(values: Sequence[int] | np.ndarray | None, n: int, what: str) -> np.ndarray:
    rows = np.asarray([] if values is None else values)
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"{what} must be row numbers (integers), got {rows.dtype}")
    rows = np.unique(rows.astype(np.int64).ravel())
    if rows.size and (rows[0] < 0 or rows[-1] >= n):
        raise ValueError(f"{what} holds rows outside 0..{n - 1}")
    return rows.astype(np.int32)


def build_payload(
    coords: np.ndarray,
    class_codes: np.ndarray,
    class_names: Sequence[str],
    *,
    excluded_rows: Sequence[int] | np.ndarray | None = None,
    selected_rows: Sequence[int] | np.ndarray | None = None,
    score: np.ndarray | None = None,
    score_name: str = "score",
    hover_names: Sequence[str] | np.ndarray | None = None,
    colours: Sequence[str] | None = None,
    title: str = "",
) -> MapPayload:
    """Check and pack a map: 2 or 3 coordinate columns decide whether the browser draws a 2D or a 3D map.

    `hover_names` are dropped above HOVER_NAMES_MAX_POINTS points; `score` (0..1, NaN shown as 0, kept to 8 bits)
    switches the colouring from class to score. The coordinates go to the browser as 16-bit fixed point
    (`quantise_coords`); `drawn_coords()` of the result are the ones it draws, and a drawn shape is resolved against.
    """
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"map coordinates must be an (n, 2) or (n, 3) array, got shape {coords.shape}")
    n = coords.shape[0]
    if not np.isfinite(coords).all():
        raise ValueError("map coordinates hold NaN or infinite values")
    levels, lo, step = quantise_coords(coords)
    names = tuple(plain_text(c) for c in class_names)
    if not names:
        raise ValueError("a map needs at least one class name")
    codes = np.asarray(class_codes).ravel()
    if codes.shape != (n,) or (n and not np.issubdtype(codes.dtype, np.integer)):
        raise ValueError(f"class codes must be {n} integers, one per point")
    if n and (codes.min() < 0 or codes.max() >= len(names)):
        raise ValueError(f"class codes must lie in 0..{len(names) - 1}")
    codes = codes.astype(np.uint8 if len(names) <= 256 else np.uint16)
    if colours is not None and not colours:
        raise ValueError("colours, when given, must hold at least one colour")
    colour_of = tuple(colours[i % len(colours)] for i in range(len(names))) if colours else palette_colours(len(names))
    if score is not None:
        score = np.asarray(score, dtype=np.float32).ravel()
        if score.shape != (n,):
            raise ValueError(f"the colouring score must hold {n} values, one per point")
        score = np.clip(np.nan_to_num(score, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        score = np.rint(score * SCORE_LEVELS).astype(np.uint8)
    hover: tuple[str, ...] | None = None
    if hover_names is not None and n <= HOVER_NAMES_MAX_POINTS:
        hover = tuple(plain_text(h) for h in hover_names)
        if len(hover) != n:
            raise ValueError(f"hover names must hold {n} values, one per point")
    return MapPayload(
        coords=np.ascontiguousarray(coords, dtype=np.float32),
        levels=levels,
        lo=lo,
        step=step,
        class_codes=codes,
        class_names=names,
        class_colours=colour_of,
        excluded_rows=_rows(excluded_rows, n, "excluded rows"),
        selected_rows=_rows(selected_rows, n, "selected rows"),
        score=score,
        score_name=plain_text(score_name),
        hover_names=hover,
        title=plain_text(title),
    )
