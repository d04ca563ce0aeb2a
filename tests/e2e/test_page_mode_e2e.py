"""The review queue's page mode and its keys in a real headless Chromium.

Expected outcomes come from the data: the small test dataset (three well separated classes, real PNGs) with labels
flipped on purpose, so the suspects, their stories and the labels their neighbours suggest are known in advance.

Run: python -m pytest -q tests/e2e/test_page_mode_e2e.py   (screenshots and the server log go to artifacts/e2e/)
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

QUEUE_LEFT = re.compile(r"flagged samples left to review")
STORY = re.compile(r"^Labelled (.+), the neighbours say (.+?) · (\d+) of (\d+) such suspects$")


# ---------------------------------------------------------------- helpers of this file (helpers.py is shared)


def _flipped_small(app_server, tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, dict[tuple[str, str], set[int]]]:
    """The small dataset with 8 cats labelled dog and 4 birds labelled cat: (npz, labels as uploaded, paths,
    planted rows by (label given, true label))."""
    with np.load(app_server.small.npz, allow_pickle=False) as z:
        emb, labels, paths = z["embeddings"], z["labels"].astype(str), z["image_paths"].astype(str)
    flipped = labels.copy()
    planted: dict[tuple[str, str], set[int]] = {}
    for true, given, count in (("cat", "dog", 8), ("bird", "cat", 4)):
        rows = np.flatnonzero(labels == true)[3 : 3 + 3 * count : 3]  # spread over the class
        flipped[rows] = given
        planted[(given, true)] = set(rows.tolist())
    npz = tmp_path / "flipped_small.npz"
    np.savez_compressed(npz, embeddings=emb, labels=flipped, image_paths=paths)
    return npz, flipped, paths, planted


def _upload(page, app_server, npz: Path, n: int) -> None:
    h.open_app(page, app_server.url)
    h.choose_data_source(page, "Upload an NPZ")
    h.file_input(page, "NPZ with embeddings").set_input_files(str(npz))
    h.expect_header(page, f"{npz.name} · {n:,} images", timeout=120_000)
    h.wait_map(page, n)
    # Until the UMAP map replaces the PCA preview its arrival reruns the whole page, which may come mid-test.
    expect(page.get_by_text(re.compile(r"PCA preview|its 2D version is computed"))).to_have_count(0, timeout=300_000)
    h.settle(page)


def _open_queue(page) -> None:
    """Click "Review queue" in the view switch and wait for it: the last thing the user did is that click."""
    h.open_review(page, "Review queue")
    expect(page.get_by_text(QUEUE_LEFT).first).to_be_visible(timeout=60_000)
    h.settle(page)


def _story(page) -> tuple[str, str, int, int]:
    text = page.get_by_text(STORY).first.inner_text().strip()
    m = STORY.fullmatch(text)
    assert m, text
    return m.group(1), m.group(2), int(m.group(3)), int(m.group(4))


def _page_cards(page, paths: np.ndarray) -> list[tuple[int, str]]:
    """The page's cards in page order: (dataset row, from its button's key; its button's text). Each card's image
    is checked to be that row's file."""
    found = page.evaluate("""() => Array.from(document.querySelectorAll('[class*="st-key-page_card_"]')).map(e => {
        const i = Number(Array.from(e.classList).find(c => c.startsWith('st-key-page_card_')).split('_').pop());
        const holder = e.querySelector('[class*="st-key-pg_"]');
        const key = Array.from(holder.classList).find(c => c.startsWith('st-key-pg_'));
        const img = e.querySelector('[data-testid=stImage] img');
        return [i, Number(key.split('_').pop()), holder.querySelector('button').innerText.trim(), img ? img.src : ''];
    })""")
    cards = []
    for _, row, button, src in sorted(found, key=lambda f: f[0]):
        assert h.similar_images(h.image_bytes(page, src), Path(paths[row])) > 0.9, (row, paths[row])
        cards.append((row, button))
    return cards


def _toggle_button(page, row: int):
    """A card's button (Streamlit draws a hidden copy of a button that has a tooltip: the first is the one seen)."""
    return page.locator(f".st-key-pg_{row} button").first


def _active_is_not_an_input(page) -> bool:
    return page.evaluate("() => !['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement.tagName)")


def _decisions_csv(page) -> list[dict[str, str]]:
    name, data = h.download(page, "All decisions")
    assert name == "cleaner_decisions.csv", name
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


# ---------------------------------------------------------------- tests


def test_x_excludes_the_first_card_right_after_the_queue_opens(app_server, page):
    """Issue 28, item 5: click "Review queue", press X, with no click between: the first card's image is excluded
    (before the fix the view switch's radio kept the focus and Streamlit ignored the key)."""
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    h.wait_map(page, len(labels))
    _open_queue(page)
    slots = h.queue_slots(page)
    first, left = slots[0], h.queue_left(page)
    assert _active_is_not_an_input(page), "the view switch still holds the keyboard focus"
    page.keyboard.press("x")
    expect(h.queue_card(page, first)).to_have_count(0)
    h.settle(page)
    assert h.queue_left(page) == left - 1
    h.expect_header(page, "· 1 excluded ·")
    assert [r["image_path"] for r in _decisions_csv(page)] == [paths[first]]


def test_a_page_applied_with_two_cards_kept_reaches_the_decisions_csv(app_server, page, tmp_path):
    """Page mode: a page shows one story (given label -> the label the neighbours say); two cards toggled to keep
    (one by a click, one by its number key); A applies the page; the decisions CSV holds every card as if decided
    one by one. Undo takes the whole page back; after reopening the queue, A works at once."""
    npz, given_labels, paths, planted = _flipped_small(app_server, tmp_path)
    _upload(page, app_server, npz, len(paths))
    _open_queue(page)
    assert h.queue_left(page) == sum(len(r) for r in planted.values())  # the flips, and nothing else, are flagged
    page.locator(".st-key-queue_mode button", has_text=re.compile(r"^Page$")).click()
    expect(page.locator(".st-key-btn_apply_page")).to_have_count(1, timeout=60_000)
    h.settle(page)
    given, said, shown, total = _story(page)
    story_rows = planted[(given, said)]  # the page tells one of the planted stories...
    cards = _page_cards(page, paths)
    assert {r for r, _ in cards} == story_rows and shown == total == len(story_rows)  # ...all of it, nothing else
    assert all(button.startswith("✓ Relabel") for _, button in cards), cards  # pre-ticked
    h.scroll_to_top(page.locator(".st-key-review_pane"))
    h.screenshot(page, "28_page_mode_before")

    kept = [cards[1][0], cards[2][0]]
    _toggle_button(page, kept[0]).click()  # a click on the card's button...
    expect(_toggle_button(page, kept[0])).to_have_text(re.compile(r"^Keep"))
    h.settle(page)
    page.keyboard.press("3")  # ...and the third card's number key
    expect(_toggle_button(page, kept[1])).to_have_text(re.compile(r"^Keep"))
    h.settle(page)
    n = len(cards)
    expect(page.locator(".st-key-btn_apply_page button").first).to_contain_text(
        f"Apply this page: relabel {n - 2} to {said}, keep 2"
    )
    page.keyboard.press("a")
    h.expect_header(page, f"· 0 excluded · {n - 2} relabelled · 2 kept")
    h.settle(page)
    h.screenshot(page, "28_page_mode_after")
    other_given, other_said, _, _ = _story(page)  # the next page tells the other planted story
    assert (other_given, other_said) != (given, said) and (other_given, other_said) in planted

    rows = _decisions_csv(page)
    assert [r["image_path"] for r in rows] == [paths[r] for r, _ in cards]  # in page order, one row per card
    for (row, _), got in zip(cards, rows):
        assert got["old_label"] == given_labels[row] == given and got["source"] == "queue", got
        if row in kept:
            assert (got["decision"], got["reason"], got["new_label"]) == ("keep", "kept after review", ""), got
        else:
            assert got["decision"] == "relabel" and got["new_label"] == said, got
            assert re.fullmatch(
                rf"label issue \d\.\d\d: \d+% of its neighbours say '{re.escape(said)}'", got["reason"]
            ), got  # the reason the card mode records

    page.keyboard.press("u")  # one undo takes the whole page back
    h.expect_header(page, "· 0 excluded · 0 relabelled · 0 kept")
    h.settle(page)
    assert _story(page)[:2] == (given, said)
    assert {r for r, _ in _page_cards(page, paths)} == story_rows

    h.open_review(page, "Selected images")  # away and back: the keys work right after the view switch
    _open_queue(page)
    assert _active_is_not_an_input(page), "the view switch still holds the keyboard focus"
    page.keyboard.press("a")  # the page again, every card ticked this time
    h.expect_header(page, f"· 0 excluded · {n} relabelled · 0 kept")
    rows = _decisions_csv(page)
    assert sorted(r["image_path"] for r in rows) == sorted(paths[r] for r in story_rows)
    assert {(r["decision"], r["new_label"], r["source"]) for r in rows} == {("relabel", said, "queue")}
