"""The map component's Python side: payload encoding, event decoding (hostile input too), shape → rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cleaner.ui.map.events import MAX_POLYGON_VERTICES, MapEventError, decode_event
from cleaner.ui.map.payload import HOVER_NAMES_MAX_POINTS, build_payload, decode_rows, encode_rows, unpack
from cleaner.ui.map.shapes import Axes2D, Camera3D, combine_selection, points_in_polygon, rows_in_shape


def clusters(n: int, dims: int = 3, n_classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_classes, size=n)
    centres = rng.normal(0, 6, size=(n_classes, dims))
    return (centres[codes] + rng.normal(0, 1, size=(n, dims))).astype(np.float32), codes


# ---------------------------------------------------------------- reference geometry, written out plainly


def look_at(eye, center, up) -> np.ndarray:
    f = np.asarray(center, float) - eye
    f /= np.linalg.norm(f)
    s = np.cross(f, up)
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def perspective(fovy: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1 / math.tan(fovy / 2)
    return np.array(
        [
            [f / aspect, 0, 0, 0],
            [0, f, 0, 0],
            [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
            [0, 0, -1, 0],
        ]
    )


def camera_json(model, view, proj, scale, width, height) -> dict:
    """The event's view as the JS sends it: WebGL's column-major matrices."""
    return {
        "model": model.T.ravel().tolist(),
        "view": view.T.ravel().tolist(),
        "projection": proj.T.ravel().tolist(),
        "data_scale": list(scale),
        "width": width,
        "height": height,
    }


def brute_force_rows(coords, model, view, proj, scale, width, height, polygon, codes=None, hidden=()):
    """Each point projected on its own, then tested against each edge: the slow, obvious reference."""
    out = []
    for row, p in enumerate(coords.astype(np.float64)):
        if codes is not None and codes[row] in hidden:
            continue
        v = np.array([p[0] * scale[0], p[1] * scale[1], p[2] * scale[2], 1.0])
        clip = proj @ (view @ (model @ v))
        if clip[3] <= 1e-12:
            continue
        x = (0.5 + 0.5 * clip[0] / clip[3]) * width
        y = (0.5 - 0.5 * clip[1] / clip[3]) * height
        inside = False
        for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1]):
            if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                inside = not inside
        if inside:
            out.append(row)
    return np.array(out, dtype=np.int64)


MODEL = np.diag([1.3, 1.3, 0.9, 1.0])
MODEL[:3, 3] = [-0.2, 0.1, 0.05]
VIEW = look_at(np.array([1.4, -1.1, 0.8]), [0.05, 0.0, -0.1], np.array([0.1, 0.2, 1.0]))
PROJ = perspective(math.pi / 4, 700 / 450, 0.01, 100)
SCALE = (0.02, 0.015, 0.025)
W, H = 700, 450
CONCAVE = [(150, 60), (560, 80), (600, 400), (380, 200), (330, 420), (120, 380)]  # a notch cut in from the bottom


# ---------------------------------------------------------------- payload


def test_payload_dtypes_and_compact_arrays():
    coords, codes = clusters(1000)
    p = build_payload(
        coords.astype(np.float64),
        codes,
        ["a", "b", "<c>"],
        excluded_rows=[5, 3, 5],
        selected_rows=np.array([7]),
        score=np.linspace(-1, 2, 1000),
    )
    assert p.coords.dtype == np.float32 and p.coords.shape == (1000, 3) and p.dims == 3
    assert p.levels.dtype == np.uint16 and p.class_codes.dtype == np.uint8
    assert p.excluded_rows.tolist() == [3, 5] and p.excluded_rows.dtype == np.int32
    assert p.selected_rows.tolist() == [7]
    assert p.score.dtype == np.uint8 and p.score.min() == 0 and p.score.max() == 255
    assert p.class_names[2] == "&lt;c&gt;"  # shown literally by plotly, never run
    head, body = unpack(p.points_message(key="k", height=500))
    assert head["n"] == 1000 and head["dims"] == 3 and head["key"] == "k" and head["height"] == 500
    levels = np.frombuffer(body, dtype="<u2").reshape(3, 1000).T
    np.testing.assert_array_equal(levels, p.levels)
    drawn = (np.array(head["lo"]) + levels * np.array(head["step"])).astype(np.float32)  # what decode.js computes
    np.testing.assert_array_equal(drawn, p.drawn_coords())
    head, body = unpack(p.colours_message(map_key="k"))
    assert head["classes"] == ["a", "b", "&lt;c&gt;"] and head["has_score"] and head["code_bytes"] == 1
    np.testing.assert_array_equal(np.frombuffer(body[:1000], dtype=np.uint8), codes)
    np.testing.assert_array_equal(np.frombuffer(body[1000:2000], dtype=np.uint8), p.score)
    marks = p.marks_data()
    assert marks["excluded"]["row"].tolist() == [3, 5] and str(marks["selected"]["row"].dtype) == "int32"


def test_fixed_point_coordinates_err_by_at_most_half_a_step():
    rng = np.random.default_rng(9)
    coords = (rng.normal(0, 1, size=(50_000, 3)) * [100, 0.01, 3] + [1e4, -5, 0]).astype(np.float32)
    p = build_payload(coords, np.zeros(50_000, dtype=int), ["a"])
    extent = coords.astype(np.float64).max(axis=0) - coords.astype(np.float64).min(axis=0)
    err = np.abs(p.drawn_coords().astype(np.float64) - coords).max(axis=0)
    # half a step, plus the float32 rounding of the value drawn
    assert (err <= extent / 131_070 + np.abs(coords).max(axis=0) * 2.0**-24 * 1.01).all(), (err, extent)
    lo_hi = build_payload(np.array([[1.0, 2.0], [1.0, 2.0]]), [0, 0], ["a"])  # a flat box: no division by zero
    np.testing.assert_array_equal(lo_hi.drawn_coords(), [[1.0, 2.0], [1.0, 2.0]])


@pytest.mark.parametrize(
    "n, rows",
    [(1000, []), (1000, [0, 999]), (1000, range(0, 1000, 3)), (13, range(13)), (100_000, range(0, 100_000, 2))],
)
def test_marked_rows_go_as_row_numbers_or_bits_whichever_is_smaller(n, rows):
    rows = np.asarray(list(rows), dtype=np.int64)
    frame = encode_rows(rows, n)
    np.testing.assert_array_equal(decode_rows(frame, n), rows)
    assert int(frame.memory_usage(index=False).sum()) == min(4 * len(rows), (n + 7) // 8)


def test_with_marks_shares_the_points_and_checks_the_rows():
    coords, codes = clusters(100)
    p = build_payload(coords, codes, ["a", "b", "c"])
    points = p.points_message(key="m")
    q = p.with_marks(selected_rows=[4, 2], excluded_rows=np.array([9]))
    assert q.points_message(key="m") is points  # encoded once, not again for each selection
    assert q.colours_message(map_key="m") is p.colours_message(map_key="m")
    assert q.selected_rows.tolist() == [2, 4] and q.excluded_rows.tolist() == [9]
    assert p.selected_rows.tolist() == []
    with pytest.raises(ValueError, match="outside"):
        p.with_marks(selected_rows=[100])


def test_team_mode_sends_which_excluded_rows_a_teammate_excluded():
    coords, codes = clusters(100)
    p = build_payload(coords, codes, ["a", "b", "c"])
    alone = p.with_marks(excluded_rows=[3, 7, 9]).marks_data()
    assert "team" not in alone and "team_excluded" not in alone  # outside team mode: no legend, no second kind
    team = p.with_marks(excluded_rows=[3, 7, 9], team_excluded_rows=[9, 3, 50]).marks_data()
    assert team["team"] is True
    # a row a teammate decided but that is no longer excluded is not marked as their exclusion
    assert decode_rows(team["team_excluded"], 100).tolist() == [3, 9]
    assert decode_rows(team["excluded"], 100).tolist() == [3, 7, 9]
    nobody = p.with_marks(excluded_rows=[3], team_excluded_rows=[]).marks_data()
    assert nobody["team"] is True and decode_rows(nobody["team_excluded"], 100).tolist() == []


def test_bytes_per_point_at_100k_within_budget_and_names_only_for_small_maps():
    """Points 6 bytes (3 x 16 bits), class code 1, score 1: at most 8 bytes a point (and a header)."""
    coords, codes = clusters(100_000, n_classes=10)
    names = [f"img_{i:06d}.png" for i in range(100_000)]
    p = build_payload(
        coords,
        codes,
        [f"class {i}" for i in range(10)],
        hover_names=names,
        excluded_rows=np.arange(0, 100_000, 50),
        selected_rows=np.arange(300),
    )
    assert p.hover_names is None  # too many points for per-point strings
    assert p.bytes_per_point() <= 7.01
    assert p.encoded_bytes("points") <= 6 * 100_000 + 400 and p.encoded_bytes("colours") <= 100_000 + 400
    scored = build_payload(coords, codes, [f"class {i}" for i in range(10)], score=np.linspace(0, 1, 100_000))
    assert scored.bytes_per_point() <= 8.01
    assert p.encoded_bytes("marks") < 4 * 300 + 100_000 // 8 + 2000  # rows, or a bit per point, plus Arrow's framing
    small = build_payload(
        coords[:HOVER_NAMES_MAX_POINTS],
        codes[:HOVER_NAMES_MAX_POINTS],
        [str(i) for i in range(10)],
        hover_names=names[:HOVER_NAMES_MAX_POINTS],
    )
    assert small.hover_names is not None and unpack(small.colours_message())[0]["names"][0] == "img_000000.png"
    assert small.bytes_per_point() <= 40


def test_2d_payload_and_many_classes():
    coords, codes = clusters(500, dims=2, n_classes=300)
    p = build_payload(coords, codes, [f"c{i}" for i in range(300)])
    assert p.dims == 2 and p.class_codes.dtype == np.uint16
    assert unpack(p.points_message())[0]["dims"] == 2 and len(unpack(p.points_message())[1]) == 2 * 2 * 500
    head, body = unpack(p.colours_message())
    assert head["one_trace"] and head["code_bytes"] == 2
    np.testing.assert_array_equal(np.frombuffer(body, dtype="<u2"), codes)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(coords=np.zeros((3, 4))), "(n, 2) or (n, 3)"),
        (dict(coords=np.array([[0, 0, np.nan]] * 3)), "NaN"),
        (dict(class_codes=np.array([0, 1, 5])), "0..1"),
        (dict(class_codes=np.array([0.0, 1.0, 1.0])), "integers"),
        (dict(excluded_rows=[3]), "outside"),
        (dict(selected_rows=[-1]), "outside"),
        (dict(score=np.zeros(2)), "3 values"),
    ],
)
def test_payload_errors_say_what_is_wrong(kwargs, message):
    args = dict(coords=np.zeros((3, 3)), class_codes=np.array([0, 1, 1]), class_names=["a", "b"])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_payload(args.pop("coords"), args.pop("class_codes"), args.pop("class_names"), **args)


# ---------------------------------------------------------------- shape → rows


def test_box_in_3d_matches_brute_force_through_a_non_trivial_camera():
    coords, codes = clusters(3000, seed=1)
    coords *= 3  # the data scale brings it back into the unit cube
    box = [(200, 100), (520, 100), (520, 330), (200, 330)]
    cam = Camera3D(model=MODEL, view=VIEW, projection=PROJ, data_scale=np.array(SCALE), width=W, height=H)
    got = rows_in_shape(coords, cam, np.array(box))
    want = brute_force_rows(coords, MODEL, VIEW, PROJ, SCALE, W, H, box)
    assert 50 < len(want) < 2900  # the box cuts through the data
    np.testing.assert_array_equal(got, want)


def test_concave_lasso_and_hidden_classes_match_brute_force():
    coords, codes = clusters(3000, seed=2)
    coords *= 3
    payload = build_payload(coords, codes, ["a", "b", "c"])
    raw = {
        "kind": "lasso",
        "mode": "replace",
        "dims": 3,
        "polygon": [list(p) for p in CONCAVE],
        "hidden": [1],
        "view": camera_json(MODEL, VIEW, PROJ, SCALE, W, H),
    }
    event = decode_event(raw, payload)
    want = brute_force_rows(payload.drawn_coords(), MODEL, VIEW, PROJ, SCALE, W, H, CONCAVE, codes, hidden={1})
    np.testing.assert_array_equal(event.rows, want)
    assert len(want) > 20 and not (codes[event.rows] == 1).any()
    # the notch matters: its convex hull holds more points
    hull = [CONCAVE[i] for i in (0, 1, 2, 4, 5)]
    assert len(brute_force_rows(payload.drawn_coords(), MODEL, VIEW, PROJ, SCALE, W, H, hull, codes, {1})) > len(want)


def test_points_behind_the_camera_are_not_selected():
    view = look_at(np.array([0.0, 0.0, 0.0]), [0, 0, -1], np.array([0, 1.0, 0]))
    cam = Camera3D(model=np.eye(4), view=view, projection=PROJ, data_scale=np.ones(3), width=W, height=H)
    coords = np.array([[0, 0, -1.0], [0, 0, 1.0]])  # in front, and mirrored behind
    rows = rows_in_shape(coords, cam, np.array([(0, 0), (W, 0), (W, H), (0, H)]))
    assert rows.tolist() == [0]


def test_2d_box_and_lasso():
    coords, codes = clusters(2000, dims=2, seed=3)
    axes = Axes2D(x_range=(-15.0, 12.0), y_range=(-9.0, 14.0), width=640, height=480)
    for poly in ([(100, 90), (400, 90), (400, 300), (100, 300)], CONCAVE):
        got = rows_in_shape(coords, axes, np.array(poly))
        px = (coords[:, 0] - -15.0) / 27.0 * 640
        py = (1 - (coords[:, 1] - -9.0) / 23.0) * 480
        want = []
        for row in range(len(coords)):
            inside = False
            for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
                if (y1 > py[row]) != (y2 > py[row]) and px[row] < x1 + (py[row] - y1) * (x2 - x1) / (y2 - y1):
                    inside = not inside
            if inside:
                want.append(row)
        assert len(want) > 10
        np.testing.assert_array_equal(got, want)


def test_point_in_polygon_at_a_million_points_matches_the_plain_rule():
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 1000, 1_000_000), rng.uniform(0, 1000, 1_000_000)
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    radius = 300 + 120 * np.sin(7 * angles)  # a star: concave, 400 vertices
    poly = np.c_[500 + radius * np.cos(angles), 500 + radius * np.sin(angles)]
    got = points_in_polygon(x, y, poly)
    want = np.zeros(len(x), dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0)):
        with np.errstate(divide="ignore", invalid="ignore"):
            want ^= ((y1 > y) != (y2 > y)) & (x < x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "box",
    [
        [(10, 10), (30, 10), (30, 40), (10, 40)],
        [(30, 40), (10, 40), (10, 10), (30, 10)],
        [(10, 40), (30, 40), (30, 10), (10, 10)],
    ],
)
def test_a_box_gives_the_plain_rule_even_for_points_on_its_edges(box):
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 50, 50_000).astype(float), rng.integers(0, 50, 50_000).astype(float)  # many on edges
    want = np.zeros(len(x), dtype=bool)
    for (x1, y1), (x2, y2) in zip(box, box[1:] + box[:1]):
        with np.errstate(divide="ignore", invalid="ignore"):
            want ^= ((y1 > y) != (y2 > y)) & (x < x1 + (y - y1) * (x2 - x1) / (y2 - y1))
    np.testing.assert_array_equal(points_in_polygon(x, y, np.array(box)), want)
    tilted = np.array(box, dtype=float) + [[0, 0], [0, 0.5], [0, 0], [0, 0]]  # not a box: the general path
    assert points_in_polygon(x, y, tilted).sum() > 0


def test_modes_combine_with_the_current_selection():
    cur = np.array([1, 2, 3])
    assert combine_selection(cur, [3, 4], "replace").tolist() == [3, 4]
    assert combine_selection(cur, [3, 4], "add").tolist() == [1, 2, 3, 4]
    assert combine_selection(cur, [3, 4], "remove").tolist() == [1, 2]
    with pytest.raises(ValueError):
        combine_selection(cur, [1], "xor")  # type: ignore[arg-type]


def test_decoded_events_apply_their_mode():
    coords, codes = clusters(200, dims=2)
    payload = build_payload(coords, codes, ["a", "b", "c"])
    view = {"x_range": [-100, 100], "y_range": [-100, 100], "width": 200, "height": 200}
    everything = [[0, 0], [200, 0], [200, 200], [0, 200]]
    add = decode_event({"kind": "box", "mode": "add", "dims": 2, "polygon": everything, "view": view}, payload)
    assert add.apply([0]).tolist() == list(range(200))
    remove = decode_event(
        {"kind": "box", "mode": "remove", "dims": 2, "polygon": everything, "view": view, "hidden": [0]}, payload
    )
    assert remove.apply(np.arange(200)).tolist() == np.flatnonzero(codes == 0).tolist()
    click = decode_event({"kind": "click", "row": 17, "mode": "replace"}, payload)
    assert click.rows.tolist() == [17] and click.describe(2) == "click on the 2D map: 1 image"
    assert add.describe(2) == "box on the 2D map (added): 200 images"


# ---------------------------------------------------------------- hostile input

GOOD_3D = {
    "kind": "box",
    "mode": "replace",
    "dims": 3,
    "polygon": [[0, 0], [10, 0], [10, 10]],
    "view": camera_json(MODEL, VIEW, PROJ, SCALE, W, H),
}


def _with(path: list, value) -> dict:
    import copy

    raw = copy.deepcopy(GOOD_3D)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "box",
        3,
        [],
        {"kind": "drag"},
        {"kind": "click"},
        {"kind": "click", "row": "5"},
        {"kind": "click", "row": 10**12},
        {"kind": "click", "row": -1},
        {"kind": "click", "row": True},
        {"kind": "click", "row": 5.0},
        {"kind": "click", "row": 5, "mode": "xor"},
        _with(["dims"], 2),
        _with(["dims"], "3"),
        _with(["polygon"], None),
        _with(["polygon"], [[0, 0], [1, 1]]),
        _with(["polygon"], [[0, 0]] * (MAX_POLYGON_VERTICES + 1)),
        _with(["polygon"], [[0, 0], [1, float("nan")], [2, 2]]),
        _with(["polygon"], [[0, 0], [1, 1e300], [2, 2]]),
        _with(["polygon"], [[0, 0], [1, 1], [2]]),
        _with(["polygon"], [[0, 0], [1, 1], "ab"]),
        _with(["polygon"], [[0, 0], [1, 1], [True, 2]]),
        _with(["view"], None),
        _with(["view", "model"], [0] * 15),
        _with(["view", "view"], [float("inf")] * 16),
        _with(["view", "projection"], ["1"] * 16),
        _with(["view", "data_scale"], [1, 0, 1]),
        _with(["view", "width"], 0),
        _with(["view", "height"], float("nan")),
        _with(["view", "width"], 10**9),
        _with(["hidden"], [7]),
        _with(["hidden"], "0"),
        _with(["hidden"], list(range(10**6))),
        _with(["mode"], None),
    ],
)
def test_hostile_events_are_refused_with_a_reason(raw):
    coords, codes = clusters(50)
    payload = build_payload(coords, codes, ["a", "b", "c"])
    with pytest.raises(MapEventError) as info:
        decode_event(raw, payload)
    assert str(info.value)


def test_a_2d_event_needs_nonempty_ranges():
    coords, codes = clusters(50, dims=2)
    payload = build_payload(coords, codes, ["a", "b", "c"])
    raw = {
        "kind": "box",
        "dims": 2,
        "polygon": [[0, 0], [1, 0], [1, 1]],
        "view": {"x_range": [1, 1], "y_range": [0, 1], "width": 10, "height": 10},
    }
    with pytest.raises(MapEventError, match="empty"):
        decode_event(raw, payload)
