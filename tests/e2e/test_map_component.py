"""The map component in real headless Chromium: box, lasso, modes, click, hidden classes, a camera that stays.

One harness server (tests/e2e/map_harness_app.py: the component alone on three well separated clusters) serves
the module. Every expected set of rows is computed here from the data and the camera read from the page
(plotly's own scene matrices), never taken from the component's answer.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cleaner.ui.map.component import PLOTLY_JS_VERSION, bundle

from .helpers import ARTIFACTS, CHROMIUM, VIEWPORT, distance_to_polygon, inside_polygon, screenshot, streamlit_command
from .map_harness_app import synthetic

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (Debian package 'chromium')")

REPO = Path(__file__).resolve().parents[2]
N, N_CLASSES = 300, 3
MARGIN_PX = 2.0  # no point this close to a shape's edge: which side it is on is then unambiguous


@pytest.fixture(scope="module")
def harness_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "map_harness_server.log"
    home = tempfile.mkdtemp(prefix="cleaner-map-e2e-")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            streamlit_command(REPO / "tests/e2e/map_harness_app.py", port),
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                    if resp.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the harness server did not start; log:\n{log_path.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group we created: streamlit and nothing else
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def chromium(chromium_browser):
    return chromium_browser  # conftest's one Chromium for the run


@pytest.fixture
def open_map(chromium, harness_url, request):
    """Open the harness (fresh context, fresh session) with the map in `dims` dimensions; wait for the first draw."""
    contexts = []

    def _open(dims: int = 3, viewport: dict | None = None, scale: float = 1):
        ctx = chromium.new_context(viewport=viewport or VIEWPORT, device_scale_factor=scale)
        ctx.set_default_timeout(60_000)
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto(f"{harness_url}/?n={N}&dims={dims}&classes={N_CLASSES}")
        wait_drawn(page, 1)
        page.wait_for_timeout(300)  # the first draw's layout settles (legend, modebar) before positions are read
        return page

    yield _open
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for i, ctx in enumerate(contexts):
        if failed:
            for page in ctx.pages:
                print(f"[e2e] failure screenshot: {screenshot(page, f'FAILED_{request.node.name}_{i}')}")
        ctx.close()


# ---------------------------------------------------------------- reading the page


def counter(page, name: str) -> int:
    """The map's counters: `draws` (plotly drew the points), `marks` (selection/excluded drawn), `events` (sent)."""
    return int(page.locator(".cleaner-map").get_attribute(f"data-{name}") or 0)


def draws(page) -> int:
    return counter(page, "draws")


def marks(page) -> int:
    return counter(page, "marks")


def wait_drawn(page, at_least: int) -> None:
    page.wait_for_function(
        "n => { const m = document.querySelector('.cleaner-map'); return m && Number(m.dataset.draws) >= n"
        " && Number(m.dataset.marks || 0) >= 1; }",
        arg=at_least,
        timeout=120_000,
    )


def harness_state(page) -> dict:
    text = page.locator("[data-testid=stText]").filter(has_text="harness-state").first.inner_text()
    return json.loads(text.split(" ", 1)[1])


def wait_event(page, before: int, what: str = "marks") -> dict:
    """The harness state once the map's `what` counter passed `before` (the event went through Python, the
    selection came back and was drawn) and the script run is over."""
    page.wait_for_function(
        "([n, what]) => { const m = document.querySelector('.cleaner-map'); return m && Number(m.dataset[what]) > n; }",
        arg=[before, what],
        timeout=60_000,
    )
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=stApp]');"
        " return a && a.getAttribute('data-test-script-state') !== 'running'; }"
    )
    return harness_state(page)


def page_projection(page, coords: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Page pixels of every point, from the camera the page shows now (read from plotly's scene or axes)."""
    if dims == 3:
        cam = page.evaluate("""() => {
            const s = document.querySelector('.cleaner-map-gd')._fullLayout.scene._scene, p = s.glplot.cameraParams;
            const r = s.glplot.canvas.getBoundingClientRect();
            return {model: Array.from(p.model), view: Array.from(p.view), projection: Array.from(p.projection),
                    scale: Array.from(s.dataScale), left: r.left, top: r.top, width: r.width, height: r.height}; }""")
        m = (
            np.array(cam["projection"]).reshape(4, 4).T
            @ np.array(cam["view"]).reshape(4, 4).T
            @ np.array(cam["model"]).reshape(4, 4).T
        )
        h = np.c_[coords.astype(np.float64) * np.array(cam["scale"]), np.ones(len(coords))] @ m.T
        x = cam["left"] + (0.5 + 0.5 * h[:, 0] / h[:, 3]) * cam["width"]
        y = cam["top"] + (0.5 - 0.5 * h[:, 1] / h[:, 3]) * cam["height"]
        return x, y, cam
    ax = page.evaluate("""() => { const gd = document.querySelector('.cleaner-map-gd'), r = gd.getBoundingClientRect();
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        return {left: r.left + xa._offset, top: r.top + ya._offset, width: xa._length, height: ya._length,
                xr: xa.range.map(Number), yr: ya.range.map(Number)}; }""")
    c = coords.astype(np.float64)
    x = ax["left"] + (c[:, 0] - ax["xr"][0]) / (ax["xr"][1] - ax["xr"][0]) * ax["width"]
    y = ax["top"] + (1 - (c[:, 1] - ax["yr"][0]) / (ax["yr"][1] - ax["yr"][0])) * ax["height"]
    return x, y, ax


def drawing_area(info: dict) -> tuple[float, float, float, float]:
    return info["left"], info["top"], info["width"], info["height"]


def clean_shape(x, y, area, rng, make, lo=15, hi=250, accept=lambda inside: True) -> list[tuple[int, int]]:
    """A shape (integer page pixels) inside the drawing area holding lo..hi points, none within MARGIN_PX of its edge."""
    left, top, width, height = area
    for _ in range(3000):
        i = rng.integers(len(x))
        poly = make(float(x[i]), float(y[i]), rng)
        if not all(left + 3 < px < left + width - 3 and top + 3 < py < top + height - 3 for px, py in poly):
            continue
        inside = inside_polygon(poly, x, y)
        if not lo <= inside.sum() <= hi or not accept(inside):
            continue
        if distance_to_polygon(poly, x, y).min() < MARGIN_PX:
            continue
        return poly
    raise AssertionError("found no clean shape over the map")


def make_box(cx, cy, rng):
    w, h = rng.uniform(20, 140, size=2)
    x0, y0 = int(round(cx - w * rng.uniform(0.2, 0.8))), int(round(cy - h * rng.uniform(0.2, 0.8)))
    return [(x0, y0), (x0 + int(w), y0), (x0 + int(w), y0 + int(h)), (x0, y0 + int(h))]


def make_star(cx, cy, rng):
    """A concave lasso: ten vertices, alternately far out and half way in."""
    r, turn = rng.uniform(40, 120), rng.uniform(0, math.pi)
    return [
        (
            int(round(cx + r * (1 if k % 2 == 0 else 0.45) * math.cos(turn + k * math.pi / 5))),
            int(round(cy + r * (1 if k % 2 == 0 else 0.45) * math.sin(turn + k * math.pi / 5))),
        )
        for k in range(10)
    ]


def choose_tool(page, name: str) -> None:
    page.locator(".cleaner-map-toolbar button", has_text=name).click()


def drag_box(page, box, modifier: str | None = None) -> None:
    (x0, y0), (x1, y1) = box[0], box[2]
    if modifier:
        page.keyboard.down(modifier)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()
    if modifier:
        page.keyboard.up(modifier)


def drag_lasso(page, poly) -> None:
    page.mouse.move(*poly[0])
    page.mouse.down()
    for vx, vy in poly[1:] + poly[:1]:
        page.mouse.move(vx, vy)
    page.mouse.up()


def rotate(page, info: dict, dx: float = 90, dy: float = 40) -> None:
    """Turn the 3D view by dragging across it with the Move tool, as a user does."""
    choose_tool(page, "Move")
    cx, cy = info["left"] + info["width"] * 0.5, info["top"] + info["height"] * 0.5
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + dx, cy + dy, steps=8)
    page.mouse.up()
    # the turn eases out for a moment after the button is released: wait until the view holds still
    view_js = (
        "() => Array.from(document.querySelector('.cleaner-map-gd')._fullLayout.scene._scene.glplot.cameraParams.view)"
    )
    last = None
    for _ in range(100):
        page.wait_for_timeout(150)
        now = page.evaluate(view_js)
        if now == last:
            return
        last = now
    raise AssertionError("the 3D view kept moving after the drag")


def coords_and_codes(dims: int) -> tuple[np.ndarray, np.ndarray]:
    coords, codes = synthetic(N, dims, N_CLASSES)
    return coords.astype(np.float32), codes


def rows_inside(poly, x, y, mask=None) -> list[int]:
    inside = inside_polygon(poly, x, y)
    if mask is not None:
        inside &= mask
    return np.flatnonzero(inside).tolist()


# ---------------------------------------------------------------- tests


def test_box_on_the_rotated_3d_map_selects_exactly_the_points_projected_inside(open_map):
    page = open_map(3)
    coords, _ = coords_and_codes(3)
    _, _, info = page_projection(page, coords, 3)
    rotate(page, info)
    x, y, info = page_projection(page, coords, 3)
    box = clean_shape(x, y, drawing_area(info), np.random.default_rng(1), make_box)
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, box)
    state = wait_event(page, before)
    assert state["last"]["kind"] == "box" and state["last"]["mode"] == "replace"
    assert state["selected"] == rows_inside(box, x, y)


def test_lasso_on_the_3d_map_selects_exactly_the_points_projected_inside(open_map):
    page = open_map(3)
    coords, _ = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    poly = clean_shape(x, y, drawing_area(info), np.random.default_rng(2), make_star)
    choose_tool(page, "Lasso")
    before = marks(page)
    drag_lasso(page, poly)
    page.wait_for_timeout(50)
    state = wait_event(page, before)
    assert state["last"]["kind"] == "lasso"
    assert state["selected"] == rows_inside(poly, x, y)
    # the highlighted selection and the drawn star, as a user sees them
    page.evaluate(
        "poly => { const p = document.querySelector('.cleaner-map-overlay path');"
        " const r = document.querySelector('.cleaner-map-overlay').getBoundingClientRect();"
        " p.setAttribute('d', 'M' + poly.map(q => (q[0] - r.left) + ',' + (q[1] - r.top)).join('L') + 'Z'); }",
        [list(p) for p in poly],
    )
    screenshot(page, "map_3d_lasso")


def test_shift_box_adds_and_alt_box_removes(open_map):
    page = open_map(3)
    coords, codes = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    rng = np.random.default_rng(3)
    area = drawing_area(info)
    first = clean_shape(x, y, area, rng, make_box, accept=lambda inside: (codes[inside] == 0).all())
    second = clean_shape(x, y, area, rng, make_box, accept=lambda inside: (codes[inside] == 1).all())
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, first)
    assert wait_event(page, before)["selected"] == rows_inside(first, x, y)
    before = marks(page)
    drag_box(page, second, "Shift")
    state = wait_event(page, before)
    assert state["last"]["mode"] == "add"
    both = sorted(set(rows_inside(first, x, y)) | set(rows_inside(second, x, y)))
    assert state["selected"] == both
    before = marks(page)
    drag_box(page, first, "Alt")
    state = wait_event(page, before)
    assert state["last"]["mode"] == "remove"
    assert state["selected"] == rows_inside(second, x, y)


def test_the_camera_stays_when_the_excluded_set_changes(open_map):
    page = open_map(3)
    coords, _ = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    box = clean_shape(x, y, drawing_area(info), np.random.default_rng(4), make_box)
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, box)
    selected = wait_event(page, before)["selected"]
    rotate(page, info, dx=-120, dy=30)
    camera_js = "() => JSON.stringify(document.querySelector('.cleaner-map-gd')._fullLayout.scene.camera)"
    camera = page.evaluate(camera_js)
    _, _, rotated = page_projection(page, coords, 3)
    drawn = draws(page)
    before = marks(page)
    page.get_by_role("button", name="Exclude the selection").click()
    state = wait_event(page, before)
    assert state["excluded"] == selected
    assert counter(page, "excluded") == len(selected)  # the × marks the map draws
    assert draws(page) == drawn  # selection and exclusion never redraw plotly's scene
    assert json.loads(page.evaluate(camera_js)) == json.loads(camera)
    _, _, after = page_projection(page, coords, 3)
    np.testing.assert_allclose(after["view"], rotated["view"], atol=1e-9)
    # a new colouring redraws the points, through the same camera (the view as drawn: rebuilt from it by plotly,
    # so equal up to rounding)
    page.get_by_role("button", name="Colour by score").click()
    wait_event(page, drawn, "draws")
    assert page.evaluate("() => document.querySelector('.cleaner-map-gd').data[0].marker.colorscale") is not None
    _, _, recoloured = page_projection(page, coords, 3)
    np.testing.assert_allclose(recoloured["view"], after["view"], atol=1e-6)
    screenshot(page, "map_3d_excluded_by_score")


def _same_camera(a: dict, b: dict) -> bool:
    """The same camera, up to the last bits plotly's matrix round trip changes."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_camera(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def test_the_view_comes_back_when_the_map_is_hidden_and_shown(open_map):
    page = open_map(3)
    coords, codes = coords_and_codes(3)
    _, _, info = page_projection(page, coords, 3)
    rotate(page, info, dx=70, dy=-50)
    page.locator(".legend .traces", has_text="class 2").click()
    page.wait_for_function(
        "() => document.querySelector('.cleaner-map-gd').data.find(t => t.uid === 'n2').visible === 'legendonly'"
    )
    camera_js = "() => JSON.stringify(document.querySelector('.cleaner-map-gd')._fullLayout.scene.camera)"
    camera = json.loads(page.evaluate(camera_js))
    hide = page.get_by_text("Hide the map", exact=True)
    hide.click()
    page.wait_for_function("() => !document.querySelector('.cleaner-map')")
    hide.click()
    wait_drawn(page, 1)
    assert _same_camera(json.loads(page.evaluate(camera_js)), camera)
    assert (
        page.evaluate("() => document.querySelector('.cleaner-map-gd').data.find(t => t.uid === 'n2').visible")
        == "legendonly"
    )


def test_the_wheel_scrolls_the_page_and_ctrl_wheel_zooms_the_map(open_map):
    page = open_map(3, viewport={"width": 1400, "height": 650})  # short: the page scrolls
    coords, _ = coords_and_codes(3)
    _, _, info = page_projection(page, coords, 3)
    camera_js = "() => JSON.stringify(document.querySelector('.cleaner-map-gd')._fullLayout.scene.camera)"
    scroll_js = "() => document.querySelector('[data-testid=stMain]').scrollTop"
    camera, scrolled = page.evaluate(camera_js), page.evaluate(scroll_js)
    page.mouse.move(info["left"] + info["width"] / 2, info["top"] + min(info["height"], 650 - info["top"]) / 2)
    page.mouse.wheel(0, 200)
    page.wait_for_function(f"() => document.querySelector('[data-testid=stMain]').scrollTop > {scrolled}")
    assert _same_camera(json.loads(page.evaluate(camera_js)), json.loads(camera))  # the map did not zoom
    _, _, info = page_projection(page, coords, 3)
    page.mouse.move(info["left"] + info["width"] / 2, max(5, info["top"] + 40))
    eye = json.loads(camera)["eye"]
    page.keyboard.down("Control")
    page.mouse.wheel(0, -200)
    page.keyboard.up("Control")
    page.wait_for_function(f"c => ({camera_js})() !== c", arg=camera)
    zoomed = json.loads(page.evaluate(camera_js))["eye"]
    assert math.hypot(*zoomed.values()) < math.hypot(*eye.values())  # closer: zoomed in


WS_HOOK = """(() => {
    window.__wsBytes = 0;
    const Native = window.WebSocket;
    window.WebSocket = function (...args) {
        const ws = new Native(...args);
        ws.addEventListener('message', (e) => { window.__wsBytes += e.data.byteLength ?? e.data.size ?? e.data.length; });
        return ws;
    };
    window.WebSocket.prototype = Native.prototype;
    Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();"""


def test_a_rerun_does_not_send_plotly_js_or_the_points_again(chromium, harness_url):
    """plotly.js (4.8 MB) and the points go once per page load; Streamlit sends unchanged elements as references."""
    ctx = chromium.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        page.add_init_script(WS_HOOK)
        page.goto(f"{harness_url}/?n={N}&dims=3&classes={N_CLASSES}")
        wait_drawn(page, 1)
        first_load = page.evaluate("window.__wsBytes")
        from_assets = page.evaluate(
            "() => performance.getEntriesByType('resource').some(e => e.name.includes('/vendor/plotly'))"
        )
        assert first_load > 4_000_000 or from_assets  # plotly.js came once: over the websocket, or as a file
        page.wait_for_timeout(500)
        before = page.evaluate("window.__wsBytes")
        runs = page.locator("[data-testid=stText]", has_text="script runs: ").first
        count = int(runs.inner_text().split(":")[1])
        sent = []
        for _ in range(2):  # two reruns in which nothing changes (nothing is selected to exclude)
            page.get_by_role("button", name="Exclude the selection").click()
            count += 1
            page.wait_for_function(
                "n => Array.from(document.querySelectorAll('[data-testid=stText]'))"
                ".some(e => e.innerText === 'script runs: ' + n)",
                arg=count,
            )
            page.wait_for_timeout(300)
            sent.append(page.evaluate("window.__wsBytes") - before)
            before = page.evaluate("window.__wsBytes")
        # the first one swaps the messages for references to them: with the scripts inline (not installed) that
        # element's message carries the map's script once more; after that a rerun sends next to nothing
        assert sent[0] < 20_000 + (0 if from_assets else len(bundle().encode()))
        assert sent[1] < 20_000, sent
        assert draws(page) == 1
    finally:
        ctx.close()


def test_plotly_js_and_the_map_scripts_come_as_http_files_not_over_the_websocket(chromium, harness_url):
    """The project is installed (`-e .`), so the map's modules and plotly.js are the component's asset files: each
    page load fetches them over HTTP and the websocket carries the data only, not 4.8 MB of plotly.js text."""
    ctx = chromium.new_context(viewport=VIEWPORT)
    try:
        page = ctx.new_page()
        loads = []  # per page load: websocket frames received, and the component files fetched over HTTP

        def on_websocket(ws):
            frames = loads[-1]["frames"]
            ws.on("framereceived", lambda payload: frames.append(payload if isinstance(payload, bytes) else b""))

        def on_response(response):
            if "/_stcore/bidi-components/" in response.url and loads:
                loads[-1]["files"][response.url.rsplit("/bidi-components/", 1)[1]] = response

        page.on("websocket", on_websocket)
        page.on("response", on_response)
        for _ in range(2):  # the second load is what every later visit costs
            loads.append({"frames": [], "files": {}})
            page.goto(f"{harness_url}/?n={N}&dims=3&classes={N_CLASSES}")
            wait_drawn(page, 1)
            page.wait_for_timeout(300)
        plotly_js = (REPO / "cleaner/ui/map/frontend/vendor/plotly.min.js").read_bytes()
        for load in loads:
            files = load["files"]
            fetched = files.get("cleaner.map/vendor/plotly.min.js")
            assert fetched is not None and fetched.status == 200, sorted(files)
            for module in ("map.js", "tools.js", "marks.js", "decode.js"):
                assert f"cleaner.map/{module}" in files  # loaded as modules, not one inline string
            ws_bytes = sum(len(f) for f in load["frames"])
            assert ws_bytes < len(plotly_js) / 10, ws_bytes  # the map's data, not plotly.js
            assert not any(b"plotly.js v" in f or b"Plotly" in f for f in load["frames"])
        assert (
            loads[-1]["files"]["cleaner.map/vendor/plotly.min.js"].body() == plotly_js
        )  # the page is still this load's
        assert page.evaluate("window.Plotly.version") == PLOTLY_JS_VERSION
    finally:
        ctx.close()


def test_a_click_selects_that_points_row(open_map):
    page = open_map(3)
    coords, _ = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    # an isolated point: nothing else within 12 px on screen, so the pick cannot land on a neighbour
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    isolated = np.flatnonzero(d.min(axis=1) > 12)
    assert len(isolated), "no isolated point to click"
    row = int(isolated[0])
    before = marks(page)
    page.mouse.move(x[row] + 1, y[row] + 1)
    page.mouse.move(x[row], y[row])
    page.wait_for_timeout(200)
    page.mouse.down()
    page.wait_for_timeout(300)  # held across a render, or gl-plot3d drops the click
    page.mouse.up()
    state = wait_event(page, before)
    assert state["last"]["kind"] == "click"
    assert state["selected"] == [row]


def test_a_class_hidden_in_the_legend_is_not_selected(open_map):
    page = open_map(3)
    coords, codes = coords_and_codes(3)
    page.locator(".legend .traces", has_text="class 1").click()
    page.wait_for_function(
        "() => document.querySelector('.cleaner-map-gd').data.find(t => t.uid === 'n1').visible === 'legendonly'"
    )
    page.wait_for_timeout(300)
    x, y, info = page_projection(page, coords, 3)
    left, top, width, height = drawing_area(info)
    everything = [
        (int(left + 5), int(top + 5)),
        (int(left + width - 5), int(top + 5)),
        (int(left + width - 5), int(top + height - 5)),
        (int(left + 5), int(top + height - 5)),
    ]
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, everything)
    state = wait_event(page, before)
    want = rows_inside(everything, x, y, mask=codes != 1)
    assert len(want) == int((codes != 1).sum())  # the box holds every visible point
    assert state["selected"] == want
    assert (
        page.evaluate("() => document.querySelector('.cleaner-map-gd').data.find(t => t.uid === 'n1').visible")
        == "legendonly"
    )  # the legend state survived the rerun


def test_box_and_lasso_on_the_2d_map(open_map):
    page = open_map(2)
    coords, _ = coords_and_codes(2)
    x, y, info = page_projection(page, coords, 2)
    rng = np.random.default_rng(6)
    box = clean_shape(x, y, drawing_area(info), rng, make_box)
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, box)
    state = wait_event(page, before)
    assert state["selected"] == rows_inside(box, x, y)
    x, y, info = page_projection(page, coords, 2)  # the view must not have moved; recompute anyway
    star = clean_shape(x, y, drawing_area(info), rng, make_star)
    choose_tool(page, "Lasso")
    before = marks(page)
    page.keyboard.down("Shift")
    drag_lasso(page, star)
    page.keyboard.up("Shift")
    state = wait_event(page, before)
    assert state["last"]["mode"] == "add"
    assert state["selected"] == sorted(set(rows_inside(box, x, y)) | set(rows_inside(star, x, y)))


# ---------------------------------------------------------------- what the hand means (issue 27)
# Expected rows come from the harness's data and plotly's own camera (or its own picking), never from the
# component's projection or its answer.

PICKED_JS = """() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => {
    const s = document.querySelector('.cleaner-map-gd')._fullLayout.scene._scene.glplot.selection;
    if (!s || !s.object || !s.object._trace) return resolve(null);
    const t = s.object._trace.data;
    resolve({distance: s.distance, curve: t.index, point: s.index, name: t.name});
})))"""


def row_of_pick(picked: dict, codes: np.ndarray) -> int:
    """The row plotly picked: trace k draws class k's rows in row order (the harness's one trace per class)."""
    k = int(picked["name"].split()[-1])
    return int(np.flatnonzero(codes == k)[picked["point"]])


def plotly_pick_3d(page, x: float, y: float) -> dict | None:
    page.mouse.move(x + 1, y + 1)
    page.mouse.move(x, y)
    page.wait_for_timeout(150)
    return page.evaluate(PICKED_JS)


def clickable_rows(page, codes, x, y, info, accept=lambda row: True, want: int = 1) -> list[int]:
    """Well separated rows that plotly's own picking reports when the pointer rests on them."""
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    left, top, width, height = drawing_area(info)
    inside = (x > left + 15) & (x < left + width - 15) & (y > top + 40) & (y < top + height - 15)
    found = []
    for row in np.argsort(-d.min(axis=1)):
        if not inside[row] or not accept(int(row)):
            continue
        picked = plotly_pick_3d(page, float(x[row]), float(y[row]))
        if picked and picked["distance"] <= 3 and row_of_pick(picked, codes) == row:
            found.append(int(row))
            if len(found) == want:
                return found
    raise AssertionError(f"found {len(found)} of {want} points plotly picks where they are drawn")


def click_at(page, x: float, y: float, modifier: str | None = None) -> None:
    """Rest on the point, then press and release without moving (held across a render, as a person's click is)."""
    page.mouse.move(x + 1, y + 1)
    page.mouse.move(x, y)
    page.wait_for_timeout(200)
    if modifier:
        page.keyboard.down(modifier)
    page.mouse.down()
    page.wait_for_timeout(250)
    page.mouse.up()
    if modifier:
        page.keyboard.up(modifier)


def test_a_hover_where_a_point_is_drawn_is_picked_by_plotly_as_that_row(open_map):
    page = open_map(3)
    coords, codes = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    rows = clickable_rows(page, codes, x, y, info, want=3)
    for row in rows:
        picked = plotly_pick_3d(page, float(x[row]), float(y[row]))
        assert row_of_pick(picked, codes) == row


def test_shift_click_adds_and_alt_click_removes_on_the_3d_map(open_map):
    page = open_map(3)
    coords, codes = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    box = clean_shape(
        x, y, drawing_area(info), np.random.default_rng(7), make_box, accept=lambda inside: (codes[inside] == 0).all()
    )
    boxed = rows_inside(box, x, y)
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, box)
    assert wait_event(page, before)["selected"] == boxed
    choose_tool(page, "Move")
    (extra,) = clickable_rows(page, codes, x, y, info, accept=lambda row: codes[row] != 0)
    before = marks(page)
    click_at(page, float(x[extra]), float(y[extra]), "Shift")
    state = wait_event(page, before)
    assert state["last"]["kind"] == "click" and state["last"]["mode"] == "add"
    assert state["selected"] == sorted(boxed + [extra])
    (gone,) = clickable_rows(page, codes, x, y, info, accept=lambda row: row in boxed)
    before = marks(page)
    click_at(page, float(x[gone]), float(y[gone]), "Alt")
    state = wait_event(page, before)
    assert state["last"]["mode"] == "remove"
    assert state["selected"] == sorted(set(boxed + [extra]) - {gone})


def test_a_rotation_that_starts_on_a_dense_cluster_keeps_the_selection(open_map):
    page = open_map(3)
    coords, codes = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    box = clean_shape(x, y, drawing_area(info), np.random.default_rng(8), make_box)
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, box)
    selected = wait_event(page, before)["selected"]
    assert selected
    choose_tool(page, "Move")
    # the densest spot: the point with most neighbours within 6 px
    dense = int(np.argmax((np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) < 6).sum(axis=1)))
    events = counter(page, "events")
    for dx, dy in ((60, 10), (-80, 30), (3, 90)):  # slow drags across the clusters, the button held throughout
        sx, sy = float(x[dense]), float(y[dense])
        page.mouse.move(sx, sy)
        page.wait_for_timeout(200)
        page.mouse.down()
        page.wait_for_timeout(300)  # held on the point across renders: where plotly fires its own click
        page.mouse.move(sx + dx, sy + dy, steps=25)
        page.mouse.up()
        page.wait_for_timeout(500)
        x, y, _ = page_projection(page, coords, 3)
    page.wait_for_timeout(1500)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=stApp]').getAttribute('data-test-script-state') !== 'running'"
    )
    assert counter(page, "events") == events  # a drag sent nothing
    assert harness_state(page)["selected"] == selected


def test_zoom_then_a_box_past_the_edge_selects_only_the_points_in_view(open_map):
    page = open_map(2)
    coords, _ = coords_and_codes(2)
    x, y, info = page_projection(page, coords, 2)
    left, top, width, height = drawing_area(info)
    page.mouse.move(left + width * 0.55, top + height * 0.55)
    page.keyboard.down("Control")
    for _ in range(3):
        page.mouse.wheel(0, -200)
        page.wait_for_timeout(200)
    page.keyboard.up("Control")
    page.wait_for_timeout(500)
    x, y, info = page_projection(page, coords, 2)
    left, top, width, height = drawing_area(info)
    in_view = (x >= left) & (x <= left + width) & (y >= top) & (y <= top + height)
    assert 0 < in_view.sum() < N  # zoomed in: some points are out of view
    # from inside the view to far past its bottom right corner
    x0, y0 = int(left + width * 0.45), int(top + height * 0.45)
    x1, y1 = int(left + width + 60), int(top + height + 120)
    box = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    inside = inside_polygon(box, x, y)
    near_edge = (
        (np.abs(x - (left + width)) < 1)
        | (np.abs(y - (top + height)) < 1)
        | (np.abs(x - x0) < 1)
        | (np.abs(y - y0) < 1)
    )
    assert (inside & ~in_view).any(), "the box must reach points out of view for the test to mean anything"
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, box)
    state = wait_event(page, before)
    sure = set(np.flatnonzero(inside & in_view & ~near_edge).tolist())
    maybe = set(np.flatnonzero(inside & in_view & near_edge).tolist())
    got = set(state["selected"])
    assert sure <= got <= sure | maybe
    assert counter(page, "selected") == len(got)  # the map highlights what the gallery counts


def test_a_box_at_device_pixel_ratio_2_and_after_a_resize(open_map):
    page = open_map(3, viewport={"width": 1100, "height": 900}, scale=2)
    coords, _ = coords_and_codes(3)
    x, y, info = page_projection(page, coords, 3)
    box = clean_shape(x, y, drawing_area(info), np.random.default_rng(9), make_box)
    choose_tool(page, "Box")
    before = marks(page)
    drag_box(page, box)
    first = wait_event(page, before)["selected"]
    assert first == rows_inside(box, x, y)
    page.set_viewport_size({"width": 560, "height": 900})  # narrower than the page's column: the map shrinks
    page.wait_for_function(
        "w => { const s = document.querySelector('.cleaner-map-gd')._fullLayout.scene._scene;"
        " return s.glplot.canvas.getBoundingClientRect().width < w; }",
        arg=info["width"] - 60,
    )
    page.wait_for_timeout(800)
    x, y, info = page_projection(page, coords, 3)
    assert info["width"] < 560
    box = clean_shape(
        x,
        y,
        drawing_area(info),
        np.random.default_rng(10),
        make_box,
        lo=3,
        accept=lambda inside: np.flatnonzero(inside).tolist() != first,
    )
    before = marks(page)
    drag_box(page, box)
    assert wait_event(page, before)["selected"] == rows_inside(box, x, y)


def test_unmounting_during_a_draw_leaves_one_map_and_no_error(open_map):
    page = open_map(3)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    drawn = draws(page)
    hide = page.get_by_text("Hide the map", exact=True)
    page.get_by_role("button", name="Colour by score").click()  # a redraw on its way...
    page.wait_for_timeout(100)
    hide.click()  # ...and the map unmounted meanwhile
    page.wait_for_function("() => !document.querySelector('.cleaner-map')")
    page.wait_for_timeout(1500)
    hide.click()
    wait_drawn(page, 1)
    assert page.locator(".cleaner-map").count() == 1
    # The score colours come in their own message and can reach the map after its first draw.
    page.wait_for_function(
        "() => { const g = document.querySelector('.cleaner-map-gd'); return !!(g && g.data && g.data[0].marker.colorscale); }",
        timeout=60_000,
    )
    assert page.locator(".cleaner-map").count() == 1
    assert not errors, errors
    assert drawn >= 1


def isolated_rows(x, y, info, apart_px: float = 14, want: int = 3) -> list[int]:
    """Rows drawn well inside the drawing area with no other point within `apart_px` on screen: a click there can
    only mean that row."""
    d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(d, np.inf)
    left, top, width, height = drawing_area(info)
    ok = (
        (d.min(axis=1) > apart_px)
        & (x > left + 20)
        & (x < left + width - 20)
        & (y > top + 20)
        & (y < top + height - 20)
    )
    rows = np.flatnonzero(ok)
    assert len(rows) >= want, f"only {len(rows)} isolated points"
    return [int(r) for r in rows[:want]]


def test_shift_click_adds_and_alt_click_removes_on_the_2d_map(open_map):
    page = open_map(2)
    coords, _ = coords_and_codes(2)
    x, y, info = page_projection(page, coords, 2)
    first, second, third = isolated_rows(x, y, info)
    before = marks(page)
    click_at(page, float(x[first]), float(y[first]))
    state = wait_event(page, before)
    assert state["last"]["kind"] == "click" and state["selected"] == [first]
    for row, modifier, want in (
        (second, "Shift", sorted([first, second])),
        (third, "Shift", sorted([first, second, third])),
        (first, "Alt", sorted([second, third])),
    ):
        before = marks(page)
        click_at(page, float(x[row]), float(y[row]), modifier)
        state = wait_event(page, before)
        assert state["last"]["mode"] == ("add" if modifier == "Shift" else "remove")
        assert state["selected"] == want
    x2, y2, _ = page_projection(page, coords, 2)
    assert np.allclose(x2, x) and np.allclose(y2, y)  # a click never moved the view


WEBGL_HOOK = """(() => {
    window.__gl = {made: [], lost: 0};
    const native = HTMLCanvasElement.prototype.getContext;
    HTMLCanvasElement.prototype.getContext = function (type, ...rest) {
        const ctx = native.call(this, type, ...rest);
        if (ctx && /webgl/.test(type) && !window.__gl.made.includes(ctx)) {
            window.__gl.made.push(ctx);
            this.addEventListener('webglcontextlost', () => { window.__gl.lost++; });
        }
        return ctx;
    };
})();"""
LIVE_CONTEXTS_JS = "() => window.__gl.made.filter(c => !c.isContextLost()).length"


def test_remounting_the_map_many_times_leaks_no_webgl_context(chromium, harness_url):
    """Unmounted (hidden) and mounted again 20 times, once right in the middle of a draw: Chromium allows about 16
    live WebGL contexts, so a context kept by each unmounted map would make the browser drop the oldest."""
    ctx = chromium.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(60_000)
    try:
        page = ctx.new_page()
        page.add_init_script(WEBGL_HOOK)
        warnings = []
        page.on("console", lambda msg: warnings.append(msg.text) if "WebGL" in msg.text else None)
        page.goto(f"{harness_url}/?n={N}&dims=3&classes={N_CLASSES}")
        wait_drawn(page, 1)
        live_at_start = page.evaluate(LIVE_CONTEXTS_JS)
        hide = page.get_by_text("Hide the map", exact=True)
        for i in range(20):
            if i == 10:
                page.get_by_role("button", name="Colour by score").click()  # a redraw on its way...
                page.wait_for_timeout(100)
            hide.click()  # ...and the map unmounted meanwhile (the other times: after it drew)
            page.wait_for_function("() => !document.querySelector('.cleaner-map')")
            hide.click()
            wait_drawn(page, 1)
        page.wait_for_timeout(500)
        assert page.locator(".cleaner-map").count() == 1
        assert page.evaluate(LIVE_CONTEXTS_JS) <= live_at_start  # the unmounted maps' contexts were let go
        assert not [w for w in warnings if "Too many active WebGL contexts" in w], warnings
        # the map on screen still draws: its canvas shows the points (not one flat colour)
        shot = np.asarray(Image.open(io.BytesIO(page.locator(".cleaner-map-gd canvas").first.screenshot())))
        assert len(np.unique(shot.reshape(-1, shot.shape[-1]), axis=0)) > 10
    finally:
        ctx.close()


def test_a_remount_that_lost_the_browsers_copy_asks_for_the_points_again(open_map):
    """A rerun that changes nothing sends a reference to the messages the browser holds; a browser without them (a
    page reload into the same session) asks for them whole and draws."""
    page = open_map(3)
    hide = page.get_by_text("Hide the map", exact=True)
    hide.click()
    page.wait_for_function("() => !document.querySelector('.cleaner-map')")
    page.evaluate("() => { window.__cleanerMapPoints.clear(); window.__cleanerMaps.clear(); }")  # forget both
    hide.click()
    wait_drawn(page, 1)
    assert page.locator(".cleaner-map").get_attribute("data-points") == str(N)
    assert page.evaluate("() => document.querySelector('.cleaner-map-gd').data.length") == N_CLASSES


MARK_PIXELS_JS = """(points) => {
    const c = document.querySelector('.cleaner-map-marks'), r = c.getBoundingClientRect();
    const sx = c.width / r.width, sy = c.height / r.height, g = c.getContext('2d');
    return points.map(([x, y]) => {
        // the most opaque pixel within 1 px of the mark's centre, where its two strokes cross
        const d = g.getImageData(Math.round((x - r.left) * sx) - 1, Math.round((y - r.top) * sy) - 1, 3, 3).data;
        let best = [0, 0, 0, 0];
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > best[3]) best = Array.from(d.slice(i, i + 4));
        return best;
    });
}"""


@pytest.mark.parametrize("dims", [3, 2])
def test_team_mode_marks_a_teammates_exclusions_apart_from_yours(chromium, harness_url, dims):
    """In team mode the map draws the rows a teammate excluded as a violet × in a ring and yours as a black ×, with a
    legend for both; the rows of each kind are those the harness says each of them excluded."""
    ctx = chromium.new_context(viewport=VIEWPORT)
    ctx.set_default_timeout(60_000)
    try:
        page = ctx.new_page()
        page.goto(f"{harness_url}/?n={N}&dims={dims}&classes={N_CLASSES}&team=1")
        wait_drawn(page, 1)
        page.wait_for_timeout(300)
        coords, codes = coords_and_codes(dims)
        x, y, info = page_projection(page, coords, dims)
        rng = np.random.default_rng(12)
        choose_tool(page, "Box")
        excluded_by = {}
        for who, cls, button in (
            ("teammate", 0, "A teammate excludes the selection"),
            ("me", 1, "Exclude the selection"),
        ):
            box = clean_shape(
                x, y, drawing_area(info), rng, make_box, accept=lambda inside, c=cls: (codes[inside] == c).all()
            )
            before = marks(page)
            drag_box(page, box)
            assert wait_event(page, before)["selected"] == rows_inside(box, x, y)
            before = marks(page)
            page.get_by_role("button", name=button).click()
            wait_event(page, before)
            excluded_by[who] = rows_inside(box, x, y)
        before = marks(page)
        page.get_by_role("button", name="Clear the selection").click()
        state = wait_event(page, before)
        assert state["team_excluded"] == excluded_by["teammate"]
        assert state["excluded"] == sorted(excluded_by["teammate"] + excluded_by["me"])
        assert counter(page, "team-excluded") == len(excluded_by["teammate"])
        assert page.locator(".cleaner-map-key").is_visible()
        assert "by a teammate" in page.locator(".cleaner-map-key").inner_text()
        # each kind's colour at the centre of its marks, where no mark of the other kind reaches
        theirs_all, mine_all = np.array(excluded_by["teammate"]), np.array(excluded_by["me"])
        gap = np.hypot(x[theirs_all, None] - x[None, mine_all], y[theirs_all, None] - y[None, mine_all])
        theirs = [int(r) for r in theirs_all[gap.min(axis=1) > 16]]
        mine = [int(r) for r in mine_all[gap.min(axis=0) > 16]]
        assert theirs and mine, "the two kinds of marks overlap everywhere"
        pixels = page.evaluate(MARK_PIXELS_JS, [[float(x[r]), float(y[r])] for r in theirs + mine])
        for row, (r, g, b, a) in zip(theirs + mine, pixels):
            assert a > 120, (row, r, g, b, a)
            if row in excluded_by["teammate"]:
                assert b > g + 100 and r > g + 40, (row, r, g, b)  # violet
            else:
                assert max(r, g, b) < 60, (row, r, g, b)  # black
        print(f"[e2e] team marks: {screenshot(page, f'map_team_marks_{dims}d')}")
    finally:
        ctx.close()
