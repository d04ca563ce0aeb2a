"""Which points a box or lasso drawn on the map encloses: every point whose projection through the camera it was
drawn through (plotly's scene matrices in 3D, the axis ranges in 2D) falls inside, at all depths.

Computed here rather than in the browser, so the browser's message stays small and the geometry is tested without one.
"""
from __future__ import annotations

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
