"""Browser helpers for the end-to-end tests: what a user does on the page, and what they see.

Everything here drives the app through the mouse and keyboard (or a file input, like a user picking a file)
and reads the page (DOM text, the Plotly figures the user is looking at, screenshot pixels).
The map is cleaner's own plotly component in the page (no iframe); its helpers read plotly's figure and camera.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = Path(os.environ.get("CLEANER_E2E_CHROMIUM") or "/usr/bin/chromium")  # Debian's package
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}


def streamlit_command(script: str | Path, port: int, *extra_args: str) -> list[str]:
    """`streamlit run SCRIPT`, headless on 127.0.0.1:PORT and without usage statistics: every server the browser
    tests and the benchmarks start."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
        *extra_args,
    ]


ARTIFACTS = Path(os.environ.get("CLEANER_E2E_ARTIFACTS") or Path(__file__).resolve().parents[2] / "artifacts" / "e2e")


def screenshot(page: Page, name: str) -> Path:
    """Save what the user sees now (the app scrolls inside its own container, so this is the viewport)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def scroll_to_top(locator) -> None:
    """Scroll so the element is at the top of the view (what follows it, e.g. the gallery, is in the screenshot)."""
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")


# ---------------------------------------------------------------- page state


def app_error(page: Page) -> str | None:
    """The text of a Streamlit exception box, if the script crashed."""
    boxes = page.locator("[data-testid=stException]")
    return boxes.first.inner_text() if boxes.count() else None


def settle(page: Page, timeout: float = 120_000) -> None:
    """Wait until the script is not running (Streamlit's own test attribute on the app root)."""
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=stApp]');"
        " return a && a.getAttribute('data-test-script-state') !== 'running'; }",
        timeout=timeout,
    )
    err = app_error(page)
    assert err is None, f"the app shows an exception:\n{err}"


def open_app(page: Page, url: str, timeout: float = 180_000) -> None:
    """Load the page and wait until the dataset header (or an app error) shows."""
    page.goto(url)
    page.wait_for_selector(f"{HEADER}, [data-testid=stException]", timeout=timeout)
    settle(page, timeout)


HEADER = "[data-testid=stText]:has-text('-D embeddings')"


def header(page: Page) -> str:
    """The one-line dataset header: name · images · dims · classes · decisions."""
    return page.locator(HEADER).first.inner_text().strip()


def expect_header(page: Page, part: str, timeout: float = 60_000) -> None:
    """Wait until the header says `part` (e.g. "1,797 images" or "· 2 excluded ·")."""
    expect(page.locator(HEADER).first).to_contain_text(part, timeout=timeout)


def sidebar(page: Page):
    return page.get_by_test_id("stSidebar")


def choose_data_source(page: Page, name: str) -> None:
    sidebar(page).locator("[data-testid=stRadio] label").filter(has_text=re.compile(rf"^{re.escape(name)}$")).click()


def file_input(page: Page, label_start: str):
    box = page.locator("[data-testid=stFileUploader]").filter(has_text=label_start)
    return box.locator("input[type=file]")


def choose_option(page: Page, combobox_label: str, option: str, attempts: int = 4) -> None:
    """Pick an option of an st.selectbox (a react-aria combobox) by typing it and pressing Enter, as a keyboard
    user does. (Clicking the option in the popover is fragile: the popover closes when the page scrolls.)"""
    combo = page.get_by_role("combobox", name=combobox_label, exact=True)
    if combo.input_value() == option:
        return
    for _ in range(attempts):
        try:
            combo.scroll_into_view_if_needed()
            combo.click()
            combo.fill(option)
            page.get_by_role("option", name=option, exact=True).wait_for(timeout=10_000)
            page.keyboard.press("Enter")
            expect(combo).to_have_value(option, timeout=5_000)
            expect(combo).to_have_attribute("aria-expanded", "false", timeout=5_000)
            return
        except (AssertionError, PlaywrightTimeoutError):
            page.keyboard.press("Escape")  # a rerun redrew the box while we typed: try again
            settle(page)
    raise AssertionError(f"could not choose {option!r} in the {combobox_label!r} box")


def select_class(page: Page, name: str, n_expected: int) -> None:
    choose_option(page, "Class", name)
    page.get_by_role("button", name="Select class", exact=True).click()
    heading = f"Selected: {n_expected:,} image{'' if n_expected == 1 else 's'}"
    expect(page.get_by_text(heading, exact=True)).to_be_visible(timeout=60_000)
    expect(exclude_boxes(page)).to_have_count(min(24, n_expected), timeout=60_000)
    settle(page)


def selected_count(page: Page) -> int | None:
    text = page.get_by_text(re.compile(r"^Selected: [\d,]+ images?$"))
    if not text.count():
        return None
    return int(re.sub(r"\D", "", text.first.inner_text()))


# ---------------------------------------------------------------- gallery


def exclude_boxes(page: Page):
    return page.locator("[data-testid=stCheckbox]").filter(has=page.get_by_role("checkbox", name="Exclude", exact=True))


def gallery_items(page: Page) -> list[dict]:
    """Each gallery tile in page order: its label, file name, and whether its Exclude box is ticked."""
    return page.evaluate(
        """() => {
            const out = []; let last = null;
            for (const el of document.querySelectorAll('[data-testid=stText], [data-testid=stCheckbox]')) {
                if (el.getAttribute('data-testid') === 'stText') {
                    const t = el.innerText;
                    if (t.startsWith('label: ')) last = t;
                    continue;
                }
                const input = el.querySelector('input[type=checkbox]');
                if (!input || input.getAttribute('aria-label') !== 'Exclude' || last === null) continue;
                const [labelLine, file] = last.split('\\n');
                out.push({label: labelLine.slice('label: '.length), file: (file || '').trim(), checked: input.checked});
                last = null;
            }
            return out;
        }"""
    )


def gallery_all_pages(page: Page) -> list[dict]:
    """The tiles of every gallery page, turning the pages with the page box as a user does."""
    box = page.get_by_role("spinbutton", name=re.compile(r"^Page \(of \d+\)"))
    n_pages = int(re.search(r"of (\d+)", box.get_attribute("aria-label") or "").group(1))
    items = gallery_items(page)
    for number in range(2, n_pages + 1):
        before = items[0]["file"]
        box.scroll_into_view_if_needed()
        box.fill(str(number))
        box.press("Enter")
        page.wait_for_function(
            """before => { const t = Array.from(document.querySelectorAll('[data-testid=stText]'))
                .find(e => e.innerText.startsWith('label: ')); return t && !t.innerText.endsWith(before); }""",
            arg=before,
        )
        settle(page)
        page_items = gallery_items(page)
        items += page_items
    return items


def tick(page: Page, file_name: str) -> None:
    """Tick (or untick) the Exclude box of the tile showing file_name."""
    items = gallery_items(page)
    index = next(i for i, it in enumerate(items) if it["file"] == file_name)
    label = exclude_boxes(page).nth(index).locator("label")
    label.scroll_into_view_if_needed()
    label.click()


def gallery_images(page: Page) -> list[str]:
    return page.locator("[data-testid=stImage] img").evaluate_all("els => els.map(e => e.src)")


def image_bytes(page: Page, src: str) -> bytes:
    """The bytes behind an <img> src: inline data URLs (how the app sends thumbnails) or a fetched URL."""
    if src.startswith("data:"):
        import base64

        return base64.b64decode(src.split(",", 1)[1])
    return page.request.get(src).body()


def similar_images(shown: bytes, original: Path) -> float:
    """Correlation of two images at 8x8 grey: the gallery thumbnail against the file it claims to show."""
    a = np.asarray(Image.open(io.BytesIO(shown)).convert("L").resize((8, 8), Image.BOX), dtype=float).ravel()
    b = np.asarray(Image.open(original).convert("L").resize((8, 8), Image.BOX), dtype=float).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


# ---------------------------------------------------------------- the map (cleaner's plotly component, in the page)
# The map is a frameless component: `.cleaner-map` holds the toolbar and `.cleaner-map-gd`, plotly's graph div, in
# the main document. Its `data-*` counters say when plotly drew the points (`draws`) and when the marks (selection,
# × for excluded rows) were drawn (`marks`). Expected rows are always computed here from the figure's coordinates
# and the camera read off the page, never taken from the app's answer.

MAP = ".cleaner-map"
MAP_GD = ".cleaner-map-gd"
MARGIN_PX = 2.0  # no point this close to a drawn shape's edge: which side it is on is then unambiguous

_MAP_READY_JS = """([n, dims]) => {
    if (document.querySelector('[data-testid=stException]')) return true;
    if (Array.from(document.querySelectorAll('[data-testid=stCaption], [data-testid=stCaptionContainer]')).some(
            e => ['PCA preview', 'partial UMAP map', 'its 2D version is computed'].some(t => e.innerText.includes(t))))
        return false;  // a layout's arrival reruns the whole page: wait until none is on its way
    const maps = document.querySelectorAll('.cleaner-map');
    if (maps.length !== 1) return false;
    const m = maps[0], gd = m.querySelector('.cleaner-map-gd');
    if (Number(m.dataset.draws || 0) < 1 || Number(m.dataset.marks || 0) < 1) return false;
    if (Number(m.dataset.points) !== n || Number(m.dataset.dims) !== dims) return false;
    return !!(gd && gd.data && gd._fullLayout && gd.data.reduce((s, t) => s + t.x.length, 0) === n);
}"""


def wait_map(page: Page, n_points: int, dims: int = 3, timeout: float = 300_000) -> None:
    """Wait until the map (not a PCA preview) draws n_points in `dims` dimensions with its marks; the script idle."""
    page.wait_for_function(_MAP_READY_JS, arg=[n_points, dims], timeout=timeout)
    settle(page, timeout)
    page.wait_for_function(_MAP_READY_JS, arg=[n_points, dims], timeout=timeout)


def map_counter(page: Page, name: str) -> int:
    """The map's counters: `draws`, `marks`, `events`, `selected`, `excluded`, `points`, `dims`."""
    return int(page.locator(MAP).get_attribute(f"data-{name}") or 0)


def map_traces(page: Page) -> list[tuple[str, int]]:
    """(name, number of points) of each trace the figure draws: one per class."""
    return [
        tuple(t)
        for t in page.evaluate(f"() => document.querySelector('{MAP_GD}').data.map(d => [d.name, (d.x || []).length])")
    ]


def map_pixels(page: Page) -> np.ndarray:
    """The map's plot as the user sees it (a screenshot of the plot area, toolbar left out)."""
    for attempt in range(3):
        try:
            png = page.locator(f"{MAP} .cleaner-map-plot").screenshot()
            break
        except PlaywrightError as exc:
            # A rerun that arrives with the last layout can replace the element between finding and shooting it.
            if "not attached" not in str(exc) or attempt == 2:
                raise
            settle(page)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def not_blank(pixels: np.ndarray) -> dict:
    """Numbers that tell a drawn chart from an empty one."""
    quantised = (pixels // 32).reshape(-1, 3)
    colours = {tuple(c) for c in quantised[::7]}
    non_white = float((pixels.min(axis=2) < 235).mean())
    saturated = int(((pixels.max(axis=2) - pixels.min(axis=2)) > 80).sum())
    return {"distinct_colours": len(colours), "non_white_share": non_white, "saturated_pixels": saturated}


def map_coords(page: Page, labels: np.ndarray) -> np.ndarray:
    """Each row's coordinates as the figure holds them: trace `name` draws the rows labelled `name`, in row order."""
    traces = page.evaluate(f"""() => document.querySelector('{MAP_GD}').data.map(t =>
        ({{name: t.name, x: Array.from(t.x), y: Array.from(t.y), z: t.z ? Array.from(t.z) : null}}))""")
    dims = 3 if traces and traces[0]["z"] is not None else 2
    coords = np.full((len(labels), dims), np.nan)
    for t in traces:
        rows = np.flatnonzero(np.asarray(labels) == t["name"])
        assert len(rows) == len(t["x"]), f"trace {t['name']!r} draws {len(t['x'])} points, the data has {len(rows)}"
        coords[rows, 0], coords[rows, 1] = t["x"], t["y"]
        if dims == 3:
            coords[rows, 2] = t["z"]
    assert not np.isnan(coords).any(), "rows the figure does not draw"
    return coords


def map_projection(page: Page, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(page x, page y, in front of the camera, drawing area) of every point, through the view the page shows now
    (plotly's scene matrices in 3D, the axis ranges in 2D)."""
    if coords.shape[1] == 3:
        cam = page.evaluate(f"""() => {{
            const s = document.querySelector('{MAP_GD}')._fullLayout.scene._scene, p = s.glplot.cameraParams;
            const r = s.glplot.canvas.getBoundingClientRect();
            return {{model: Array.from(p.model), view: Array.from(p.view), projection: Array.from(p.projection),
                     scale: Array.from(s.dataScale), left: r.left, top: r.top, width: r.width, height: r.height}}; }}""")
        m = (
            np.array(cam["projection"]).reshape(4, 4).T
            @ np.array(cam["view"]).reshape(4, 4).T
            @ np.array(cam["model"]).reshape(4, 4).T
        )
        hom = np.c_[coords.astype(np.float64) * np.array(cam["scale"]), np.ones(len(coords))] @ m.T
        front = hom[:, 3] > 1e-12
        with np.errstate(divide="ignore", invalid="ignore"):
            x = cam["left"] + (0.5 + 0.5 * hom[:, 0] / hom[:, 3]) * cam["width"]
            y = cam["top"] + (0.5 - 0.5 * hom[:, 1] / hom[:, 3]) * cam["height"]
        return x, y, front, cam
    ax = page.evaluate(f"""() => {{ const gd = document.querySelector('{MAP_GD}'), r = gd.getBoundingClientRect();
        const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        return {{left: r.left + xa._offset, top: r.top + ya._offset, width: xa._length, height: ya._length,
                 xr: xa.range.map(Number), yr: ya.range.map(Number)}}; }}""")
    c = coords.astype(np.float64)
    x = ax["left"] + (c[:, 0] - ax["xr"][0]) / (ax["xr"][1] - ax["xr"][0]) * ax["width"]
    y = ax["top"] + (1 - (c[:, 1] - ax["yr"][0]) / (ax["yr"][1] - ax["yr"][0])) * ax["height"]
    return x, y, np.ones(len(c), dtype=bool), ax


def legend_box(page: Page) -> dict | None:
    return page.locator(f"{MAP} .legend").first.bounding_box() if page.locator(f"{MAP} .legend").count() else None


def shape_area(page: Page, info: dict) -> tuple[float, float, float, float]:
    """(left, top, width, height) where a shape may be drawn: the drawing area inside the viewport, below the
    modebar and left of the legend (the overlay covers them, but a user draws over the points)."""
    vw, vh = page.viewport_size["width"], page.viewport_size["height"]
    left, top = max(info["left"], 0), max(info["top"] + 30, 0)
    right, bottom = min(info["left"] + info["width"], vw), min(info["top"] + info["height"], vh)
    legend = legend_box(page)
    if legend:
        right = min(right, legend["x"] - 4)
    return left, top, right - left, bottom - top


def make_box(cx: float, cy: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    w, h = rng.uniform(20, 160, size=2)
    x0, y0 = int(round(cx - w * rng.uniform(0.2, 0.8))), int(round(cy - h * rng.uniform(0.2, 0.8)))
    return [(x0, y0), (x0 + int(w), y0), (x0 + int(w), y0 + int(h)), (x0, y0 + int(h))]


def make_star(cx: float, cy: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A concave lasso: ten vertices, alternately far out and half way in."""
    r, turn = rng.uniform(30, 130), rng.uniform(0, math.pi)
    return [
        (
            int(round(cx + r * (1 if k % 2 == 0 else 0.45) * math.cos(turn + k * math.pi / 5))),
            int(round(cy + r * (1 if k % 2 == 0 else 0.45) * math.sin(turn + k * math.pi / 5))),
        )
        for k in range(10)
    ]


def clean_shape(
    x: np.ndarray,
    y: np.ndarray,
    area,
    rng: np.random.Generator,
    make,
    lo: int = 3,
    hi: int = 400,
    prefer=lambda inside: True,
    tries: int = 4000,
) -> list[tuple[int, int]]:
    """A shape (integer page pixels) inside `area` holding lo..hi points, none within MARGIN_PX of its edge; one
    that `prefer` likes if any is found (e.g. one that cuts a class rather than holding whole ones)."""
    left, top, width, height = area
    fallback = None
    ok = np.isfinite(x) & np.isfinite(y)
    candidates = np.flatnonzero(ok & (x > left) & (x < left + width) & (y > top) & (y < top + height))
    assert len(candidates), "no point inside the area to draw a shape around"
    for _ in range(tries):
        i = candidates[rng.integers(len(candidates))]
        poly = make(float(x[i]), float(y[i]), rng)
        if not all(left + 3 < px < left + width - 3 and top + 3 < py < top + height - 3 for px, py in poly):
            continue
        inside = inside_polygon(poly, x, y) & ok
        if not lo <= inside.sum() <= hi:
            continue
        if distance_to_polygon(poly, x[ok], y[ok]).min() < MARGIN_PX:
            continue
        if prefer(inside):
            return poly
        fallback = fallback or poly
    assert fallback is not None, "found no clean shape over the map"
    return fallback


def choose_tool(page: Page, name: str) -> None:
    """Move, Box or Lasso: the map's own toolbar."""
    button = page.locator(f"{MAP} .cleaner-map-toolbar button", has_text=name)
    button.click()
    expect(button).to_have_attribute("aria-pressed", "true")


def drag_box(page: Page, box: list[tuple[int, int]]) -> None:
    (x0, y0), (x1, y1) = box[0], box[2]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)
    page.mouse.up()


def wait_marks_after(page: Page, before: int, timeout: float = 60_000) -> None:
    """Wait until the map drew new marks (the event went through Python and the new selection came back)."""
    page.wait_for_function(
        "n => { const m = document.querySelector('.cleaner-map'); return m && Number(m.dataset.marks || 0) > n; }",
        arg=before,
        timeout=timeout,
    )
    settle(page)


_MARKS_JS = """() => {
    const root = document.querySelector('.cleaner-map');
    for (const [key, entry] of (window.__cleanerMaps || new Map()))
        if (entry.state && entry.state.root === root)
            return {key, selected: Array.from(entry.state.marks.selected), excluded: Array.from(entry.state.marks.excluded),
                    showExcluded: entry.state.showExcluded};
    return null;
}"""


def map_marks(page: Page) -> dict:
    """What the map draws over the points now: the highlighted (selected) rows and the rows drawn as ×."""
    marks = page.evaluate(_MARKS_JS)
    assert marks is not None, "no marks element drawn on the map"
    return marks


def isolated_points(x: np.ndarray, y: np.ndarray, front: np.ndarray, area, k: int = 20) -> list[int]:
    """The k rows drawn farthest from any other point on screen (a click there lands on that point), farthest first."""
    left, top, width, height = area
    ok = front & np.isfinite(x) & (x > left + 10) & (x < left + width - 10) & (y > top + 10) & (y < top + height - 10)
    rows = np.flatnonzero(ok)
    assert len(rows), "no point in the drawing area to click"
    d = np.hypot(x[rows, None] - x[None, :], y[rows, None] - y[None, :])
    d[np.arange(len(rows)), rows] = np.inf
    d[:, ~np.isfinite(x)] = np.inf
    gap = d.min(axis=1)
    return rows[np.argsort(-gap)][:k].tolist()


_PICKED_JS = """() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => {
    const s = document.querySelector('.cleaner-map-gd')._fullLayout.scene._scene.glplot.selection;
    if (!s || !s.object || !s.object._trace) return resolve(null);
    const t = s.object._trace.data;
    resolve({distance: s.distance, curve: t.index, point: s.index, name: t.name});
})))"""


def hover_pick(page: Page, x: float, y: float) -> dict | None:
    """Hover at (x, y) on the 3D map; the point gl-plot3d picks there (what a click reports), or None."""
    page.mouse.move(x + 1, y + 1)
    page.mouse.move(x, y)
    return page.evaluate(_PICKED_JS)


def click_point(page: Page, x: float, y: float) -> None:
    """Hover, then press and hold across a render (gl-plot3d drops a click that is too quick), release."""
    page.mouse.move(x + 1, y + 1)
    page.mouse.move(x, y)
    page.wait_for_timeout(200)
    page.mouse.down()
    page.wait_for_timeout(300)
    page.mouse.up()


def choose_map_view(page: Page, view: str) -> None:
    """The "Map" segmented control above the map: "3D" or "2D"."""
    page.locator(".st-key-map_view button", has_text=re.compile(rf"^{view}$")).click()


def open_review(page: Page, view: str) -> None:
    """The review pane's radio: "Selected images", "Review queue" or "Class confusion"."""
    page.locator(".st-key-review_view label").filter(has_text=re.compile(rf"^{re.escape(view)}$")).click()
    settle(page)


# ---------------------------------------------------------------- review queue


def queue_slots(page: Page) -> dict[int, int]:
    """Slot number → the dataset row of the card in that slot (read from its buttons' keys)."""
    found = page.evaluate("""() => Array.from(document.querySelectorAll('[class*="st-key-queue_slot_"]')).map(e => {
        const slot = Array.from(e.classList).find(c => c.startsWith('st-key-queue_slot_'));
        const btn = e.querySelector('[class*="st-key-q_excl_"]');
        const key = btn ? Array.from(btn.classList).find(c => c.startsWith('st-key-q_excl_')) : null;
        return [slot, key];
    })""")
    out = {}
    for slot, key in found:
        assert key, f"{slot} holds no Exclude button"
        out[int(slot.rsplit("_", 1)[1])] = int(key.rsplit("_", 1)[1])
    return out


def queue_left(page: Page) -> int:
    text = page.get_by_text(re.compile(r"flagged samples left to review")).first.inner_text()
    return int(re.search(r"([\d,]+) flagged samples left", text).group(1).replace(",", ""))


def queue_card(page: Page, row: int):
    """The bordered container of the queue card showing `row`."""
    return page.locator("[class*='st-key-queue_slot_']").filter(has=page.locator(f".st-key-q_excl_{row}"))


def queue_button(page: Page, row: int, name: str):
    key = {"Exclude": "q_excl", "Keep": "q_keep", "Relabel": "q_relabel"}[name]
    return page.locator(f".st-key-{key}_{row} button")


# ---------------------------------------------------------------- downloads (sidebar)


def download(page: Page, name_start: str) -> tuple[str, bytes]:
    """Click a download button (the decision files are in the review pane, the others in the sidebar);
    (suggested file name, bytes)."""
    button = page.get_by_role("button", name=re.compile(rf"^{re.escape(name_start)}"))
    button.scroll_into_view_if_needed()
    with page.expect_download() as info:
        button.click()
    got = info.value
    assert got.failure() is None, got.failure()
    return got.suggested_filename, Path(got.path()).read_bytes()


def inside_polygon(poly: list[tuple[float, float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised."""
    inside = np.zeros(len(x), dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def distance_to_polygon(poly: list[tuple[float, float]], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    best = np.full(len(x), np.inf)
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        dx, dy = x2 - x1, y2 - y1
        t = np.clip(((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy), 0, 1)
        best = np.minimum(best, np.hypot(x - (x1 + t * dx), y - (y1 + t * dy)))
    return best


def drag_lasso(page: Page, poly: list[tuple[int, int]]) -> None:
    """Press, move through the vertices and back to the start, release: the polygon plotly's lasso records."""
    page.mouse.move(*poly[0])
    page.mouse.down()
    for vx, vy in poly[1:] + poly[:1]:
        page.mouse.move(vx, vy)
    page.mouse.up()
