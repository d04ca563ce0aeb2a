"""Team mode (issue 29) in a real headless Chromium: two users signed in through the OpenID Connect test provider
review one dataset together. One's exclusion reaches the other's map, header and queue (which skips it and says
so); a disagreement shows in the Conflicts view, with who decided what, and is settled in one click; the downloads
say who decided each image.

Run: python -m pytest -q tests/e2e/test_team_e2e.py   (screenshots and the server log go to artifacts/e2e/)
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

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


def _disagree(ann, bob, attempts: int = 4) -> tuple[int, list[int]]:
    """A race: Ann excludes a card while Bob, whose page still shows it, keeps it. Both clicks go out at once; in
    the rare case Bob's page already dropped the card (Ann's decision reached it first, as it should), again with
    the next card both show. Returns the card they disagree on, and the cards Ann alone decided meanwhile."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    alone: list[int] = []
    for _ in range(attempts):
        shared = set(_slots(ann).values()) & set(_slots(bob).values())
        assert shared, "the two queues show no card in common"
        row = min(shared, key=lambda r: list(_slots(ann).values()).index(r))
        h.queue_button(ann, row, "Exclude").click()
        try:
            h.queue_button(bob, row, "Keep").click(timeout=5_000)
            return row, alone
        except PlaywrightTimeout:
            alone.append(row)
            h.settle(ann)
            h.settle(bob)
    raise AssertionError("Bob's page never still showed the card Ann had just decided")


def test_two_teammates_share_decisions_and_settle_a_conflict(signin_server, new_context):
    ann, bob = new_context().new_page(), new_context().new_page()
    for page, email in ((ann, ANN), (bob, BOB)):
        sign_in(page, signin_server, email)
        h.open_app(page, signin_server.url)
        h.expect_header(page, f"{DEMO_ROWS:,} images")
        expect(h.sidebar(page).get_by_text(re.compile(r"^Team mode: your decisions are shared"))).to_be_visible()
    _, paths = signin_server.demo()
    _open_queue(ann)
    _open_queue(bob)
    first, alone = _disagree(ann, bob)
    h.settle(ann)
    h.settle(bob)
    second = next(row for row in _slots(ann).values() if row != first)
    # Ann excludes another image: within seconds it is excluded on Bob's page too, and his queue skips it.
    h.queue_button(ann, second, "Exclude").click()
    h.settle(ann)
    ann_alone = [*alone, second]
    # The disputed image has whichever of the two decisions the server took last (the latest wins).
    n = len(ann_alone)
    h.expect_header(
        bob,
        re.compile(
            rf"· ({n} excluded · 0 relabelled · 1 kept|{n + 1} excluded · 0 relabelled · "
            r"0 kept)"
        ),
        timeout=120_000,
    )
    h.settle(bob)
    expect(bob.get_by_text(re.compile(rf"^Skipping ({n}|{n + 1}) images? a teammate decided"))).to_be_visible(
        timeout=120_000
    )
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
    expect(card.get_by_text(re.compile(rf"{re.escape(ANN)}: exclude"))).to_be_visible()
    expect(card.get_by_text(re.compile(rf"{re.escape(BOB)}: keep"))).to_be_visible()
    h.screenshot(ann, "team_2_conflicts_view")
    card.get_by_role("button", name="Settle: exclude").click()
    expect(ann.get_by_text("No conflicts: nobody disagrees on any image of this dataset.")).to_be_visible(
        timeout=120_000
    )
    h.screenshot(ann, "team_3_conflict_settled")

    # Bob's page follows; his downloads hold the team's decisions, each with who made it.
    h.expect_header(bob, f"· {len(ann_alone) + 1} excluded · 0 relabelled · 0 kept", timeout=120_000)
    h.settle(bob)
    rows = {r["image_path"]: (r["decision"], r["decided_by"]) for r in _decisions_csv(bob)}
    assert rows == {str(paths[row]): ("exclude", ANN) for row in [first, *ann_alone]}, rows
    # The card's history says who did what: Bob's queue now shows other images, each with its history button.
    h.open_review(bob, "Review queue")
    expect(bob.get_by_role("button", name=re.compile(r"^History \(\d+\)")).first).to_be_visible(timeout=120_000)
