"""What a drawn shape selects: only what the user sees (inside the drawing area, between the near and far planes),
and any valid polygon in bounded work — counted, never timed."""

from __future__ import annotations

import math

import numpy as np

from cleaner.ui.map.events import MAX_POLYGON_VERTICES, decode_event
from cleaner.ui.map.payload import build_payload
from cleaner.ui.map.shapes import (
    MAX_RASTER_SIDE,
    Axes2D,
    Camera3D,
    ShapeWork,
    points_in_polygon,
    rows_in_shape,
)


def exact_rule(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """The even-odd rule, one edge at a time over every point: the plain reference (vertices x points)."""
    inside = np.zeros(len(x), dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        with np.errstate(divide="ignore", invalid="ignore"):
            inside ^= ((y1 > y) != (y2 > y)) & (x < x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    return inside


def distance_to_polygon(poly, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    best = np.full(len(x), np.inf)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(np.asarray(poly), -1, axis=0), strict=True):
        dx, dy = x2 - x1, y2 - y1
        t = np.clip(((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy), 0, 1)
        best = np.minimum(best, np.hypot(x - (x1 + t * dx), y - (y1 + t * dy)))
    return best


def hostile_zigzag(k: int, width: float, height: float) -> np.ndarray:
    """k vertices alternately at the top and the bottom of the view: every edge spans it from top to bottom."""
    xs = np.linspace(1, width - 1, k)
    ys = np.where(np.arange(k) % 2 == 0, 0.5, height - 0.5)
    return np.c_[xs, ys]


def test_a_hostile_polygon_at_a_million_points_costs_vertices_times_rows_not_vertices_times_points():
    rng = np.random.default_rng(0)
    n, width, height = 1_000_000, 1400.0, 900.0
    x, y = rng.uniform(0, width, n), rng.uniform(0, height, n)
    poly = hostile_zigzag(MAX_POLYGON_VERTICES, width, height)
    work = ShapeWork()
    got = points_in_polygon(x, y, poly, work=work)
    assert work.method == "raster" and work.point_edge_tests == 0
    assert work.crossings <= len(poly) * (height + 1)  # one crossing per edge and pixel row at most
    assert work.cells <= (width + 1) * (height + 1) and work.pitch == 1.0
    # the exact rule over a sample: only points within half a cell's diagonal of an edge may differ
    sample = rng.choice(n, 20_000, replace=False)
    want = exact_rule(x[sample], y[sample], poly)
    differ = sample[got[sample] != want]
    assert len(differ) < len(sample) // 2  # most agree even here, where edges are 0.7 px apart
    if len(differ):
        assert distance_to_polygon([tuple(p) for p in poly], x[differ], y[differ]).max() <= math.sqrt(0.5) + 1e-9


def test_a_hostile_view_size_is_rasterised_at_a_bounded_resolution():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 90_000, 200_000), rng.uniform(0, 90_000, 200_000)
    poly = hostile_zigzag(MAX_POLYGON_VERTICES, 90_000, 90_000)
    work = ShapeWork()
    points_in_polygon(x, y, poly, work=work)
    assert work.method == "raster" and work.cells <= (MAX_RASTER_SIDE + 1) ** 2
    assert work.crossings <= len(poly) * (MAX_RASTER_SIDE + 1)


def test_a_hand_drawn_lasso_is_resolved_exactly():
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 1000, 300_000), rng.uniform(0, 800, 300_000)
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    radius = 300 + 120 * np.sin(7 * angles)
    poly = np.c_[500 + radius * np.cos(angles), 400 + radius * np.sin(angles)]
    work = ShapeWork()
    got = points_in_polygon(x, y, poly, work=work)
    assert work.method == "exact" and work.point_edge_tests <= 24 * len(x)
    np.testing.assert_array_equal(got, exact_rule(x, y, poly))


def test_the_raster_agrees_with_the_exact_rule_away_from_the_edges():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0, 300, 50_000), rng.uniform(0, 200, 50_000)
    for _ in range(5):
        poly = rng.uniform(0, 300, (60, 2)) * [1, 200 / 300]  # self-intersecting, as a hostile sender may send
        raster = points_in_polygon(x, y, poly, budget_per_point=0)  # forced onto the raster
        exact = exact_rule(x, y, poly)
        far = distance_to_polygon([tuple(p) for p in poly], x, y) > math.sqrt(0.5)
        np.testing.assert_array_equal(raster[far], exact[far])


def test_a_box_past_the_edge_of_the_view_selects_only_the_points_inside_the_view():
    rng = np.random.default_rng(4)
    coords = rng.uniform(-10, 10, size=(20_000, 2))
    axes = Axes2D(x_range=(-2.0, 2.0), y_range=(-1.5, 1.5), width=400, height=300)  # zoomed in
    box = np.array([(200, 150), (900, 150), (900, 700), (200, 700)])  # dragged far past the bottom right corner
    rows = rows_in_shape(coords, axes, box)
    px = (coords[:, 0] + 2) / 4 * 400
    py = (1 - (coords[:, 1] + 1.5) / 3) * 300
    want = np.flatnonzero((px >= 200) & (px <= 400) & (py >= 150) & (py <= 300))
    assert len(want) > 50
    np.testing.assert_array_equal(rows, want)


def test_points_nearer_than_the_near_plane_are_not_selected():
    near, far = 0.5, 100.0
    f = 1 / math.tan(math.pi / 8)
    proj = np.array(
        [[f, 0, 0, 0], [0, f, 0, 0], [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]]
    )
    cam = Camera3D(model=np.eye(4), view=np.eye(4), projection=proj, data_scale=np.ones(3), width=400, height=400)
    # all on the axis of the view: nearer than the near plane, just beyond it, beyond the far plane
    coords = np.array([[0, 0, -0.2], [0, 0, -0.6], [0, 0, -50.0], [0, 0, -150.0]])
    rows = rows_in_shape(coords, cam, np.array([(0, 0), (400, 0), (400, 400), (0, 400)]))
    assert rows.tolist() == [1, 2]


def test_an_event_decoded_against_a_zoomed_2d_view_counts_what_is_drawn_highlighted():
    rng = np.random.default_rng(5)
    coords = rng.normal(0, 3, size=(5000, 2))
    payload = build_payload(coords, rng.integers(0, 3, 5000), ["a", "b", "c"])
    view = {"x_range": [-1, 1], "y_range": [-1, 1], "width": 300, "height": 300}
    lasso = [[-500, -500], [800, -400], [700, 900], [-300, 600]]  # around the whole view and more
    event = decode_event({"kind": "lasso", "dims": 2, "polygon": lasso, "view": view}, payload)
    drawn = payload.drawn_coords()
    visible = (np.abs(drawn[:, 0]) <= 1) & (np.abs(drawn[:, 1]) <= 1)
    np.testing.assert_array_equal(event.rows, np.flatnonzero(visible))
