"""A click is never lost to the whole-page rerun that follows it, in headless Chromium.

Found under load (bench/load.py --team): a decision's click reached the server while another run was going, so it
waited as the next request, and a whole-page rerun request came just after it (the map asking for its data again).
Two ways lost the click:
- Streamlit's fast reruns replaced the waiting request with the new one, so the click's callback never ran
  (.streamlit/config.toml turns them off);
- a callback that read `st.session_state` first was stopped there for the rerun request, before it recorded
  anything (callbacks are handed the session's DatasetWork instead).
This test makes that order of messages happen on purpose: it holds the page's messages to the server and lets
them go together.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from . import helpers as h

# The page's messages to the server can be held, then sent in one go (they reach the server back to back, as they
# do from a busy browser). In the page itself: its WebSocket's send is wrapped before Streamlit's script runs.
HOLD_SCRIPT = """
(() => {
  const send = WebSocket.prototype.send;
  window.__held = [];
  window.__hold = false;
  WebSocket.prototype.send = function (data) {
    if (window.__hold && String(this.url).endsWith("/_stcore/stream")) { window.__held.push([this, data]); return; }
    return send.call(this, data);
  };
  window.__release = () => {
    const out = window.__held.splice(0, window.__held.length);
    for (const [ws, data] of out) send.call(ws, data);
  };
})();
"""


def test_a_click_waiting_behind_a_run_survives_a_whole_page_rerun(app_server, new_context):
    page = new_context().new_page()
    page.add_init_script(HOLD_SCRIPT)
    h.open_app(page, app_server.url)
    h.open_review(page, "Review queue")
    expect(page.get_by_text(re.compile(r"flagged samples left to review"))).to_be_visible(timeout=60_000)
    h.settle(page)
    slots = h.queue_slots(page)
    excluded = slots[0]
    h.expect_header(page, "· 0 excluded · 0 relabelled · 0 kept")

    # Switch the map to 2D (a whole-page run), exclude a card (a run of the queue) and switch the view (a whole-page
    # rerun request): three messages that reach the server back to back, so the exclusion's request waits behind
    # the map switch's when the view switch's arrives. (The map switch is a value, which every later message
    # repeats; the exclusion is a click, sent once.)
    page.evaluate("() => { window.__hold = true; }")
    h.choose_map_view(page, "2D")
    h.queue_button(page, excluded, "Exclude").click()
    page.locator(".st-key-review_view label").filter(has_text=re.compile(r"^Class confusion$")).click()
    page.wait_for_function("() => window.__held.length >= 3", timeout=30_000)  # one message per action
    page.evaluate("() => { window.__hold = false; window.__release(); }")

    h.expect_header(page, "· 1 excluded · 0 relabelled · 0 kept")
    h.settle(page)
    h.open_review(page, "Review queue")
    expect(page.get_by_text(re.compile(r"· 1 decided · 1 excluded$"))).to_be_visible()
    expect(page.locator(f".st-key-q_excl_{excluded}")).to_have_count(0)  # decided: its place went to another
    labels, _ = app_server.demo()
    h.wait_map(page, len(labels), dims=2)  # and the map switch was not lost either
