"""The app in a real headless Chromium: what a user clicks, and what they see.

One app server for the module (conftest's app_server); a fresh browser context per test. Every expected outcome is
computed from the data (app_server.demo(): labels and paths) and from what the page draws (the figure's points and
the camera read off the page), never copied from a run.

Run: python -m pytest -q tests/e2e/test_browser.py   (screenshots and the server log go to artifacts/e2e/)
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path(os.environ.get("CLEANER_E2E_CHROMIUM") or "/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} not found: install Debian's 'chromium' package to run the browser tests "
        "(Playwright never downloads a browser here)",
        allow_module_level=True,
    )
pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (requirements-dev.txt)")

from playwright.sync_api import expect  # noqa: E402

from . import helpers as h  # noqa: E402


def _shot(page, name: str) -> None:
    print(f"[e2e] screenshot {h.screenshot(page, name)}")


def _class_sizes(labels: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(labels, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def _open_demo(page, app_server) -> tuple[np.ndarray, np.ndarray]:
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    h.wait_map(page, len(labels))
    return labels, paths


def _download_list(page) -> str:
    name, data = h.download(page, "Exclusion list")
    assert re.fullmatch(r"images_to_exclude_from_training_\d{4}_\d{2}_\d{2}\.txt", name), name
    return data.decode("utf-8")


def _decisions_excluded(page, n: int) -> None:
    """The count beside the decision files, in the review pane."""
    pattern = rf"^Your decisions: {n:,} image{'' if n == 1 else 's'} excluded, "
    expect(page.get_by_test_id("stMain").get_by_text(re.compile(pattern))).to_be_visible()


def _expect_selected(page, n: int):
    heading = page.get_by_text(f"Selected: {n:,} image{'' if n == 1 else 's'}", exact=True)
    expect(heading).to_be_visible(timeout=60_000)
    return heading


# ---------------------------------------------------------------- 1. cold start


def test_cold_start_demo_map_draws_every_point(app_server, page):
    h.open_app(page, app_server.url)
    labels, _ = app_server.demo()
    assert f"{len(labels):,} images" in h.header(page)
    h.wait_map(page, len(labels))
    traces = h.map_traces(page)
    assert dict(traces) == _class_sizes(labels), traces  # one trace per class, every point of it
    assert sum(n for _, n in traces) == len(labels)
    marks = h.map_marks(page)
    assert marks["selected"] == [] and marks["excluded"] == []
    stats = h.not_blank(h.map_pixels(page))
    _shot(page, "1_cold_start_3d_map")
    assert stats["distinct_colours"] >= 10, stats  # ten class colours plus axes, not one flat colour
    assert stats["non_white_share"] > 0.01, stats
    assert stats["saturated_pixels"] > 500, stats  # the coloured markers themselves


# ---------------------------------------------------------------- 2. 3D click


def test_3d_click_shows_that_sample_in_the_gallery(app_server, page):
    labels, paths = _open_demo(page, app_server)
    coords = h.map_coords(page, labels)
    x, y, front, info = h.map_projection(page, coords)
    before = h.map_counter(page, "marks")
    row = None
    for candidate in h.isolated_points(x, y, front, h.shape_area(page, info)):
        # The row under the cursor, independently of the app: the picked trace's point-th row of that label (the
        # figure draws each class's rows in row order), and it must be the point the camera puts there.
        picked = h.hover_pick(page, float(x[candidate]), float(y[candidate]))
        if not picked or picked["distance"] > 4:
            continue
        under = int(np.flatnonzero(labels == picked["name"])[picked["point"]])
        if under != candidate:
            continue
        h.click_point(page, float(x[candidate]), float(y[candidate]))
        try:
            h.wait_marks_after(page, before, timeout=15_000)
        except Exception:  # a click gl-plot3d did not register leaves the page unchanged: try another point
            print(f"[e2e] click on row {candidate} at ({x[candidate]:.0f}, {y[candidate]:.0f}) not registered")
            continue
        row = candidate
        break
    assert row is not None, "no click on a well separated point of the 3D map selected it"
    file_name = os.path.basename(paths[row])
    print(f"[e2e] clicked row {row} ({labels[row]!r}, {file_name}) at ({x[row]:.0f}, {y[row]:.0f})")
    _expect_selected(page, 1)
    expect(page.get_by_text("click on the 3D map: 1 image", exact=True)).to_be_visible()
    assert h.map_marks(page)["selected"] == [row]  # the map highlights that point
    expect(h.exclude_boxes(page)).to_have_count(1)
    items = h.gallery_items(page)
    assert items == [{"label": labels[row], "file": file_name, "checked": False}], items
    expect(page.locator("[data-testid=stImage] img")).to_have_count(1)  # the tile's <img> can mount after its text
    (src,) = h.gallery_images(page)
    assert src.startswith("data:image/png;base64,")  # inline: never a /media/ URL anyone could fetch
    similarity = h.similar_images(h.image_bytes(page, src), Path(paths[row]))
    _shot(page, "2_3d_click_gallery")
    assert similarity > 0.8, f"the gallery image does not look like {paths[row]} (correlation {similarity:.2f})"


# ---------------------------------------------------------------- 3. box in 3D, lasso in 2D


def _cuts_a_class(labels: np.ndarray):
    sizes = _class_sizes(labels)

    def prefer(inside: np.ndarray) -> bool:
        """A shape that holds part of a class: selecting whole classes instead would not pass."""
        found = _class_sizes(labels[inside]) if inside.any() else {}
        return any(sizes[name] - n >= 3 for name, n in found.items()) and inside.sum() <= 120

    return prefer


def _check_shape_selection(page, labels, paths, expected: list[int], kind: str, dims: int, shot: str) -> None:
    n = len(expected)
    assert n >= 1
    _expect_selected(page, n)
    expect(
        page.get_by_text(f"{kind} on the {dims}D map: {n:,} image{'' if n == 1 else 's'}", exact=True)
    ).to_be_visible()
    assert h.map_marks(page)["selected"] == expected  # highlighted on the map: exactly those rows
    _shot(page, shot)
    expected_files = {os.path.basename(paths[r]): labels[r] for r in expected}
    items = h.gallery_all_pages(page) if n > 24 else h.gallery_items(page)
    assert sorted(it["file"] for it in items) == sorted(expected_files)  # every page: exactly those images, once
    assert all(expected_files[it["file"]] == it["label"] for it in items)


def test_3d_box_selects_exactly_the_points_projected_inside(app_server, page):
    labels, paths = _open_demo(page, app_server)
    coords = h.map_coords(page, labels)
    x, y, front, info = h.map_projection(page, coords)
    x, y = np.where(front, x, np.nan), np.where(front, y, np.nan)
    box = h.clean_shape(
        x, y, h.shape_area(page, info), np.random.default_rng(1), h.make_box, prefer=_cuts_a_class(labels)
    )
    expected = np.flatnonzero(h.inside_polygon(box, x, y) & front).tolist()
    print(f"[e2e] box {box}: {len(expected)} points inside")
    h.choose_tool(page, "Box")
    page.evaluate("() => { document.querySelector('.cleaner-map').dataset.before = 'selection'; }")
    before = h.map_counter(page, "marks")
    h.drag_box(page, box)
    h.wait_marks_after(page, before)
    _check_shape_selection(page, labels, paths, expected, "box", 3, "3_3d_box")
    # the rerun the selection caused updated the map in place: not rebuilt, still on the Box tool for the next box
    assert page.locator(".cleaner-map").get_attribute("data-before") == "selection"
    expect(page.locator(".cleaner-map-toolbar button", has_text="Box")).to_have_attribute("aria-pressed", "true")


def test_2d_lasso_selects_exactly_the_points_inside(app_server, page):
    labels, paths = _open_demo(page, app_server)
    h.choose_map_view(page, "2D")
    h.wait_map(page, len(labels), dims=2)
    coords = h.map_coords(page, labels)
    assert coords.shape[1] == 2
    x, y, _, info = h.map_projection(page, coords)
    star = h.clean_shape(
        x, y, h.shape_area(page, info), np.random.default_rng(3), h.make_star, prefer=_cuts_a_class(labels)
    )
    expected = np.flatnonzero(h.inside_polygon(star, x, y)).tolist()
    print(f"[e2e] lasso {star}: {len(expected)} points inside")
    h.choose_tool(page, "Lasso")
    before = h.map_counter(page, "marks")
    h.drag_lasso(page, star)
    h.wait_marks_after(page, before)
    _check_shape_selection(page, labels, paths, expected, "lasso", 2, "3_2d_lasso")


# ---------------------------------------------------------------- 4. exclude and download


def test_ticked_images_are_the_downloaded_list_and_the_crosses_on_the_map(app_server, page):
    labels, paths = _open_demo(page, app_server)
    row_of = {os.path.basename(p): r for r, p in enumerate(paths)}
    h.select_class(page, "3", int((labels == "3").sum()))
    items = h.gallery_items(page)
    chosen = [items[0]["file"], items[4]["file"], items[9]["file"]]
    for n, name in enumerate(chosen, start=1):
        h.tick(page, name)
        _decisions_excluded(page, n)
        h.settle(page)
    h.expect_header(page, f"· {len(chosen)} excluded ·")
    ticked = [it["file"] for it in h.gallery_items(page) if it["checked"]]
    assert sorted(ticked) == sorted(chosen)
    text = _download_list(page)
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == len(set(lines)) == len(chosen), text
    assert set(lines) == {paths[row_of[name]] for name in chosen}
    # the × marks the map draws: exactly the excluded rows (a small dataset redraws the marks at once)
    want = sorted(row_of[name] for name in chosen)
    page.wait_for_function(
        "n => Number(document.querySelector('.cleaner-map').dataset.excluded) === n", arg=len(chosen)
    )
    marks = h.map_marks(page)
    assert marks["excluded"] == want and marks["showExcluded"] is True, marks
    assert marks["selected"] == np.flatnonzero(labels == "3").tolist()  # the class stays highlighted
    h.scroll_to_top(page.locator(".st-key-workspace"))
    _shot(page, "4_ticked_and_crossed")


def _wait_map_selection(page, rows: list[int], what: str) -> None:
    try:
        page.wait_for_function(
            """want => { const root = document.querySelector('.cleaner-map');
                for (const [, e] of (window.__cleanerMaps || new Map()))
                    if (e.state && e.state.root === root)
                        return JSON.stringify(Array.from(e.state.marks.selected)) === JSON.stringify(want);
                return false; }""",
            arg=rows,
            timeout=30_000,
        )
    except Exception:
        got = h.map_marks(page)["selected"]
        raise AssertionError(
            f"after {what} the map highlights {len(got)} rows ({got[:8]}...), "
            f"not the {len(rows)} rows the gallery shows"
        ) from None


def test_select_class_and_clear_show_on_the_map(app_server, page):
    labels, _ = _open_demo(page, app_server)
    threes = np.flatnonzero(labels == "3").tolist()
    h.select_class(page, "3", len(threes))
    _wait_map_selection(page, threes, "Select class '3'")
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Selected: "))).to_have_count(0)
    h.settle(page)
    _shot(page, "4_cleared_selection_map")
    _wait_map_selection(page, [], "Clear")


# ---------------------------------------------------------------- 5. upload an NPZ, and a broken one


def test_uploaded_npz_draws_its_map_and_a_broken_one_is_reported(app_server, page):
    small = app_server.small
    h.open_app(page, app_server.url)
    h.choose_data_source(page, "Upload an NPZ")
    uploader = h.file_input(page, "NPZ with embeddings")
    uploader.set_input_files(str(small.npz))
    h.expect_header(page, f"{small.npz.name} · {len(small.labels):,} images", timeout=120_000)
    h.wait_map(page, len(small.labels))  # the UMAP map, after any PCA preview
    assert dict(h.map_traces(page)) == _class_sizes(small.labels)
    assert [name for name, _ in h.map_traces(page)] == ["bird", "cat", "dog"]
    stats = h.not_blank(h.map_pixels(page))
    _shot(page, "5_uploaded_npz_map")
    assert stats["saturated_pixels"] > 100 and stats["distinct_colours"] >= 4, stats
    # Its images are read from the allowed folder: no placeholder in the gallery.
    h.select_class(page, "cat", int((small.labels == "cat").sum()))
    items = h.gallery_items(page)
    assert {it["label"] for it in items} == {"cat"} and all(it["file"].startswith("cat_") for it in items)
    expect(page.get_by_text(re.compile("^⚠"))).to_have_count(0)

    uploader.set_input_files(str(small.broken_npz))
    error = page.locator("[data-testid=stAlert]").filter(has_text="Could not load x.npz")
    expect(error).to_be_visible(timeout=60_000)
    h.settle(page)
    print(f"[e2e] broken NPZ message: {error.inner_text()!r}")
    expect(page.locator(h.MAP)).to_have_count(0)  # no stale map of the previous upload
    expect(page.locator(h.HEADER)).to_have_count(0)
    _shot(page, "5_broken_npz_error")

    h.choose_data_source(page, "Demo (digits)")
    labels, _ = app_server.demo()
    h.expect_header(page, f"{len(labels):,} images")
    h.wait_map(page, len(labels))
    assert dict(h.map_traces(page)) == _class_sizes(labels)


# ---------------------------------------------------------------- 6. resume from a saved list or decisions CSV


def test_resumed_list_restores_ticks_that_survive_reruns(app_server, page, tmp_path):
    labels, paths = _open_demo(page, app_server)
    n_threes = int((labels == "3").sum())
    threes = np.flatnonzero(labels == "3")
    resumed = [paths[r] for r in threes[[0, 2, 5]]]  # all on the class's first gallery page
    saved = tmp_path / "images_to_exclude_from_training_2020_01_01.txt"
    saved.write_text("".join(f"{p}\n" for p in resumed) + "/not/in/this/dataset.png\n", encoding="utf-8")
    h.file_input(page, "Resume from a saved list").set_input_files(str(saved))
    message = f"Restored 3 exclusions, 0 relabels, 0 kept marks from {saved.name}. Skipped 1 line whose path"
    expect(h.sidebar(page).get_by_text(message, exact=False)).to_be_visible()
    _decisions_excluded(page, 3)
    h.expect_header(page, "· 3 excluded ·")
    resumed_names = {os.path.basename(p) for p in resumed}

    def ticked() -> set[str]:
        return {it["file"] for it in h.gallery_items(page) if it["checked"]}

    h.select_class(page, "3", n_threes)
    assert ticked() == resumed_names
    assert h.map_marks(page)["excluded"] == sorted(threes[[0, 2, 5]].tolist())

    # Other reruns: clear the selection, choose the class again; the ticks are still there.
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Selected: "))).to_have_count(0)
    h.settle(page)
    h.select_class(page, "3", n_threes)
    assert ticked() == resumed_names

    # Untick one: the uploaded list (still in its uploader) must not bring it back on the next rerun.
    gone = os.path.basename(resumed[1])
    h.tick(page, gone)
    _decisions_excluded(page, 2)
    h.settle(page)
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Selected: "))).to_have_count(0)
    h.settle(page)
    h.select_class(page, "3", n_threes)
    assert ticked() == resumed_names - {gone}
    h.expect_header(page, "· 2 excluded ·")
    assert set(_download_list(page).splitlines()) == set(resumed) - {resumed[1]}
    _shot(page, "6_after_reruns")


def test_resumed_decisions_csv_restores_exclusions_relabels_and_kept_marks(app_server, page, tmp_path):
    labels, paths = _open_demo(page, app_server)
    sizes = _class_sizes(labels)
    excluded, relabelled, kept = (int(np.flatnonzero(labels == c)[i]) for c, i in (("1", 3), ("3", 7), ("5", 11)))
    new_label = "8"
    saved = tmp_path / "cleaner_decisions.csv"
    rows = [
        ["image_path", "decision", "reason", "old_label", "new_label", "decided_by"],
        [paths[excluded], "exclude", "blurry", labels[excluded], "", ""],
        [paths[relabelled], "relabel", "looks like an 8", labels[relabelled], new_label, ""],
        [paths[kept], "keep", "kept after review", labels[kept], "", ""],
        ["/not/in/this/dataset.png", "exclude", "", "0", "", ""],
    ]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    saved.write_text(buf.getvalue(), encoding="utf-8")
    h.file_input(page, "Resume from a saved list").set_input_files(str(saved))
    side = h.sidebar(page)
    expect(
        side.get_by_text(f"Restored 1 exclusion, 1 relabel, 1 kept mark from {saved.name}.", exact=False)
    ).to_be_visible()
    expect(
        side.get_by_text("Skipped 1 line whose path is not in this dataset or whose label is unknown.", exact=False)
    ).to_be_visible()
    h.expect_header(page, "· 1 excluded · 1 relabelled · 1 kept")
    expect(page.get_by_text(re.compile(r"^Your decisions: 1 image excluded, 1 relabelled, 1 kept\."))).to_be_visible()
    # The map draws the relabelled point with its new class, and the excluded one as a ×.
    want = dict(sizes)
    want[labels[relabelled]] -= 1
    want[new_label] += 1
    page.wait_for_function("n => Number(document.querySelector('.cleaner-map').dataset.excluded) === n", arg=1)
    h.wait_map(page, len(labels))
    page.wait_for_function(
        "([name, n]) => document.querySelector('.cleaner-map-gd').data.find(t => t.name === name).x.length === n",
        arg=[new_label, want[new_label]],
    )
    assert dict(h.map_traces(page)) == want
    assert h.map_marks(page)["excluded"] == [excluded]
    # The gallery card tells the relabel; the downloads carry all three decisions.
    h.select_class(page, labels[relabelled], sizes[labels[relabelled]])
    items = [it for it in h.gallery_all_pages(page) if it["file"] == os.path.basename(paths[relabelled])]
    assert [it["label"] for it in items] == [f"{labels[relabelled]} → {new_label}"], items
    _, data = h.download(page, "All decisions")
    got = {r["image_path"]: r for r in csv.DictReader(io.StringIO(data.decode("utf-8")))}
    assert {p: r["decision"] for p, r in got.items()} == {
        paths[excluded]: "exclude",
        paths[relabelled]: "relabel",
        paths[kept]: "keep",
    }
    assert got[paths[relabelled]]["new_label"] == new_label
    name, data = h.download(page, "Labels to fix")
    assert re.fullmatch(r"labels_to_fix_\d{4}_\d{2}_\d{2}\.csv", name), name
    assert list(csv.reader(io.StringIO(data.decode("utf-8")))) == [
        ["image_path", "old_label", "new_label"],
        [paths[relabelled], labels[relabelled], new_label],
    ]
    h.open_review(page, "Review queue")
    expect(page.get_by_text(re.compile(r"· 3 decided · 1 excluded$"))).to_be_visible()
    h.scroll_to_top(page.locator(".st-key-review_pane"))
    _shot(page, "6_resumed_decisions_csv")


# ---------------------------------------------------------------- 7. two users


def test_two_sessions_never_share_ticks(app_server, new_context):
    alice, bob = new_context().new_page(), new_context().new_page()
    h.open_app(alice, app_server.url)
    h.open_app(bob, app_server.url)
    labels, _ = app_server.demo()
    n_sevens = int((labels == "7").sum())
    h.select_class(alice, "7", n_sevens)
    h.select_class(bob, "7", n_sevens)
    names = [it["file"] for it in h.gallery_items(alice)[:2]]
    for n, name in enumerate(names, start=1):
        h.tick(alice, name)
        _decisions_excluded(alice, n)
        h.settle(alice)
    h.expect_header(alice, "· 2 excluded ·")
    assert len(_download_list(alice).splitlines()) == 2

    # Bob's session was open all along: rerun it (select the class again) and look.
    h.select_class(bob, "7", n_sevens)
    h.expect_header(bob, "· 0 excluded ·")
    _decisions_excluded(bob, 0)
    assert not any(it["checked"] for it in h.gallery_items(bob))
    assert _download_list(bob) == ""
    h.wait_map(bob, len(labels))
    assert h.map_marks(bob)["excluded"] == []
    _shot(bob, "7_second_session_untouched")
    h.expect_header(alice, "· 2 excluded ·")


# ---------------------------------------------------------------- 8. review queue


def _card_labels(page, row: int) -> tuple[str, str | None]:
    """(label, what the neighbours say) as the card of `row` tells them."""
    text = h.queue_card(page, row).get_by_text(re.compile(r"^label: ")).first.inner_text()
    m = re.fullmatch(r"label: (.+?)(?:\s{3}neighbours say: (.+))?", text.strip())
    assert m, text
    return m.group(1), m.group(2)


def _open_queue(page) -> dict[int, int]:
    h.open_review(page, "Review queue")
    expect(page.get_by_text(re.compile(r"flagged samples left to review"))).to_be_visible(timeout=60_000)
    h.settle(page)
    return h.queue_slots(page)


def _wait_slots_change(page, before: dict[int, int]) -> dict[int, int]:
    page.wait_for_function(
        """before => { const now = {};
            document.querySelectorAll('[class*="st-key-queue_slot_"]').forEach(e => {
                const s = Array.from(e.classList).find(c => c.startsWith('st-key-queue_slot_')).split('_').pop();
                const b = e.querySelector('[class*="st-key-q_excl_"]');
                now[s] = b ? Array.from(b.classList).find(c => c.startsWith('st-key-q_excl_')).split('_').pop() : null; });
            return JSON.stringify(now) !== JSON.stringify(before); }""",
        arg={str(k): str(v) for k, v in before.items()},
        timeout=60_000,
    )
    h.settle(page)
    return h.queue_slots(page)


def test_review_queue_exclude_keep_relabel_undo(app_server, page):
    """Each decision takes its card off the queue, Undo brings the last one back, only Exclude puts a path on the
    downloaded list."""
    labels, paths = _open_demo(page, app_server)
    slots = _open_queue(page)
    left = h.queue_left(page)
    rows = [slots[s] for s in sorted(slots)]
    assert left >= 3 and len(rows) == min(6, left), (left, slots)
    for row in rows:  # each card names its own file and its own label
        card = h.queue_card(page, row)
        expect(card.get_by_text(os.path.basename(paths[row]), exact=True)).to_be_visible()
        assert _card_labels(page, row)[0] == labels[row]
    h.scroll_to_top(page.locator(".st-key-review_pane"))
    _shot(page, "8_review_queue")

    h.queue_button(page, rows[0], "Exclude").click()
    expect(h.queue_card(page, rows[0])).to_have_count(0)
    h.settle(page)
    assert h.queue_left(page) == left - 1
    _decisions_excluded(page, 1)

    h.queue_button(page, rows[1], "Keep").click()
    expect(h.queue_card(page, rows[1])).to_have_count(0)
    h.settle(page)
    assert h.queue_left(page) == left - 2
    _decisions_excluded(page, 1)  # keeping excludes nothing
    h.expect_header(page, "· 1 excluded · 0 relabelled · 1 kept")

    page.get_by_role("button", name=re.compile(r"^Undo last decision")).click()  # the kept one comes back
    expect(h.queue_card(page, rows[1])).to_have_count(1)
    h.settle(page)
    assert h.queue_left(page) == left - 1
    h.expect_header(page, "· 1 excluded · 0 relabelled · 0 kept")
    assert _download_list(page).splitlines() == [paths[rows[0]]]
    assert h.map_marks(page)["excluded"] == [rows[0]]


def test_a_decision_leaves_the_other_cards_where_they_are(app_server, page, tmp_path):
    """A dataset with more suspects than cards (the demo with a dozen labels flipped): deciding one card puts the
    next suspect in its slot and leaves every other card in its slot."""
    h.open_app(page, app_server.url)  # the demo first: its NPZ (embeddings, labels, paths) is what we flip
    labels, paths = app_server.demo()
    with np.load(sorted((app_server.cache_dir / "demo").glob("*.npz"))[-1], allow_pickle=False) as z:
        emb = z["embeddings"]
    flipped = np.concatenate([np.flatnonzero(labels == c)[:2] for c in "0246813579"[:7]])  # 14 rows
    new_labels = labels.copy()
    new_labels[flipped] = [str((int(labels[r]) + 5) % 10) for r in flipped]
    npz = tmp_path / "flipped_digits.npz"
    np.savez_compressed(npz, embeddings=emb, labels=new_labels, image_paths=paths)
    h.choose_data_source(page, "Upload an NPZ")
    h.file_input(page, "NPZ with embeddings").set_input_files(str(npz))
    h.expect_header(page, f"{npz.name} · {len(labels):,} images", timeout=120_000)
    h.wait_map(page, len(labels))
    slots = _open_queue(page)
    left = h.queue_left(page)
    assert left >= len(flipped) and len(slots) == 6, (left, slots)
    for row in slots.values():
        given, says = _card_labels(page, row)
        assert given == new_labels[row] and says is not None and says != given
        if row in flipped:  # its neighbours carry the label it had before the flip
            assert says == labels[row], (row, given, says, labels[row])
    h.scroll_to_top(page.locator(".st-key-review_pane"))
    _shot(page, "8_queue_slots_before")
    shown = set(slots.values())
    for slot, how in ((2, "Keep"), (0, "Exclude"), (5, "Relabel")):
        row = slots[slot]
        h.queue_button(page, row, how).click()
        after = _wait_slots_change(page, slots)
        assert h.queue_left(page) == left - 1
        assert {s: r for s, r in after.items() if s != slot} == {s: r for s, r in slots.items() if s != slot}, (
            f"{how} on slot {slot} moved other cards: {slots} → {after}"
        )
        assert after[slot] not in shown and after[slot] != row, (slots, after)
        given, says = _card_labels(page, after[slot])  # the next suspect
        assert given == new_labels[after[slot]] and says not in (None, given)
        shown.add(after[slot])
        slots, left = after, left - 1
    h.expect_header(page, "· 1 excluded · 1 relabelled · 1 kept")
    h.scroll_to_top(page.locator(".st-key-review_pane"))
    _shot(page, "8_queue_slots_after")


def test_relabel_reaches_the_cleaned_npz_and_the_labels_to_fix(app_server, page):
    labels, paths = _open_demo(page, app_server)
    slots = _open_queue(page)
    row = next(r for r in (slots[s] for s in sorted(slots)) if h.queue_button(page, r, "Relabel").count())
    given, suggested = _card_labels(page, row)
    assert given == labels[row] and suggested not in (None, given)
    button = h.queue_button(page, row, "Relabel")
    expect(button).to_have_text(re.compile(rf"^Relabel to {re.escape(suggested)}\s*L?\s*$"))  # L: its shortcut
    button.click()
    expect(h.queue_card(page, row)).to_have_count(0)
    h.settle(page)
    h.expect_header(page, "· 0 excluded · 1 relabelled · 0 kept")
    name, data = h.download(page, "Download cleaned NPZ")
    assert name.endswith(".npz"), name
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        got_labels, got_paths, got_emb = z["labels"].astype(str), z["image_paths"].astype(str), z["embeddings"]
    assert got_paths.tolist() == paths.tolist() and len(got_emb) == len(paths)  # nothing excluded: every row
    want = labels.copy()
    want[row] = suggested
    assert got_labels.tolist() == want.tolist()  # that image carries the suggested label; no other changed
    _, data = h.download(page, "Labels to fix")
    assert list(csv.reader(io.StringIO(data.decode("utf-8")))) == [
        ["image_path", "old_label", "new_label"],
        [paths[row], given, suggested],
    ]
    assert _download_list(page) == ""


def test_x_key_excludes_the_first_cards_image(app_server, page):
    labels, paths = _open_demo(page, app_server)
    slots = _open_queue(page)
    first, left = slots[0], h.queue_left(page)
    # focus the page on the queue, outside any input, as a reader of the cards does
    page.get_by_text(re.compile(r"flagged samples left to review")).first.click()
    assert page.evaluate("() => !['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName)")
    page.keyboard.press("x")
    expect(h.queue_card(page, first)).to_have_count(0)
    h.settle(page)
    assert h.queue_left(page) == left - 1
    h.expect_header(page, "· 1 excluded ·")
    assert _download_list(page).splitlines() == [paths[first]]


# ---------------------------------------------------------------- 9. layout


def _pane_boxes(page) -> tuple[dict, dict]:
    return page.locator(".st-key-map_pane").bounding_box(), page.locator(".st-key-review_pane").bounding_box()


def _long_review_pane(page, app_server, width: int) -> np.ndarray:
    page.set_viewport_size({"width": width, "height": 1000})
    labels, _ = _open_demo(page, app_server)
    h.select_class(page, "4", int((labels == "4").sum()))  # a long review pane: 24 cards
    return labels


def test_wide_screen_map_and_review_side_by_side(app_server, page):
    _long_review_pane(page, app_server, 1600)
    map_box, review_box = _pane_boxes(page)
    print(f"[e2e] 1600 px: map pane {map_box}, review pane {review_box}")
    assert review_box["x"] >= map_box["x"] + map_box["width"] - 1, (map_box, review_box)  # side by side
    assert abs(review_box["y"] - map_box["y"]) <= 4, (map_box, review_box)  # tops aligned
    plot = page.locator(f"{h.MAP} .cleaner-map-plot").bounding_box()
    assert plot["y"] >= 0 and plot["y"] + plot["height"] <= 1000, plot  # the whole map in view
    _shot(page, "9_wide_side_by_side")


def test_wide_screen_map_stays_in_view_when_the_review_scrolls(app_server, page):
    _long_review_pane(page, app_server, 1600)
    _, review_box = _pane_boxes(page)
    assert review_box["height"] > 1500, review_box  # long enough to scroll
    page.mouse.move(review_box["x"] + review_box["width"] / 2, 500)
    page.mouse.wheel(0, 900)
    page.wait_for_function("() => document.querySelector('[data-testid=stMain]').scrollTop > 600")
    page.wait_for_timeout(200)  # one frame for the sticky position
    map_after, review_after = _pane_boxes(page)
    plot = page.locator(f"{h.MAP} .cleaner-map-plot").bounding_box()
    print(f"[e2e] scrolled: map pane {map_after}, review pane {review_after}, plot {plot}")
    _shot(page, "9_wide_scrolled")
    assert review_after["y"] < review_box["y"] - 600  # the review pane did scroll
    assert 0 <= map_after["y"] <= 120, f"the map pane scrolled away with the review: {map_after}"
    assert plot["y"] >= 0 and plot["y"] + plot["height"] <= 1000, f"the map is out of view: {plot}"


def test_narrow_screen_stacks_the_review_below_the_map(app_server, page):
    _long_review_pane(page, app_server, 900)
    map_box, review_box = _pane_boxes(page)
    print(f"[e2e] 900 px: map pane {map_box}, review pane {review_box}")
    _shot(page, "9_narrow")
    assert review_box["y"] >= map_box["y"] + map_box["height"] - 1, (
        f"at 900 px the review pane {review_box} is not below the map pane {map_box}"
    )
    assert abs(review_box["x"] - map_box["x"]) <= 4, (map_box, review_box)
