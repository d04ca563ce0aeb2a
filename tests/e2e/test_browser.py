"""The app in a real headless Chromium: what a user clicks, and what they see.

Run: python -m pytest -q tests/e2e   (screenshots and the server log go to artifacts/e2e/, or $CLEANER_E2E_ARTIFACTS)
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("CLEANER_E2E_CHROMIUM") or "/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Debian's 'chromium' package to run the browser tests "
                "(Playwright never downloads a browser here)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (requirements-dev.txt)")

from playwright.sync_api import expect  # noqa: E402

from . import helpers as h  # noqa: E402

DEMO_ROWS = 1797
DEMO_CLASS_SIZES = {"0": 178, "1": 182, "2": 177, "3": 183, "4": 181, "5": 182, "6": 181, "7": 179, "8": 174, "9": 180}


def _shot(page, name: str) -> None:
    print(f"[e2e] screenshot {h.screenshot(page, name)}")


def _download_list(page) -> str:
    button = page.get_by_role("button", name=re.compile(r"^Download exclusion list"))
    button.scroll_into_view_if_needed()
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.failure() is None, download.failure()
    assert re.fullmatch(r"images_to_exclude_from_training_\d{4}_\d{2}_\d{2}\.txt", download.suggested_filename)
    return Path(download.path()).read_text(encoding="utf-8")


def _sidebar_excluded(page, n: int) -> None:
    pattern = rf"^{n:,} image{'' if n == 1 else 's'} excluded, "
    expect(h.sidebar(page).get_by_text(re.compile(pattern))).to_be_visible()


# ---------------------------------------------------------------- 1. cold start

def test_cold_start_demo_map_draws_every_point(app_server, page):
    h.open_app(page, app_server.url)
    assert f"{DEMO_ROWS:,} images" in h.header(page)
    frame = h.wait_map3d(page, DEMO_ROWS)
    traces = h.map3d_traces(frame)
    assert dict(traces[:-1]) == DEMO_CLASS_SIZES, traces
    assert traces[-1] == ("excluded (0)", 0), traces
    stats = h.not_blank(h.canvas_pixels(page))
    _shot(page, "1_cold_start_3d_map")
    assert stats["distinct_colours"] >= 10, stats  # ten class colours plus axes, not one flat colour
    assert stats["non_white_share"] > 0.01, stats
    assert stats["saturated_pixels"] > 500, stats  # the coloured markers themselves


# ---------------------------------------------------------------- 2. 3D click

def test_3d_click_shows_that_sample_in_the_gallery(app_server, page):
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    frame = h.wait_map3d(page, DEMO_ROWS)
    rng = np.random.default_rng(2)
    for attempt in range(3):  # a click gl-plot3d did not register leaves the page unchanged: try another point
        picked = h.click_3d_point(page, frame, rng)
        try:
            expect(page.get_by_text("Selected: 1 image", exact=True)).to_be_visible(timeout=15_000)
            break
        except AssertionError:
            print(f"[e2e] 3D click {attempt + 1} at {picked} not registered; trying another point")
    else:
        raise AssertionError("three 3D clicks within 5 px of a point never selected it")
    h.settle(page)
    # The expected sample, independently of the app's code: the class trace's point-th row of that label.
    label = picked["name"]
    row = int(np.flatnonzero(labels == label)[picked["point"]])
    file_name = os.path.basename(paths[row])
    print(f"[e2e] clicked trace {picked['curve']} ({label!r}) point {picked['point']} at "
          f"({picked['x']:.0f}, {picked['y']:.0f}), {picked['distance']:.1f} px away: row {row}, {file_name}")
    assert h.hover_text(frame, picked["curve"], picked["point"]) == f"{label} · {file_name}"
    expect(page.get_by_text(f"clicked point #{row}", exact=True)).to_be_visible()
    expect(h.exclude_boxes(page)).to_have_count(1)
    items = h.gallery_items(page)
    assert items == [{"label": label, "file": file_name, "checked": False}], items
    (src,) = h.gallery_images(page)
    assert src.startswith("data:image/png;base64,")  # inline: never a /media/ URL anyone could fetch
    shown = h.image_bytes(page, src)
    similarity = h.similar_images(shown, Path(paths[row]))
    _shot(page, "2_3d_click_gallery")
    h.scroll_to_top(page.get_by_text("Selected: 1 image", exact=True))
    _shot(page, "2_3d_click_gallery_tile")
    assert similarity > 0.8, f"the gallery image does not look like {paths[row]} (correlation {similarity:.2f})"


# ---------------------------------------------------------------- 3. 2D lasso

def test_2d_lasso_selects_exactly_the_points_inside(app_server, page):
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    h.wait_map3d(page, DEMO_ROWS)
    h.open_2d_tab(page)
    points = h.points_2d(page)
    assert len(points) == DEMO_ROWS
    class_size = {name: int((labels == name).sum()) for name in set(labels)}

    def not_whole_classes(rows: set[int]) -> bool:
        """A lasso that cuts through a class: selecting whole classes instead would not pass."""
        found = {}
        for r in rows:
            found[labels[r]] = found.get(labels[r], 0) + 1
        return (any(class_size[name] - n >= 3 for name, n in found.items())
                and len(rows) not in class_size.values())

    poly = h.lasso_polygon(points, h.plot_area_2d(page), np.random.default_rng(3), max_inside=120,
                           accept=not_whole_classes)
    inside = h.inside_polygon(poly, points[:, 0], points[:, 1])
    expected_rows = set(points[inside, 2].astype(int).tolist())
    print(f"[e2e] lasso through {poly}: {len(expected_rows)} points inside")
    h.drag_lasso(page, poly)
    expect(page.get_by_text(re.compile(r"^Selected: [\d,]+ images?$"))).to_be_visible(timeout=60_000)
    h.settle(page)
    _shot(page, "3_2d_lasso_map")
    assert h.selected_count(page) == len(expected_rows)
    expect(h.exclude_boxes(page)).to_have_count(min(24, len(expected_rows)))
    described = f"{len(expected_rows):,} point{'' if len(expected_rows) == 1 else 's'} selected in the 2D map"
    expect(page.get_by_text(described, exact=True)).to_be_visible()
    h.scroll_to_top(page.get_by_text(re.compile(r"^Selected: ")))
    _shot(page, "3_2d_lasso_gallery")
    items = h.gallery_all_pages(page)  # every page: exactly the lassoed images, each once, with its label
    expected_files = {os.path.basename(paths[r]): labels[r] for r in expected_rows}
    assert sorted(it["file"] for it in items) == sorted(expected_files)
    assert all(expected_files[it["file"]] == it["label"] for it in items)


def test_hidden_3d_map_stays_idle_behind_the_2d_tab(app_server, page):
    """While the 2D map shows, the 3D map must not keep redrawing behind it, and coming back shows it again.

    streamlit-plotly-events left mounted in a hidden st.tabs tab flips its iframe height 0/600 and rebuilds the
    3D scene on every flip (hundreds of messages a second; the page stops answering). So the app shows one map
    at a time, chosen by a radio."""
    h.open_app(page, app_server.url)
    h.wait_map3d(page, DEMO_ROWS)
    h.start_counting_3d_frame_messages(page)
    idle = h.count_3d_frame_messages(page, 2)
    h.open_2d_tab(page)
    page.wait_for_timeout(500)
    behind = h.count_3d_frame_messages(page, 3)
    print(f"[e2e] 3D frame-height messages: {idle} in 2 s on its own tab, {behind} in 3 s behind the 2D tab")
    assert idle <= 4
    assert behind <= 4, f"the hidden 3D map posted {behind} frame-height messages in 3 s"
    assert len(h.points_2d(page)) == DEMO_ROWS
    h.stop_counting_3d_frame_messages(page)
    h.choose_map(page, "3D map")
    h.wait_map3d(page, DEMO_ROWS)  # back on the 3D view, the 3D map is drawn again with every point


# ---------------------------------------------------------------- 4. exclude and download

def test_ticked_images_are_the_downloaded_list(app_server, page):
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    by_name = {os.path.basename(p): p for p in paths}
    h.wait_map3d(page, DEMO_ROWS)
    h.select_class(page, "3", DEMO_CLASS_SIZES["3"])
    items = h.gallery_items(page)
    chosen = [items[0]["file"], items[4]["file"], items[9]["file"]]
    for n, name in enumerate(chosen, start=1):
        h.tick(page, name)
        _sidebar_excluded(page, n)
        h.settle(page)
    h.expect_header(page, f"· {len(chosen)} excluded ·")
    ticked = [it["file"] for it in h.gallery_items(page) if it["checked"]]
    assert sorted(ticked) == sorted(chosen)
    frame = h.wait_map3d(page, DEMO_ROWS)
    assert h.map3d_traces(frame)[-1] == (f"excluded ({len(chosen)})", len(chosen))  # the black crosses
    text = _download_list(page)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == len(set(lines)) == len(chosen), text
    assert set(lines) == {by_name[name] for name in chosen}
    h.scroll_to_top(page.get_by_text(re.compile(r"^Selected: ")))
    _shot(page, "4_ticked_and_downloaded")


# ---------------------------------------------------------------- 5. upload an NPZ, and a broken one

def test_uploaded_npz_draws_its_map_and_a_broken_one_is_reported(app_server, page):
    small = app_server.small
    h.open_app(page, app_server.url)
    h.choose_data_source(page, "Upload an NPZ")
    uploader = h.file_input(page, "NPZ with embeddings")
    uploader.set_input_files(str(small.npz))
    h.expect_header(page, f"{small.npz.name} · {len(small.labels):,} images", timeout=120_000)
    frame = h.wait_map3d(page, len(small.labels))
    names = [name for name, _ in h.map3d_traces(frame)]
    assert names[:-1] == ["bird", "cat", "dog"], names
    stats = h.not_blank(h.canvas_pixels(page))
    assert stats["saturated_pixels"] > 100 and stats["distinct_colours"] >= 4, stats
    _shot(page, "5_uploaded_npz_map")
    # A PCA preview may stand in while UMAP runs; its swap for the UMAP map reruns the page: wait for it first.
    expect(page.get_by_text("Showing a quick PCA preview")).to_have_count(0, timeout=180_000)
    h.settle(page)
    h.wait_map3d(page, len(small.labels))
    # Its images are read from the allowed folder: no placeholder in the gallery.
    h.select_class(page, "cat", 100)
    items = h.gallery_items(page)
    assert {it["label"] for it in items} == {"cat"} and all(it["file"].startswith("cat_") for it in items)
    expect(page.get_by_text(re.compile("^⚠"))).to_have_count(0)
    _shot(page, "5_uploaded_npz_gallery")

    uploader.set_input_files(str(small.broken_npz))
    error = page.locator("[data-testid=stAlert]").filter(has_text="Could not load x.npz")
    expect(error).to_be_visible(timeout=60_000)
    h.settle(page)
    print(f"[e2e] broken NPZ message: {error.inner_text()!r}")
    expect(h.map3d_iframe(page)).to_have_count(0)  # no stale map of the previous upload
    _shot(page, "5_broken_npz_error")

    h.choose_data_source(page, "Demo (digits)")
    h.expect_header(page, f"{DEMO_ROWS:,} images")
    h.wait_map3d(page, DEMO_ROWS)
    h.settle(page)
    _shot(page, "5_back_to_demo")


# ---------------------------------------------------------------- 6. resume from a saved list

def test_resumed_list_restores_ticks_that_survive_reruns(app_server, page, tmp_path):
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    threes = np.flatnonzero(labels == "3")
    resumed = [paths[r] for r in threes[[0, 2, 5]]]  # all on the class's first gallery page
    saved = tmp_path / "images_to_exclude_from_training_2020_01_01.txt"
    saved.write_text("".join(f"{p}\n" for p in resumed) + "/not/in/this/dataset.png\n", encoding="utf-8")
    h.wait_map3d(page, DEMO_ROWS)
    h.file_input(page, "Resume from a saved list").set_input_files(str(saved))
    message = f"Restored 3 exclusions, 0 relabels, 0 kept marks from {saved.name}. Skipped 1 line whose path"
    expect(h.sidebar(page).get_by_text(message, exact=False)).to_be_visible()
    _sidebar_excluded(page, 3)
    h.expect_header(page, "· 3 excluded ·")
    resumed_names = {os.path.basename(p) for p in resumed}

    def ticked() -> set[str]:
        return {it["file"] for it in h.gallery_items(page) if it["checked"]}

    h.select_class(page, "3", DEMO_CLASS_SIZES["3"])
    assert ticked() == resumed_names
    h.scroll_to_top(page.get_by_text(re.compile(r"^Selected: ")))
    _shot(page, "6_resumed_ticks")

    # Other reruns: clear the selection, choose the class again; the ticks are still there.
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Selected: "))).to_have_count(0)
    h.settle(page)
    h.select_class(page, "3", DEMO_CLASS_SIZES["3"])
    assert ticked() == resumed_names

    # Untick one: the uploaded list (still in its uploader) must not bring it back on the next rerun.
    gone = os.path.basename(resumed[1])
    h.tick(page, gone)
    _sidebar_excluded(page, 2)
    h.settle(page)
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Selected: "))).to_have_count(0)
    h.settle(page)
    h.select_class(page, "3", DEMO_CLASS_SIZES["3"])
    assert ticked() == resumed_names - {gone}
    h.expect_header(page, "· 2 excluded ·")
    assert set(_download_list(page).splitlines()) == set(resumed) - {resumed[1]}
    h.scroll_to_top(page.get_by_text(re.compile(r"^Selected: ")))
    _shot(page, "6_after_reruns")


# ---------------------------------------------------------------- 7. two users

def test_two_sessions_never_share_ticks(app_server, new_context):
    alice, bob = new_context().new_page(), new_context().new_page()
    h.open_app(alice, app_server.url)
    h.open_app(bob, app_server.url)
    h.select_class(alice, "7", DEMO_CLASS_SIZES["7"])
    h.select_class(bob, "7", DEMO_CLASS_SIZES["7"])
    names = [it["file"] for it in h.gallery_items(alice)[:2]]
    for n, name in enumerate(names, start=1):
        h.tick(alice, name)
        _sidebar_excluded(alice, n)
        h.settle(alice)
    h.expect_header(alice, "· 2 excluded ·")
    assert len(_download_list(alice).splitlines()) == 2

    # Bob's session was open all along: rerun it (select the class again) and look.
    h.select_class(bob, "7", DEMO_CLASS_SIZES["7"])
    h.expect_header(bob, "· 0 excluded ·")
    _sidebar_excluded(bob, 0)
    assert not any(it["checked"] for it in h.gallery_items(bob))
    assert _download_list(bob) == ""
    h.scroll_to_top(bob.get_by_text(re.compile(r"^Selected: ")))
    _shot(bob, "7_second_session_untouched")
    h.expect_header(alice, "· 2 excluded ·")


# ---------------------------------------------------------------- 8. review queue

def _queue_rows(page) -> list[int]:
    """Dataset rows of the review-queue cards, in the order shown."""
    # The cards fill three columns, so reading order (row by row on screen) is not DOM order.
    cards = page.locator("[class*='st-key-queue_card_']").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.className, r.top, r.left]; })")
    cards.sort(key=lambda c: (round(c[1] / 20), c[2]))
    return [int(re.search(r"st-key-queue_card_(\d+)", c[0]).group(1)) for c in cards]


def _queue_left(page) -> int:
    text = page.get_by_text(re.compile(r"flagged samples left to review")).inner_text()
    return int(re.search(r"([\d,]+) flagged samples left", text).group(1).replace(",", ""))


def _card_button(page, row: int, name: str):
    return page.locator(f".st-key-queue_card_{row}").get_by_role("button", name=name, exact=True)


def test_review_queue_exclude_keep_relabel_undo(app_server, page):
    """The queue shows the most suspect samples first; each decision moves on to the next one, Undo brings the
    last one back, and only Exclude puts a path on the downloaded list."""
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    page.locator("[data-testid=stRadio] label").filter(has_text=re.compile(r"^Review queue$")).click()
    expect(page.get_by_text(re.compile(r"flagged samples left to review"))).to_be_visible(timeout=60_000)
    h.settle(page)
    left, rows = _queue_left(page), _queue_rows(page)
    assert left >= 3 and len(rows) >= 3
    first_card = page.locator(f".st-key-queue_card_{rows[0]}")
    assert os.path.basename(paths[rows[0]]) in first_card.inner_text()  # the card names its own file
    _shot(page, "8_review_queue")

    _card_button(page, rows[0], "Exclude").click()  # the most suspect sample is excluded ...
    expect(page.locator(f".st-key-queue_card_{rows[0]}")).to_have_count(0)
    h.settle(page)
    assert _queue_left(page) == left - 1
    assert _queue_rows(page)[0] == rows[1]  # ... and the next one moves up
    _sidebar_excluded(page, 1)

    _card_button(page, rows[1], "Keep").click()
    expect(page.locator(f".st-key-queue_card_{rows[1]}")).to_have_count(0)
    h.settle(page)
    assert _queue_left(page) == left - 2
    _sidebar_excluded(page, 1)  # keeping excludes nothing

    page.get_by_role("button", name="Undo last decision").click()  # the kept one comes back first
    expect(page.locator(f".st-key-queue_card_{rows[1]}")).to_have_count(1)
    h.settle(page)
    assert _queue_left(page) == left - 1 and _queue_rows(page)[0] == rows[1]

    relabel = page.locator("[class*='st-key-queue_card_']").get_by_role("button", name=re.compile(r"^Relabel to "))
    if relabel.count():
        card = relabel.first.locator("xpath=ancestor::*[contains(@class, 'st-key-queue_card_')][1]")
        relabelled = int(re.search(r"st-key-queue_card_(\d+)", card.get_attribute("class")).group(1))
        relabel.first.click()
        expect(page.locator(f".st-key-queue_card_{relabelled}")).to_have_count(0)
        h.settle(page)
        assert _queue_left(page) == left - 2
    _sidebar_excluded(page, 1)
    h.expect_header(page, "· 1 excluded ·")
    assert _download_list(page).splitlines() == [paths[rows[0]]]
