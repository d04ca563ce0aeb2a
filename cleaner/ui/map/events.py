"""The events the map component sends back (click, box, lasso), checked as untrusted input and turned into rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cleaner.server.errors import CleanerError
from cleaner.ui.map.payload import MapPayload
from cleaner.ui.map.shapes import (
    SELECTION_MODES,
    Axes2D,
    Camera3D,
    SelectionMode,
    View,
    combine_selection,
    rows_in_shape,
)

MAX_POLYGON_VERTICES = 2_000  # a lasso the browser already thinned; anything longer is not from our JS
MAX_PIXELS = 100_000  # a viewport side larger than this is not a screen
MAX_COORDINATE = 1e12

EventKind = Literal["click", "box", "lasso"]
EVENT_KINDS: tuple[str, ...] = ("click", "box", "lasso")


class MapEventError(CleanerError, ValueError):
    """An event from the browser that does not have the shape our map component sends."""


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
        mats = [
            _numbers(raw.get(name), 16, f"the {name} matrix").reshape(4, 4).T  # column-major → row-major
            for name in ("model", "view", "projection")
        ]
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
        pts[i] = (
            _number(p[0], "a polygon x", -MAX_PIXELS, MAX_PIXELS),
            _number(p[1], "a polygon y", -MAX_PIXELS, MAX_PIXELS),
        )
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
    rows = rows_in_shape(payload.drawn_coords(), view, polygon, payload.class_codes, hidden)
    return MapEvent(kind=kind, mode=mode, rows=rows.astype(np.int64), polygon=polygon)
