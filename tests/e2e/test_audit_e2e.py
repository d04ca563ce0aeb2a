"""The random audit in a real headless Chromium: a person judges sampled images, reads what they say about the
whole dataset, and compares a model trained before and after cleaning.

Expected values are computed here from the demo NPZ the app wrote (the sample from its seeded permutation, the
Wilson intervals from their formula, the probe's accuracies from the decisions file the page hands back).
"""

from __future__ import annotations

import csv
import io
import math
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

from cleaner.decisions.effect import effect_report  # noqa: E402
from cleaner.decisions.records import parse_decisions  # noqa: E402
from cleaner.io.dataset import load_npz  # noqa: E402

from . import helpers as h  # noqa: E402


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


def _audit_button(page, row: int, name: str):
    key = {"Correct": "a_keep", "Exclude": "a_excl", "Relabel": "a_relabel"}[name]
    return page.locator(f".st-key-{key}_{row} button")


def _audit_rows_shown(page, cards: int = 6) -> set[int]:
    """The dataset rows of the audit cards on the page, once the page shows all `cards` of them (a rerun draws the
    cards one after another)."""
    expect(page.locator('[class*="st-key-a_keep_"]')).to_have_count(cards, timeout=60_000)
    keys = page.evaluate("""() => Array.from(document.querySelectorAll('[class*="st-key-a_keep_"]'))
        .map(e => Array.from(e.classList).find(c => c.startsWith('st-key-a_keep_')))""")
    return {int(k.rsplit("_", 1)[1]) for k in keys}


def test_an_audit_estimates_the_bad_images_left_and_compares_a_model_before_and_after(app_server, page):
    h.open_app(page, app_server.url)
    labels, paths = app_server.demo()
    n = len(labels)
    h.wait_map(page, n)
    h.open_review(page, "Audit")
    page.get_by_role("button", name=re.compile(r"^Start an audit of 100 random images")).click()
    h.settle(page)
    sample = np.random.default_rng(0).permutation(n)[:100].tolist()  # the documented seeded uniform sample
    expect(_audit_button(page, sample[0], "Exclude")).to_be_visible(timeout=60_000)
    assert _audit_rows_shown(page) == set(sample[:6])

    verdicts = {
        sample[0]: "Exclude",
        sample[1]: "Correct",
        sample[2]: "Exclude",
        sample[3]: "Correct",
        sample[4]: "Correct",
    }
    for row, name in verdicts.items():
        _audit_button(page, row, name).click()
        expect(_audit_button(page, row, name)).to_have_count(0)
        h.settle(page)
    bad = sum(v == "Exclude" for v in verdicts.values())
    rate, low, high = _wilson(bad, len(verdicts))
    figures = page.get_by_text(re.compile(r"^Of 5 audited images")).first
    expect(figures).to_be_visible()
    text = figures.inner_text()
    assert f"about {100 * rate:.1f}% bad ({100 * low:.1f}%–{100 * high:.1f}%)" in text, text
    assert f"About {round(n * rate):,} bad images left" in text, text  # nothing else decided: every one is left
    assert _audit_rows_shown(page) == set(sample[5:11])
    h.scroll_to_top(page.locator(".st-key-review_pane"))
    print(f"[e2e] screenshot {h.screenshot(page, 'audit_panel')}")

    page.get_by_role("button", name="Compare the models").click()
    before = page.get_by_test_id("stMetric").filter(has_text="Before cleaning")
    expect(before).to_be_visible(timeout=300_000)
    h.settle(page)
    shown = {
        label: page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue").inner_text()
        for label in ("Before cleaning", "After cleaning")
    }

    name, data = h.download(page, "All decisions")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    audited = {r["image_path"]: r["audit_verdict"] for r in rows if r["audit_verdict"]}
    assert audited == {paths[row]: ("exclude" if v == "Exclude" else "keep") for row, v in verdicts.items()}
    dataset = load_npz(sorted((app_server.cache_dir / "demo").glob("*.npz"))[-1])
    report = effect_report(dataset, parse_decisions(data).as_decisions(), None)
    assert report.probe.trusted_rows == len(verdicts) - bad  # the kept ones: an excluded image has no true label
    assert shown["Before cleaning"] == f"{report.probe.accuracy_before:.3f}"
    assert shown["After cleaning"] == f"{report.probe.accuracy_after:.3f}"
    print(f"[e2e] screenshot {h.screenshot(page, 'audit_model_comparison')}")
