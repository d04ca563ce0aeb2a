"""The map component's data, without Streamlit: the payload sent to the browser, the events it sends back, and
the rows a box or lasso drawn on the 3D or 2D map encloses.

The browser reports a drawn shape as its polygon in pixels plus the camera it was drawn through (plotly's scene
matrices in 3D, the axis ranges in 2D); the rows are computed here, so the JS → Python message stays small and the
geometry is tested without a browser.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from .palette import class_colours as palette_colours

MAX_CLASS_TRACES = 40  # more classes than this are drawn as one trace coloured by class code
# Hover names cost 4 bytes plus the name per point (Arrow strings); above this many points they are left out, so
# a large map stays within 14 bytes a point and its hover shows label and score only.
HOVER_NAMES_MAX_POINTS = 20_000
MAX_POLYGON_VERTICES = 2_000  # a lasso the browser already thinned; anything longer is not from our JS
MAX_PIXELS = 100_000  # a viewport side larger than this is not a screen
MAX_COORDINATE = 1e12

EventKind = Literal["click", "box", "lasso"]
SelectionMode = Literal["replace", "add", "remove"]
EVENT_KINDS: tuple[str, ...] = ("click", "box", "lasso")
SELECTION_MODES: tuple[str, ...] = ("replace", "add", "remove")


class MapEventError(ValueError):
    """An event from the browser that does not have the shape our map component sends."""


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


# ---------------------------------------------------------------- views a shape is drawn through

@dataclass(frozen=True)
class Camera3D:
    """A 3D scene's projection as plotly's WebGL scene applies it: clip = P · V · M · (x·s, y·s, z·s, 1).

    `model`, `view` and `projection` are 4×4 row-major matrices (the browser sends them column-major, as
    WebGL stores them); `data_scale` is the per-axis factor the scene applies to data coordinates;
    `width` × `height` is the drawing area in CSS pixels, which the polygon's pixels refer to.
    """

    model: np.ndarray
    view: np.ndarray
    projection: np.ndarray
    data_scale: np.ndarray
    width: float
    height: float

    def project(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x px, y px, in front of the camera) of each point, y growing downwards as on screen."""
        scale = np.diag([*self.data_scale.tolist(), 1.0])
        m = self.projection @ self.view @ self.model @ scale
        xyz = np.asarray(coords, dtype=np.float64)[:, :3]
        cx = xyz @ m[0, :3] + m[0, 3]
        cy = xyz @ m[1, :3] + m[1, 3]
        cw = xyz @ m[3, :3] + m[3, 3]
        front = cw > 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            px = (0.5 + 0.5 * cx / cw) * self.width
            py = (0.5 - 0.5 * cy / cw) * self.height
        return px, py, front


@dataclass(frozen=True)
class Axes2D:
    """A 2D plot area: the data ranges shown on its x and y axes and its size in CSS pixels."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: float
    height: float

    def project(self, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        xy = np.asarray(coords, dtype=np.float64)
        px = (xy[:, 0] - x0) / (x1 - x0) * self.width
        py = (1.0 - (xy[:, 1] - y0) / (y1 - y0)) * self.height
        return px, py, np.ones(len(xy), dtype=bool)


View = Camera3D | Axes2D


def _is_axis_aligned_box(poly: np.ndarray) -> bool:
    if len(poly) != 4:
        return False
    nxt = np.roll(poly, -1, axis=0)
    horizontal = poly[:, 1] == nxt[:, 1]
    vertical = poly[:, 0] == nxt[:, 0]
    return bool(((horizontal ^ vertical).all()) and (horizontal[0::2].all() or vertical[0::2].all())
                and horizontal.sum() == 2)


def points_in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of the points inside `polygon` ((k, 2) vertices, closed implicitly) by the even-odd rule.

    Points are sorted by y once; each edge then tests only the points within its y-span, so a lasso of
    hundreds of vertices over a million points costs about as much as a few passes over the points.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(len(x), dtype=bool)
    if len(poly) < 3 or not len(x):
        return inside
    (xmin, ymin), (xmax, ymax) = poly.min(axis=0), poly.max(axis=0)
    if _is_axis_aligned_box(poly):
        # the even-odd rule with half-open crossings reduces to this for a box: no sort needed
        return (x >= xmin) & (x < xmax) & (y >= ymin) & (y < ymax)
    candidates = np.flatnonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))
    if not len(candidates):
        return inside
    order = np.argsort(y[candidates], kind="stable")
    cand = candidates[order]
    cx, cy = x[cand], y[cand]
    flags = np.zeros(len(cand), dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0)):
        if y1 == y2:
            continue  # a horizontal edge is never crossed under the half-open rule below
        lo, hi = (y1, y2) if y1 < y2 else (y2, y1)
        # the edge crosses the horizontal line through a point when lo <= y < hi, i.e. (y1 > y) != (y2 > y)
        start = np.searchsorted(cy, lo, side="left")
        stop = np.searchsorted(cy, hi, side="left")
        if start >= stop:
            continue
        seg_y = cy[start:stop]
        x_at = x1 + (seg_y - y1) * (x2 - x1) / (y2 - y1)
        flags[start:stop] ^= cx[start:stop] < x_at
    inside[cand] = flags
    return inside


def rows_in_shape(
    coords: np.ndarray, view: View, polygon: np.ndarray, class_codes: np.ndarray | None = None,
    hidden_classes: Sequence[int] | np.ndarray = (),
) -> np.ndarray:
    """Rows whose projection through `view` falls inside `polygon` (pixels), at all depths, hidden classes left out."""
    px, py, front = view.project(coords)
    inside = points_in_polygon(px, py, polygon) & front
    if class_codes is not None and len(hidden_classes):
        inside &= ~np.isin(class_codes, np.asarray(hidden_classes, dtype=np.int64))
    return np.flatnonzero(inside)


def combine_selection(current: np.ndarray | Sequence[int], rows: np.ndarray | Sequence[int],
                      mode: SelectionMode) -> np.ndarray:
    """The selection after a shape or click: its rows (replace), added to the current ones (add), or taken away."""
    cur = np.unique(np.asarray(current, dtype=np.int64))
    new = np.unique(np.asarray(rows, dtype=np.int64))
    if mode == "replace":
        return new
    if mode == "add":
        return np.union1d(cur, new)
    if mode == "remove":
        return np.setdiff1d(cur, new, assume_unique=True)
    raise ValueError(f"unknown selection mode {mode!r}; expected one of {SELECTION_MODES}")


# ---------------------------------------------------------------- events from the browser

@dataclass(frozen=True)
class MapEvent:
    """What the user did on the map: a click or a drawn shape, the rows it covers, and how to apply them."""

    kind: EventKind
    mode: SelectionMode
    rows: np.ndarray  # the rows the click or shape covers, sorted
    polygon: np.ndarray | None = None  # the shape in pixels, for box and lasso

    def apply(self, current: np.ndarray | Sequence[int]) -> np.ndarray:
        """The selection after this event, given the current one."""
        return combine_selection(current, self.rows, self.mode)

    def describe(self, dims: int = 3) -> str:
        """'lasso on the 3D map: 412 images' — what the gallery heading can say about where its rows came from."""
        n = len(self.rows)
        what = {"click": "click", "box": "box", "lasso": "lasso"}[self.kind]
        verb = {"replace": "", "add": " (added)", "remove": " (removed)"}[self.mode]
        return f"{what} on the {dims}D map{verb}: {n:,} image{'' if n == 1 else 's'}"


def _number(value: Any, what: str, lo: float = -MAX_COORDINATE, hi: float = MAX_COORDINATE) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MapEventError(f"{what} must be a number, got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out) or not lo <= out <= hi:
        raise MapEventError(f"{what} must be a finite number in {lo:g}..{hi:g}, got {value!r}")
    return out


def _numbers(value: Any, length: int, what: str) -> np.ndarray:
    if not isinstance(value, (list, tuple)) or len(value) != length:
        raise MapEventError(f"{what} must be a list of {length} numbers")
    return np.array([_number(v, what) for v in value], dtype=np.float64)


def _integer(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise MapEventError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _view(raw: Any, dims: int) -> View:
    if not isinstance(raw, dict):
        raise MapEventError("the event's view must be an object")
    width = _number(raw.get("width"), "view width", 1.0, MAX_PIXELS)
    height = _number(raw.get("height"), "view height", 1.0, MAX_PIXELS)
    if dims == 3:
        mats = [_numbers(raw.get(name), 16, f"the {name} matrix").reshape(4, 4).T  # column-major → row-major
                for name in ("model", "view", "projection")]
        scale = _numbers(raw.get("data_scale"), 3, "data_scale")
        if not (scale > 0).all():
            raise MapEventError("data_scale must be positive")
        return Camera3D(model=mats[0], view=mats[1], projection=mats[2], data_scale=scale, width=width, height=height)
    x_range = tuple(_numbers(raw.get("x_range"), 2, "x_range").tolist())
    y_range = tuple(_numbers(raw.get("y_range"), 2, "y_range").tolist())
    if x_range[0] == x_range[1] or y_range[0] == y_range[1]:
        raise MapEventError("an axis range is empty")
    return Axes2D(x_range=x_range, y_range=y_range, width=width, height=height)  # type: ignore[arg-type]


def _polygon(raw: Any) -> np.ndarray:
    if not isinstance(raw, list) or not 3 <= len(raw) <= MAX_POLYGON_VERTICES:
        raise MapEventError(f"the polygon must be a list of 3 to {MAX_POLYGON_VERTICES} [x, y] points")
    pts = np.empty((len(raw), 2), dtype=np.float64)
    for i, p in enumerate(raw):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise MapEventError("each polygon point must be [x, y]")
        pts[i] = (_number(p[0], "a polygon x", -MAX_PIXELS, MAX_PIXELS),
                  _number(p[1], "a polygon y", -MAX_PIXELS, MAX_PIXELS))
    return pts


def _hidden(raw: Any, n_classes: int) -> np.ndarray:
    if raw is None:
        return np.empty(0, dtype=np.int64)
    if not isinstance(raw, list) or len(raw) > n_classes:
        raise MapEventError(f"hidden classes must be a list of at most {n_classes} class codes")
    return np.unique(np.array([_integer(c, "a hidden class", 0, n_classes - 1) for c in raw], dtype=np.int64))


def decode_event(raw: Any, payload: MapPayload) -> MapEvent:
    """Turn the browser's event into rows of `payload`; anything that is not our JS's shape raises MapEventError."""
    if not isinstance(raw, dict):
        raise MapEventError(f"a map event must be an object, got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in EVENT_KINDS:
        raise MapEventError(f"unknown map event kind {kind!r}")
    mode = raw.get("mode", "replace")
    if mode not in SELECTION_MODES:
        raise MapEventError(f"unknown selection mode {mode!r}")
    if kind == "click":
        row = _integer(raw.get("row"), "the clicked row", 0, max(0, payload.n - 1))
        if payload.n == 0:
            raise MapEventError("a click on an empty map")
        return MapEvent(kind="click", mode=mode, rows=np.array([row], dtype=np.int64))
    dims = _integer(raw.get("dims"), "dims", 2, 3)
    if dims != payload.dims:
        raise MapEventError(f"the event is for a {dims}D map but the map is {payload.dims}D")
    view = _view(raw.get("view"), dims)
    polygon = _polygon(raw.get("polygon"))
    hidden = _hidden(raw.get("hidden", []), len(payload.class_names))
    rows = rows_in_shape(payload.coords, view, polygon, payload.class_codes, hidden)
    return MapEvent(kind=kind, mode=mode, rows=rows.astype(np.int64), polygon=polygon)
