"""Browser helpers for the end-to-end tests: what a user does on the page, and what they see.

Everything here drives the app through the mouse and keyboard (or a file input, like a user picking a file)
and reads the page (DOM text, the Plotly figures the user is looking at, screenshot pixels).
See /work/shared/notes/selection-and-browser.md for why the 3D click works the way it does.
"""
from __future__ import annotations

import io
import math
import os
import re
import time
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import Frame, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = Path(os.environ.get("CLEANER_E2E_CHROMIUM") or "/usr/bin/chromium")  # Debian's package
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
MAP3D_IFRAME = "iframe[title='streamlit_plotly_events.plotly_events']"
MAP2D_PLOT = "[data-testid=stPlotlyChart] .js-plotly-plot"
EXCLUDED_TRACE = "excluded"

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
            arg=before)
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


# ---------------------------------------------------------------- 3D map (streamlit-plotly-events iframe)

def map3d_iframe(page: Page):
    """The 3D map's iframe the user sees (a replaced one can linger hidden for a moment after a dataset change)."""
    return page.locator(MAP3D_IFRAME).filter(visible=True).last


def map3d_frame(page: Page, timeout: float = 120_000) -> Frame:
    iframe = map3d_iframe(page)
    iframe.wait_for(state="visible", timeout=timeout)
    frame = iframe.element_handle().content_frame()
    assert frame is not None
    frame.wait_for_function(
        "() => { const gd = document.querySelector('.js-plotly-plot');"
        " return gd && gd._fullLayout && gd._fullLayout.scene && gd._fullLayout.scene._scene"
        " && gd._fullLayout.scene._scene.glplot && gd.data; }",
        timeout=timeout,
    )
    return frame


def map3d_traces(frame: Frame) -> list[tuple[str, int]]:
    return [tuple(t) for t in frame.evaluate(
        "() => document.querySelector('.js-plotly-plot').data.map(d => [d.name, (d.x || []).length])")]


def map3d_points(traces: list[tuple[str, int]]) -> int:
    return sum(n for name, n in traces if not name.startswith(EXCLUDED_TRACE))


def wait_map3d(page: Page, n_points: int, timeout: float = 180.0) -> Frame:
    """Wait until the 3D map draws n_points (the iframe is replaced when the dataset changes)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            frame = map3d_frame(page, timeout=max(1_000, (deadline - time.monotonic()) * 1000))
            seen = map3d_traces(frame)
            if map3d_points(seen) == n_points:
                return frame
        except Exception as exc:  # the frame was replaced while reading it: look again
            seen = f"{type(exc).__name__}: {exc}"
        err = app_error(page)
        assert err is None, f"the app shows an exception:\n{err}"
        time.sleep(0.5)
    raise AssertionError(f"the 3D map never drew {n_points} points; last seen: {seen}")


def canvas_pixels(page: Page) -> np.ndarray:
    """The 3D map as the user sees it (screenshot of its iframe)."""
    png = map3d_iframe(page).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def not_blank(pixels: np.ndarray) -> dict:
    """Numbers that tell a drawn chart from an empty one."""
    quantised = (pixels // 32).reshape(-1, 3)
    colours = {tuple(c) for c in quantised[::7]}
    non_white = float((pixels.min(axis=2) < 235).mean())
    saturated = int(((pixels.max(axis=2) - pixels.min(axis=2)) > 80).sum())
    return {"distinct_colours": len(colours), "non_white_share": non_white, "saturated_pixels": saturated}


_SELECTION_JS = """() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => {
    const s = document.querySelector('.js-plotly-plot')._fullLayout.scene._scene.glplot.selection;
    if (!s || !s.object || !s.object._trace) return resolve(null);
    const t = s.object._trace.data;
    resolve({distance: s.distance, curve: t.index, point: s.index, name: t.name});
})))"""


def click_3d_point(page: Page, frame: Frame, rng: np.random.Generator, attempts: int = 60) -> dict:
    """Click a point of the 3D map the way a user must: hover until plotly picks a point within 5 px, hold the button.

    Candidate positions are coloured pixels of the chart (a screenshot), not a blind grid; the picked point
    (trace and index within the trace) is read from gl-plot3d's own selection, which is what a click reports.
    """
    box = map3d_iframe(page).bounding_box()
    plot_width = frame.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout._size.w")
    pixels = canvas_pixels(page)
    sat = pixels.max(axis=2) - pixels.min(axis=2)
    ys, xs = np.nonzero(sat > 80)
    keep = (xs < plot_width - 10) & (xs > 10) & (ys > 10) & (ys < pixels.shape[0] - 10)  # not the legend
    ys, xs = ys[keep], xs[keep]
    assert len(xs), "no coloured pixel in the 3D map to click"
    for i in rng.permutation(len(xs))[:attempts]:
        x, y = float(box["x"] + xs[i]), float(box["y"] + ys[i])
        page.mouse.move(x, y)
        sel = frame.evaluate(_SELECTION_JS)
        if sel and sel["distance"] < 5 and not sel["name"].startswith(EXCLUDED_TRACE):
            page.mouse.down()
            page.wait_for_timeout(300)  # held across a render, or gl-plot3d drops the click
            page.mouse.up()
            return {**sel, "x": x, "y": y}
    raise AssertionError(f"no point within 5 px after hovering {attempts} coloured pixels")


def hover_text(frame: Frame, curve: int, point: int) -> str:
    return frame.evaluate("([c, p]) => { const d = document.querySelector('.js-plotly-plot').data[c];"
                          " return Array.isArray(d.hovertext) ? d.hovertext[p] : d.hovertext; }", [curve, point])


# ---------------------------------------------------------------- 2D map (st.plotly_chart in the main document)

def start_counting_3d_frame_messages(page: Page) -> None:
    """Count the 3D component's frame-height messages from now on (passed through, only counted)."""
    frame = map3d_frame(page)
    frame.evaluate(
        """() => {
            const host = window.parent;
            host.__e2eHeightMessages = 0;
            if (!host.__e2eCounting) {
                host.__e2eCounting = true;
                const post = host.postMessage;
                host.__e2eOriginalPost = post;
                host.postMessage = function (message, ...rest) {
                    if (message && message.type === 'streamlit:setFrameHeight') host.__e2eHeightMessages += 1;
                    return post.call(host, message, ...rest);
                };
            }
        }"""
    )


def stop_counting_3d_frame_messages(page: Page) -> None:
    """Remove the counter. It lives in the 3D iframe's realm: once that iframe is gone, messages passed through
    it would come from a dead window, and a newly mounted component could never register with the page."""
    page.evaluate("() => { if (window.__e2eCounting) { window.postMessage = window.__e2eOriginalPost;"
                  " window.__e2eCounting = false; } }")


def count_3d_frame_messages(page: Page, seconds: float) -> int:
    """Frame-height messages in the next `seconds` (0 if the app no longer renders the hidden 3D map)."""
    page.evaluate("() => { window.__e2eHeightMessages = 0; }")
    page.wait_for_timeout(seconds * 1000)
    return page.evaluate("() => window.__e2eHeightMessages || 0")


def choose_map(page: Page, name_start: str) -> None:
    """Click the map view radio ("3D map ..." or "2D map ...") above the map."""
    page.locator("[data-testid=stRadio] label").filter(
        has_text=re.compile(rf"^{re.escape(name_start)}")).click()


def open_2d_tab(page: Page) -> None:
    choose_map(page, "2D map")
    page.wait_for_function(
        f"""() => {{ const gd = document.querySelector('{MAP2D_PLOT}');
            return gd && gd._fullData && gd._fullLayout.xaxis._length > 0 && gd.getBoundingClientRect().width > 0; }}""",
        timeout=60_000,
    )
    page.locator(MAP2D_PLOT).scroll_into_view_if_needed()


def points_2d(page: Page) -> np.ndarray:
    """[page x, page y, dataset row] of every visible point of the 2D map, from the figure the page drew."""
    pts = page.evaluate(
        f"""() => {{
            const gd = document.querySelector('{MAP2D_PLOT}');
            const r = gd.getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const out = [];
            gd._fullData.forEach(t => {{
                if (t.visible !== true) return;
                const n = t._length ?? t.x.length;
                for (let j = 0; j < n; j++)
                    out.push([r.left + xa._offset + xa.c2p(t.x[j]), r.top + ya._offset + ya.c2p(t.y[j]), Number(t.customdata[j])]);
            }});
            return out;
        }}"""
    )
    return np.asarray(pts, dtype=float).reshape(-1, 3)


def plot_area_2d(page: Page) -> tuple[float, float, float, float]:
    """(left, top, width, height) of the 2D plot area, clipped to the viewport: the mouse only acts there."""
    return tuple(page.evaluate(
        f"""() => {{ const gd = document.querySelector('{MAP2D_PLOT}'); const r = gd.getBoundingClientRect();
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            const left = Math.max(0, r.left + xa._offset), top = Math.max(0, r.top + ya._offset);
            const right = Math.min(window.innerWidth, r.left + xa._offset + xa._length);
            const bottom = Math.min(window.innerHeight, r.top + ya._offset + ya._length);
            return [left, top, right - left, bottom - top]; }}"""
    ))


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


def lasso_polygon(points: np.ndarray, area: tuple[float, float, float, float], rng: np.random.Generator,
                  min_inside: int = 15, max_inside: int = 300, margin: float = 1.5,
                  accept=lambda rows: True) -> list[tuple[int, int]]:
    """A hexagon (integer page pixels) inside the plot area holding a moderate number of points, none of them
    within `margin` px of its edge (so which points it holds is unambiguous), whose rows `accept` likes."""
    left, top, width, height = area
    for _ in range(2000):
        cx, cy = points[rng.integers(len(points)), :2]
        radius = float(rng.uniform(25, 90))
        poly = [(int(round(cx + radius * math.cos(a))), int(round(cy + radius * math.sin(a))))
                for a in np.linspace(0, 2 * math.pi, 7)[:-1] + rng.uniform(0, math.pi)]
        if not all(left + 2 < px < left + width - 2 and top + 2 < py < top + height - 2 for px, py in poly):
            continue
        inside = inside_polygon(poly, points[:, 0], points[:, 1])
        if not (min_inside <= inside.sum() <= max_inside):
            continue
        if distance_to_polygon(poly, points[:, 0], points[:, 1]).min() < margin:
            continue
        if not accept(set(points[inside, 2].astype(int).tolist())):
            continue
        return poly
    raise AssertionError("found no clean lasso polygon on the 2D map")


def drag_lasso(page: Page, poly: list[tuple[int, int]]) -> None:
    """Press, move through the vertices and back to the start, release: the polygon plotly's lasso records."""
    page.mouse.move(*poly[0])
    page.mouse.down()
    for vx, vy in poly[1:] + poly[:1]:
        page.mouse.move(vx, vy)
    page.mouse.up()
