"""Team mode (issue 29) in a real headless Chromium: two users signed in through the OpenID Connect test provider
review one dataset together. Their queues show them different suspects; one's exclusion reaches the other's map,
header and queue (which skips it and says so); a disagreement shows in the Conflicts view, with who decided what, and is settled in one click; the downloads
say who decided each image.

Run: python -m pytest -q tests/e2e/test_team_e2e.py   (screenshots and the server log go to artifacts/e2e/)
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
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
pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock is not installed (requirements-dev.txt)")
pytest.importorskip("authlib", reason="Streamlit's sign-in needs Authlib: pip install 'streamlit[auth]'")
pytest.importorskip("sqlalchemy", reason="the decision store needs SQLAlchemy 2 (requirements.txt)")

from playwright.sync_api import expect  # noqa: E402

from . import helpers as h  # noqa: E402
from .oidc_fixture import browser, oidc_provider, signin_server  # noqa: E402,F401  (fixtures for this module)
from .test_signin import sign_in  # noqa: E402

DEMO_ROWS = 1797
ANN, BOB = "ann@team.example", "bob@crew.example"
GALLERY_PAGE = 24  # cleaner.ui.gallery.PAGE_SIZE
QUEUE_WAIT_MS = 600_000  # the demo's neighbours and scores, computed once on two shared cores


def _open_queue(page) -> None:
    h.open_review(page, "Review queue")
    expect(page.get_by_text(re.compile(r"flagged samples left to review")).first).to_be_visible(timeout=QUEUE_WAIT_MS)
    h.settle(page)


def _slots(page) -> dict[int, int]:
    """Slot → row of the queue's cards that show an image (a decided card's place may stay empty)."""
    h.settle(page)
    found = page.evaluate("""() => Array.from(document.querySelectorAll('[class*="st-key-queue_slot_"]')).map(e => {
        const slot = Array.from(e.classList).find(c => c.startsWith('st-key-queue_slot_'));
        const btn = e.querySelector('[class*="st-key-q_excl_"]');
        const key = btn ? Array.from(btn.classList).find(c => c.startsWith('st-key-q_excl_')) : null;
        return [slot, key];
    })""")
    return {int(slot.rsplit("_", 1)[1]): int(key.rsplit("_", 1)[1]) for slot, key in found if key}


def _decisions_csv(page) -> list[dict]:
    _, data = h.download(page, "All decisions")
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def _exclude_in_gallery(page, labels, paths, row: int) -> None:
    """Exclude one image from the gallery, as a person does: select its class, turn to the page that shows it (the
    class's images in the dataset's order, GALLERY_PAGE a page), and tick its Exclude box."""
    h.open_review(page, "Selected images")
    members = np.flatnonzero(labels == labels[row]).tolist()
    h.select_class(page, str(labels[row]), len(members))
    number = members.index(row) // GALLERY_PAGE + 1
    if number > 1:
        before = h.gallery_items(page)[0]["file"]
        box = page.get_by_role("spinbutton", name=re.compile(r"^Page \(of \d+\)"))
        box.fill(str(number))
        box.press("Enter")
        page.wait_for_function(
            """before => { const t = Array.from(document.querySelectorAll('[data-testid=stText]'))
                .find(e => e.innerText.startsWith('label: ')); return t && !t.innerText.endsWith(before); }""",
            arg=before,
        )
        h.settle(page)
    h.tick(page, os.path.basename(str(paths[row])))
    h.settle(page)


def test_two_teammates_share_decisions_and_settle_a_conflict(signin_server, new_context):
    ann, bob = new_context().new_page(), new_context().new_page()
    for page, email in ((ann, ANN), (bob, BOB)):
        sign_in(page, signin_server, email)
        h.open_app(page, signin_server.url)
        h.expect_header(page, f"{DEMO_ROWS:,} images")
        expect(h.sidebar(page).get_by_text(re.compile(r"^Team mode: your decisions are shared"))).to_be_visible()
    labels, paths = signin_server.demo()
    _open_queue(ann)
    _open_queue(bob)
    # One queue, two people: the demo's few suspects are all on Ann's cards, so Bob is shown none, and told why.
    ann_cards = _slots(ann)
    left = h.queue_left(ann)
    assert 1 < len(ann_cards) == left <= 6
    assert _slots(bob) == {}
    expect(bob.get_by_text(f"Skipping {left} on a teammate's cards now.", exact=True)).to_be_visible()
    expect(
        bob.get_by_text(re.compile(rf"^The {left} flagged samples left in this order are on teammates' cards"))
    ).to_be_visible()
    h.screenshot(bob, "team_0_bob_is_shown_other_suspects")

    # A disagreement: Ann keeps her first card; Bob, looking through its class in the gallery, excludes it.
    first, second = ann_cards[0], ann_cards[1]
    h.queue_button(ann, first, "Keep").click()
    expect(ann.get_by_text(re.compile(r"^Your last decision: kept "))).to_be_visible(timeout=60_000)
    h.settle(ann)
    _exclude_in_gallery(bob, labels, paths, first)
    h.expect_header(bob, "· 1 excluded · 0 relabelled · 0 kept", timeout=120_000)
    # Ann excludes another image on her cards: within seconds it is excluded on Bob's page too, and his queue skips it.
    h.queue_button(ann, second, "Exclude").click()
    h.settle(ann)
    ann_alone = [second]
    h.expect_header(bob, "· 2 excluded · 0 relabelled · 0 kept", timeout=120_000)
    h.settle(bob)
    h.open_review(bob, "Review queue")
    expect(bob.get_by_text(re.compile(r"^Skipping 1 image a teammate decided"))).to_be_visible(timeout=120_000)
    assert second not in _slots(bob).values()
    marks = h.map_marks(bob)  # Bob's map draws Ann's exclusion
    assert second in marks["excluded"], marks
    h.screenshot(bob, "team_1_bob_sees_ann_exclusion")

    # The disagreement is listed for either of them, with who decided what; Ann settles it in one click.
    ann.reload()
    h.open_app(ann, signin_server.url)
    h.open_review(ann, "Conflicts")
    card = ann.locator(f".st-key-conflict_{first}")
    expect(card).to_be_visible(timeout=120_000)
    expect(card.get_by_text(re.compile(rf"{re.escape(ANN)}: keep"))).to_be_visible()
    expect(card.get_by_text(re.compile(rf"{re.escape(BOB)}: exclude"))).to_be_visible()
    h.screenshot(ann, "team_2_conflicts_view")
    card.get_by_role("button", name="Settle: exclude").click()
    expect(ann.get_by_text("No conflicts: nobody disagrees on any image of this dataset.")).to_be_visible(
        timeout=120_000
    )
    h.screenshot(ann, "team_3_conflict_settled")

    # Bob's page follows; his downloads hold the team's decisions, each with who made it.
    h.expect_header(bob, f"· {len(ann_alone) + 1} excluded · 0 relabelled · 0 kept", timeout=120_000)
    # Ann's settling is the disputed image's latest decision: it reaches Bob's page at his next sync (every 10 s).
    expected = {str(paths[row]): ("exclude", ANN) for row in [first, *ann_alone]}
    deadline = time.monotonic() + 120
    while True:
        h.settle(bob)
        rows = {r["image_path"]: (r["decision"], r["decided_by"]) for r in _decisions_csv(bob)}
        if rows == expected or time.monotonic() > deadline:
            break
        bob.wait_for_timeout(2_000)
    assert rows == expected, rows
    # The card's history says who did what: Ann's queue shows her cards, each with its history button.
    h.open_review(ann, "Review queue")
    expect(ann.get_by_role("button", name=re.compile(r"^History \(\d+\)")).first).to_be_visible(timeout=120_000)
