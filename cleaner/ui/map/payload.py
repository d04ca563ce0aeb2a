"""What the map component draws, without Streamlit: points, classes, colours and marks as compact arrays.

The events the browser sends back are in `map_events`, the geometry of a drawn shape in `map_shapes`.
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from cleaner.ui.map.palette import class_colours as palette_colours

MAX_CLASS_TRACES = 40  # more classes than this are drawn as one trace coloured by class code
# Hover names cost 4 bytes plus the name per point (Arrow strings); above this many points they are left out, so
# a large map stays within 14 bytes a point and its hover shows label and score only.
HOVER_NAMES_MAX_POINTS = 20_000



def plain_text(value: object) -> str:
    """Text for Plotly labels: its pseudo-HTML is escaped so a label shows literally and never runs."""
    return html.escape(str(value), quote=False)


# ---------------------------------------------------------------- payload

@dataclass(frozen=True, eq=False)
class MapPayload:
    """Everything the map draws, as compact arrays: `component_data()` (the points) and `marks_data()` (selected
    and excluded rows) are what goes to the browser, in two elements."""

    coords: np.ndarray  # (n, 2) or (n, 3) float32
    class_codes: np.ndarray  # (n,) uint8 or uint16
    class_names: tuple[str, ...]
    class_colours: tuple[str, ...]
    excluded_rows: np.ndarray  # sorted unique int32
    selected_rows: np.ndarray  # sorted unique int32
    score: np.ndarray | None = None  # (n,) float32 in 0..1, or None to colour by class
    score_name: str = "score"
    hover_names: tuple[str, ...] | None = None  # escaped file names, only for small maps
    title: str = ""
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # the points, encoded once

    @property
    def n(self) -> int:
        return int(self.coords.shape[0])

    @property
    def dims(self) -> int:
        return int(self.coords.shape[1])

    def component_data(self) -> dict[str, Any]:
        """The map element's `data=`: per-point DataFrames (sent as Arrow) and JSON meta, without the marks.

        It stays the same while only the selection or the excluded rows change, so Streamlit sends it as a
        reference to the copy the browser holds and the browser does not redraw the points.
        """
        if not self._frames:
            columns: dict[str, np.ndarray] = {axis: self.coords[:, i] for i, axis in enumerate("xyz"[: self.dims])}
            columns["c"] = self.class_codes
            if self.score is not None:
                columns["s"] = self.score
            self._frames["points"] = pd.DataFrame(columns, copy=False)
            if self.hover_names is not None:
                self._frames["names"] = pd.DataFrame({"name": list(self.hover_names)})
        data: dict[str, Any] = dict(self._frames)
        data["meta"] = {
            "n": self.n, "dims": self.dims, "classes": list(self.class_names), "colours": list(self.class_colours),
            "one_trace": len(self.class_names) > MAX_CLASS_TRACES, "score_name": self.score_name,
            "has_score": self.score is not None, "has_names": self.hover_names is not None, "title": self.title,
        }
        return data

    def marks_data(self) -> dict[str, Any]:
        """The marks element's `data=`: the selected and excluded rows, each as Arrow (see `encode_rows`)."""
        return {"selected": encode_rows(self.selected_rows, self.n), "excluded": encode_rows(self.excluded_rows, self.n)}

    def with_marks(self, *, selected_rows: Sequence[int] | np.ndarray | None = None,
                   excluded_rows: Sequence[int] | np.ndarray | None = None) -> MapPayload:
        """The same map with another selection and excluded set; the per-point data (and its encoding) is shared."""
        return replace(self, selected_rows=_rows(selected_rows, self.n, "selected rows"),
                       excluded_rows=_rows(excluded_rows, self.n, "excluded rows"))

    def encoded_bytes(self, part: str = "map") -> int:
        """Bytes of the map element's data ("map") or the marks element's ("marks"): Arrow IPC plus JSON."""
        import json

        import pyarrow as pa

        total = 0
        data = self.component_data() if part == "map" else self.marks_data()
        for value in data.values():
            if isinstance(value, pd.DataFrame):
                table = pa.Table.from_pandas(value, preserve_index=False)
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                total += sink.getvalue().size
            else:
                total += len(json.dumps(value).encode())
        return total

    def bytes_per_point(self) -> float:
        """The map element's bytes per point (what a page load or a new colouring sends)."""
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
    coords: np.ndarray, class_codes: np.ndarray, class_names: Sequence[str], *,
    excluded_rows: Sequence[int] | np.ndarray | None = None,
    selected_rows: Sequence[int] | np.ndarray | None = None,
    score: np.ndarray | None = None, score_name: str = "score",
    hover_names: Sequence[str] | np.ndarray | None = None,
    colours: Sequence[str] | None = None, title: str = "",
) -> MapPayload:
    """Check and pack a map: 2 or 3 coordinate columns decide whether the browser draws a 2D or a 3D map.

    `hover_names` are dropped above HOVER_NAMES_MAX_POINTS points; `score` (0..1, NaN shown as 0) switches the
    colouring from class to score.
    """
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(f"map coordinates must be an (n, 2) or (n, 3) array, got shape {coords.shape}")
    n = coords.shape[0]
    coords = np.ascontiguousarray(coords, dtype=np.float32)
    if not np.isfinite(coords).all():
        raise ValueError("map coordinates hold NaN or infinite values")
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
        score = np.clip(np.nan_to_num(score, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0).astype(np.float32)
    hover: tuple[str, ...] | None = None
    if hover_names is not None and n <= HOVER_NAMES_MAX_POINTS:
        hover = tuple(plain_text(h) for h in hover_names)
        if len(hover) != n:
            raise ValueError(f"hover names must hold {n} values, one per point")
    return MapPayload(
        coords=coords, class_codes=codes, class_names=names, class_colours=colour_of,
        excluded_rows=_rows(excluded_rows, n, "excluded rows"), selected_rows=_rows(selected_rows, n, "selected rows"),
        score=score, score_name=plain_text(score_name), hover_names=hover, title=plain_text(title),
    )
