"""Which points a box or lasso drawn on the map encloses: every point the user can see in the drawing area (inside
it, between the camera's near and far planes in 3D, its class shown) whose projection through the camera the shape
was drawn through (plotly's scene matrices in 3D, the axis ranges in 2D) falls inside the shape, at all depths.

Computed here rather than in the browser, so the browser's message stays small and the geometry is tested without one.
Any valid polygon costs a bounded time (see `points_in_polygon`): a hostile lasso of 2,000 vertices each spanning the
view costs about what a box does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

SelectionMode = Literal["replace", "add", "remove"]
SELECTION_MODES: tuple[str, ...] = ("replace", "add", "remove")


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
        """(x px, y px, drawn) of each point, y growing downwards as on screen. `drawn`: between the near and the far
        plane, where WebGL draws it (a point nearer than the near plane is clipped away, so it is never selected)."""
        scale = np.diag([*self.data_scale.tolist(), 1.0])
        m = self.projection @ self.view @ self.model @ scale
        xyz = np.asarray(coords, dtype=np.float64)[:, :3]
        cx = xyz @ m[0, :3] + m[0, 3]
        cy = xyz @ m[1, :3] + m[1, 3]
        cz = xyz @ m[2, :3] + m[2, 3]
        cw = xyz @ m[3, :3] + m[3, 3]
        front = (cw > 1e-12) & (np.abs(cz) <= cw)
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
    return bool(
        ((horizontal ^ vertical).all()) and (horizontal[0::2].all() or vertical[0::2].all()) and horizontal.sum() == 2
    )


# Work allowed for the exact even-odd test, in point-edge tests per point: beyond it the polygon is resolved on a raster
# of pixel cells (`_raster_inside`), whose work is bounded by vertices x rows + cells + points, never vertices x points.
EXACT_TESTS_PER_POINT = 24
MAX_RASTER_SIDE = (
    4096  # cells per side of the raster: one per pixel for any real screen, coarser only for a hostile view
)
_ESTIMATE_BINS = 1024


@dataclass
class ShapeWork:
    """What resolving a polygon cost: the tests and crossings computed (for tests and benches; never timed)."""

    method: str = ""
    point_edge_tests: int = 0  # exact path: (point, edge) pairs tested
    crossings: int = 0  # raster path: edge crossings computed at row centres
    cells: int = 0  # raster path: cells of the mask
    pitch: float = 0.0  # raster path: pixels per cell side (1 for any real view)


def points_in_polygon(
    x: np.ndarray,
    y: np.ndarray,
    polygon: np.ndarray,
    *,
    work: ShapeWork | None = None,
    budget_per_point: float = EXACT_TESTS_PER_POINT,
) -> np.ndarray:
    """Boolean mask of the points inside `polygon` ((k, 2) pixel vertices, closed implicitly) by the even-odd rule.

    A box is one comparison per point. Otherwise each edge tests only the points within its y-span (points sorted
    by y once): exact, and a few passes over the points for a lasso a hand draws. A hostile polygon (hundreds of
    edges, each spanning the view) would make that vertices x points; when the spans hold more than
    `budget_per_point` tests per point, the polygon is rasterised instead into a mask of pixel cells over its box
    (the even-odd rule at each cell's centre) and each point takes its cell's answer. Work: vertices x rows + cells
    + points, with at most MAX_RASTER_SIDE² cells. Only a point within half a cell's diagonal (0.71 px) of an edge
    can get another answer than the exact rule.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    work = work if work is not None else ShapeWork()
    inside = np.zeros(len(x), dtype=bool)
    if len(poly) < 3 or not len(x):
        return inside
    (xmin, ymin), (xmax, ymax) = poly.min(axis=0), poly.max(axis=0)
    if _is_axis_aligned_box(poly):
        # the even-odd rule with half-open crossings reduces to this for a box: no sort needed
        work.method = "box"
        return (x >= xmin) & (x < xmax) & (y >= ymin) & (y < ymax)
    candidates = np.flatnonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))
    if not len(candidates):
        work.method = "empty"
        return inside
    cx, cy = x[candidates], y[candidates]
    y1s, y2s = poly[:, 1], np.roll(poly, -1, axis=0)[:, 1]
    if _exact_tests_upper_bound(cy, y1s, y2s, ymin, ymax) > budget_per_point * len(x) + 4 * len(poly):
        inside[candidates] = _raster_inside(cx, cy, poly, work)
        return inside
    order = np.argsort(cy, kind="stable")
    cand, cx, cy = candidates[order], cx[order], cy[order]
    starts = np.searchsorted(cy, np.minimum(y1s, y2s), side="left")
    stops = np.searchsorted(cy, np.maximum(y1s, y2s), side="left")
    work.method = "exact"
    flags = np.zeros(len(cand), dtype=bool)
    for (x1, y1), (x2, y2), start, stop in zip(poly, np.roll(poly, -1, axis=0), starts, stops, strict=True):
        if y1 == y2 or start >= stop:
            continue  # a horizontal edge is never crossed under the half-open rule below
        # the edge crosses the horizontal line through a point when lo <= y < hi, i.e. (y1 > y) != (y2 > y)
        work.point_edge_tests += int(stop - start)
        seg_y = cy[start:stop]
        x_at = x1 + (seg_y - y1) * (x2 - x1) / (y2 - y1)
        flags[start:stop] ^= cx[start:stop] < x_at
    inside[cand] = flags
    return inside


def _exact_tests_upper_bound(y: np.ndarray, y1s: np.ndarray, y2s: np.ndarray, ymin: float, ymax: float) -> int:
    """At least the point-edge tests the exact rule would make, from a histogram of y (no sort): O(points + edges)."""
    if ymax <= ymin:
        return 0
    scale = _ESTIMATE_BINS / (ymax - ymin)
    bins = np.clip(((y - ymin) * scale).astype(np.int64), 0, _ESTIMATE_BINS - 1)
    cum = np.concatenate([[0], np.cumsum(np.bincount(bins, minlength=_ESTIMATE_BINS))])
    lo = np.clip(((np.minimum(y1s, y2s) - ymin) * scale).astype(np.int64), 0, _ESTIMATE_BINS - 1)
    hi = np.clip(((np.maximum(y1s, y2s) - ymin) * scale).astype(np.int64), 0, _ESTIMATE_BINS - 1)
    return int(np.where(y1s != y2s, cum[hi + 1] - cum[lo], 0).sum())


def _raster_inside(x: np.ndarray, y: np.ndarray, poly: np.ndarray, work: ShapeWork) -> np.ndarray:
    """The even-odd rule at the centre of each point's cell of a mask over the polygon's box (points inside that box).

    Each edge yields one crossing per row whose centre it spans (half-open, as the exact rule); a crossing flips
    every cell of its row whose centre lies right of it, so a cumulative parity along each row gives the mask.
    """
    (xmin, ymin), (xmax, ymax) = poly.min(axis=0), poly.max(axis=0)
    pitch = max(1.0, (xmax - xmin) / MAX_RASTER_SIDE, (ymax - ymin) / MAX_RASTER_SIDE)
    n_rows = int(math.floor((ymax - ymin) / pitch)) + 1
    n_cols = int(math.floor((xmax - xmin) / pitch)) + 1
    centres = ymin + (np.arange(n_rows) + 0.5) * pitch
    toggles = np.zeros(n_rows * (n_cols + 1), dtype=np.int64)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        if y1 == y2:
            continue
        first = int(np.searchsorted(centres, min(y1, y2), side="left"))
        last = int(np.searchsorted(centres, max(y1, y2), side="left"))
        if first >= last:
            continue
        r = np.arange(first, last)
        x_at = x1 + (centres[r] - y1) * (x2 - x1) / (y2 - y1)
        # the first column whose centre is at or right of the crossing: from there on the count to the left is odd
        col = np.clip(np.ceil((x_at - xmin) / pitch - 0.5), 0, n_cols).astype(np.int64)
        np.add.at(toggles, r * (n_cols + 1) + col, 1)
        work.crossings += len(r)
    mask = (np.cumsum(toggles.reshape(n_rows, n_cols + 1), axis=1) & 1).astype(bool)[:, :n_cols]
    work.method, work.cells, work.pitch = "raster", n_rows * n_cols, pitch
    rows = np.clip(((y - ymin) / pitch).astype(np.int64), 0, n_rows - 1)
    cols = np.clip(((x - xmin) / pitch).astype(np.int64), 0, n_cols - 1)
    return mask[rows, cols]


def rows_in_shape(
    coords: np.ndarray,
    view: View,
    polygon: np.ndarray,
    class_codes: np.ndarray | None = None,
    hidden_classes: Sequence[int] | np.ndarray = (),
    *,
    work: ShapeWork | None = None,
) -> np.ndarray:
    """Rows the user sees inside `polygon` (pixels of the drawing area): projected through `view` into the drawing
    area (a shape dragged past its edge selects nothing beyond it) and inside the shape, at all depths the camera
    draws, hidden classes left out."""
    px, py, front = view.project(coords)
    visible = front & (px >= 0) & (px <= view.width) & (py >= 0) & (py <= view.height)
    if class_codes is not None and len(hidden_classes):
        visible &= ~np.isin(class_codes, np.asarray(hidden_classes, dtype=np.int64))
    shown = np.flatnonzero(visible)
    inside = np.zeros(len(px), dtype=bool)
    inside[shown] = points_in_polygon(px[shown], py[shown], polygon, work=work)
    return np.flatnonzero(inside)


def combine_selection(
    current: np.ndarray | Sequence[int], rows: np.ndarray | Sequence[int], mode: SelectionMode
) -> np.ndarray:
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
