"""The map component against today's 3D map, in one run with a fresh headless Chromium.

    python bench/map_draw.py --n 100000 --json artifacts/map_draw.json

Figures (synthetic clustered 3D coordinates, 10 classes; the harness page tests/e2e/map_harness_app.py):
- map_draw_s: the websocket message carrying the map's data arrives in the browser → every point drawn
  (the component's own "drawn" mark after Plotly.react and two animation frames).
- selection_s: a box released over the 3D map → the harness shows the selected rows (the event goes to Python,
  the rows are computed there, the script reruns and prints them).
- old_map_draw_s: the same for bench/plotly_events_map.map_3d through streamlit-plotly-events (iframe, plotly.js 1.58):
  the figure's message arrives → its iframe shows a scene holding every point.
- selection_highlighted_s: the same box released → the selection drawn highlighted on the map.
- bytes_per_point: the bytes of the websocket messages carrying the new map's points (16-bit fixed-point
  coordinates) and colours (8-bit class codes), per point (and the encoded payload for comparison); rerun_bytes_*: all websocket bytes the browser receives for a rerun that changes
  nothing on the map, and for the rerun after a selection (only the marks and the harness's text are new:
  plotly.js and the points go as references to the browser's copies).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.helpers import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, streamlit_command  # noqa: E402 - the browser tests' settings

N_CLASSES = 10

# Counts every websocket message the page receives (size, arrival time); installed before Streamlit connects.
WS_HOOK = """(() => {
    window.__wsLog = [];
    const Native = window.WebSocket;
    window.WebSocket = function (...args) {
        const ws = new Native(...args);
        ws.addEventListener('message', (e) => {
            const d = e.data;
            const size = d.byteLength !== undefined ? d.byteLength : (d.size !== undefined ? d.size : d.length);
            window.__wsLog.push([Date.now(), size]);
        });
        return ws;
    };
    window.WebSocket.prototype = Native.prototype;
    Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();"""


def start_server(port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        streamlit_command(REPO / "tests/e2e/map_harness_app.py", port, "--server.maxMessageSize", "1000"),
        cwd=tempfile.mkdtemp(prefix="cleaner-map-bench-"),
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                if resp.read().decode().strip() == "ok":
                    return proc
        except OSError:
            time.sleep(0.3)
        if proc.poll() is not None:
            break
    raise SystemExit(f"the harness server did not start; see {log}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ws_log(page) -> list[tuple[int, int]]:
    return [tuple(x) for x in page.evaluate("window.__wsLog")]


def wait_script_idle(page) -> None:
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=stApp]');"
        " return a && a.getAttribute('data-test-script-state') !== 'running'; }",
        timeout=600_000,
    )


def bench_new(browser, url: str, n: int, message_bytes: dict[str, int]) -> dict:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    page.add_init_script(WS_HOOK)
    page.goto(f"{url}/?n={n}&dims=3&classes={N_CLASSES}")
    page.wait_for_function(
        "() => window.__cleanerMapDrawn && window.__cleanerMapDrawn.n > 0", timeout=600_000, polling=50
    )
    drawn = page.evaluate("window.__cleanerMapDrawn")
    wait_script_idle(page)
    log = ws_log(page)
    # the map's messages: the points (16-bit coordinates) and the colours (class codes, scores), each the message
    # whose size is nearest its encoded size (plotly.js's message is ~4.8 MB)
    msgs = {part: min(log, key=lambda m, b=size: abs(m[1] - b)) for part, size in message_bytes.items()}
    first = min(m[0] for m in msgs.values())
    first_run_bytes = sum(size for _, size in log)
    out = {
        "map_draw_s": (drawn["at"] - first) / 1000,
        "map_render_in_js_s": drawn["ms"] / 1000,
        "bytes_per_point": sum(m[1] for m in msgs.values()) / n,
        "map_message_bytes": {part: m[1] for part, m in msgs.items()},
        "first_load_ws_bytes": first_run_bytes,
    }

    # a rerun that changes nothing on the map (excluding an empty selection)
    page.wait_for_timeout(500)
    mark = len(ws_log(page))
    page.get_by_role("button", name="Exclude the selection").click()
    page.wait_for_timeout(300)
    wait_script_idle(page)
    page.wait_for_timeout(500)
    out["rerun_bytes_unchanged"] = sum(size for _, size in ws_log(page)[mark:])

    # a box over the middle of the scene
    rect = page.evaluate(
        "() => { const r = document.querySelector('.cleaner-map-gd')._fullLayout.scene._scene"
        ".glplot.canvas.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }"
    )
    left, top, width, height = rect
    draws = int(page.locator(".cleaner-map").get_attribute("data-draws"))
    marks = int(page.locator(".cleaner-map").get_attribute("data-marks"))
    page.locator(".cleaner-map-toolbar button", has_text="Box").click()
    mark = len(ws_log(page))
    x0, y0, x1, y1 = left + width * 0.35, top + height * 0.35, left + width * 0.6, top + height * 0.6
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=4)
    page.mouse.up()
    shown_at = page.wait_for_function(
        """() => { const t = Array.from(document.querySelectorAll('[data-testid=stText]'))
               .find(e => e.innerText.startsWith('harness-state'));
               return t && t.innerText.includes('"kind":"box"') ? Date.now() : null; }""",
        timeout=600_000,
        polling="raf",
    ).json_value()
    released = page.evaluate("window.__cleanerMapReleasedAt")
    out["selection_s"] = (shown_at - released) / 1000
    out["selected_rows"] = int(
        page.locator("[data-testid=stText]", has_text="selected: ").first.inner_text().split(":")[1]
    )
    page.wait_for_function(
        "n => Number(document.querySelector('.cleaner-map').dataset.marks) > n", arg=marks, timeout=600_000
    )
    out["selection_highlighted_s"] = (page.evaluate("window.__cleanerMapMarkedAt") - released) / 1000
    wait_script_idle(page)
    page.wait_for_timeout(500)
    out["map_redrawn_by_selection"] = int(page.locator(".cleaner-map").get_attribute("data-draws")) != draws
    out["rerun_bytes_selection"] = sum(size for _, size in ws_log(page)[mark:])
    shot = REPO / "artifacts" / "map_draw_new.png"
    shot.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(shot))
    ctx.close()
    return out


def bench_old(browser, url: str, n: int) -> dict:
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    page.add_init_script(WS_HOOK)
    page.goto(f"{url}/?n={n}&dims=3&classes={N_CLASSES}&component=old")
    iframe = page.locator("iframe[title='streamlit_plotly_events.plotly_events']")
    iframe.wait_for(state="attached", timeout=600_000)
    frame = iframe.element_handle().content_frame()
    drawn_at = frame.wait_for_function(
        """n => { const gd = document.querySelector('.js-plotly-plot');
            if (!gd || !gd._fullLayout || !gd._fullLayout.scene || !gd._fullLayout.scene._scene || !gd.data) return null;
            const total = gd.data.filter(t => !String(t.name).startsWith('excluded'))
                .reduce((s, t) => s + (t.x ? t.x.length : 0), 0);
            return total === n ? Date.now() : null; }""",
        arg=n,
        timeout=600_000,
        polling="raf",
    ).json_value()
    # two frames more, as the new component waits before calling itself drawn
    drawn_at = frame.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(Date.now()))))"
    )
    log = ws_log(page)
    fig_msg = max(log, key=lambda m: m[1])
    ctx.close()
    return {"old_map_draw_s": (drawn_at - fig_msg[0]) / 1000, "old_bytes_per_point": fig_msg[1] / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="points on the map (default 100000)")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument("--skip-old", action="store_true", help="leave out today's component (e.g. at 1M points)")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found (Debian package 'chromium')")
    from playwright.sync_api import sync_playwright

    from cleaner.ui.map.payload import build_payload
    from tests.e2e.map_harness_app import synthetic

    coords, codes = synthetic(args.n, 3, N_CLASSES)
    payload = build_payload(coords, codes, [f"class {c}" for c in range(N_CLASSES)])
    result: dict = {"n": args.n, "classes": N_CLASSES, "encoded_bytes_per_point": payload.bytes_per_point()}
    port = free_port()
    log = REPO / "artifacts" / "map_draw_server.log"
    log.parent.mkdir(exist_ok=True)
    server = start_server(port, log)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            url = f"http://127.0.0.1:{port}"
            result.update(
                bench_new(browser, url, args.n, {part: payload.encoded_bytes(part) for part in ("points", "colours")})
            )
            if not args.skip_old:
                result.update(bench_old(browser, url, args.n))
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the group we started
        server.wait(timeout=30)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
