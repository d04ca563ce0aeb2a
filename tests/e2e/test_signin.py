"""Sign-in (issue 17) in a real headless Chromium against a real OpenID Connect provider on loopback.

The app server has `[auth]` in its secrets and CLEANER_ALLOWED_USERS = "ann@team.example, @crew.example".
Run: python -m pytest -q tests/e2e/test_signin.py   (screenshots and the server log go to artifacts/e2e/)
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from urllib.parse import urlparse

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

from playwright.sync_api import expect  # noqa: E402

from . import helpers as h  # noqa: E402
from .oidc_fixture import browser, oidc_provider, signin_server  # noqa: E402,F401  (fixtures for this module)

DEMO_ROWS = 1797
ABOUT_START = "cleaner shows a team's training images"
# Text only the app itself sends: if any of it reaches a visitor who is not let in, the gate leaked.
APP_ONLY_TEXT = (
    "Select class",
    "Exclusion list",
    "Demo (digits)",
    "Server folder",
    "small_images",
    "label: ",
    "/media/",
)


class Traffic:
    """Everything the server sends a page: HTTP responses and WebSocket frames (Streamlit's own messages)."""

    def __init__(self, page) -> None:
        self.responses: list[tuple[str, int, str]] = []
        self.frames: list[bytes] = []
        page.on("response", lambda r: self.responses.append((r.url, r.status, r.headers.get("content-type", ""))))
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        self.frames.append(payload if isinstance(payload, bytes) else str(payload).encode())

    def media(self) -> list[tuple[str, int, str]]:
        """The app's media files (Streamlit's own fonts live under /static/media/, part of the empty page)."""
        return [r for r in self.responses if urlparse(r[0]).path.startswith("/media/")]

    def images(self) -> list[tuple[str, int, str]]:
        # Streamlit's own favicon is part of its static page, not the app's data.
        return [r for r in self.responses if r[2].startswith("image/") and not r[0].endswith("/favicon.png")]

    def leaked(self) -> list[str]:
        data = b"".join(self.frames)
        return [text for text in APP_ONLY_TEXT if text.encode() in data]


def _shot(page, name: str) -> None:
    print(f"[e2e] screenshot {h.screenshot(page, name)}")


def _script_done(page) -> None:
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=stApp]');"
        " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }",
        timeout=120_000,
    )


def expect_sign_in_page(page) -> None:
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile("^" + re.escape(ABOUT_START)))).to_be_visible()
    _script_done(page)
    assert page.get_by_role("button").filter(visible=True).count() == 1, "the sign-in page has one button"
    assert not page.locator(f"{h.HEADER}, [data-testid=stImage], [data-testid=stSidebar]").count()


def sign_in(page, server, email: str) -> None:
    """What a person does: the app's Sign in button, then the provider's form (type who you are, Authorize)."""
    page.goto(server.url)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(f"{server.provider.url}/oauth2/authorize**")
    page.locator("input[name=sub]").fill(email)
    page.get_by_role("button", name="Authorize", exact=True).click()
    page.wait_for_url(f"{server.url}/**")


def sign_out(page, server, button) -> None:
    """The app's Sign out button, then the provider's end-of-session page, back to the app."""
    button.click()
    page.wait_for_url(f"{server.provider.url}/oauth2/end_session**")
    page.get_by_role("button", name="End session", exact=True).click()
    page.wait_for_url(f"{server.url}/**")


def _download(page, name: str) -> tuple[str, str]:
    button = page.get_by_role("button", name=re.compile(rf"^{re.escape(name)}"))
    button.scroll_into_view_if_needed()
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.failure() is None, download.failure()
    return download.suggested_filename, Path(download.path()).read_text(encoding="utf-8")


# ---------------------------------------------------------------- 1. anonymous visitor


def test_a_visitor_not_signed_in_gets_only_the_sign_in_page(signin_server, page):
    traffic = Traffic(page)
    page.goto(signin_server.url)
    expect_sign_in_page(page)
    page.wait_for_timeout(1_000)  # anything the server would still push after the run ends
    _shot(page, "signin_1_anonymous")
    assert not traffic.media(), traffic.media()
    assert not traffic.images(), traffic.images()
    assert traffic.frames, "the page never talked to the server: the check below would prove nothing"
    assert not traffic.leaked(), f"the server sent app content to a visitor who is not signed in: {traffic.leaked()}"
    body = page.locator("body").inner_text()
    assert "Select class" not in body and "Images" not in body


# ---------------------------------------------------------------- 2. allowed user: select, exclude, download


def test_an_allowed_user_signs_in_excludes_an_image_and_downloads_the_list(signin_server, page):
    traffic = Traffic(page)
    sign_in(page, signin_server, "ann@team.example")
    h.open_app(page, signin_server.url)
    h.expect_header(page, f"{DEMO_ROWS:,} images")
    expect(h.sidebar(page).get_by_text("Signed in as ann@team.example", exact=True)).to_be_visible()
    expect(h.sidebar(page).get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    labels, paths = signin_server.demo()
    by_name = {os.path.basename(p): p for p in paths}
    h.select_class(page, "3", int((labels == "3").sum()))
    chosen = h.gallery_items(page)[2]["file"]
    h.tick(page, chosen)
    h.expect_header(page, "· 1 excluded ·")
    h.settle(page)
    name, text = _download(page, "Exclusion list")
    assert re.fullmatch(r"images_to_exclude_from_training_\d{4}_\d{2}_\d{2}\.txt", name), name
    assert text == by_name[chosen] + "\n", text
    _, decisions = _download(page, "All decisions")
    rows = list(csv.DictReader(io.StringIO(decisions)))
    assert [(r["image_path"], r["decision"], r["decided_by"]) for r in rows] == [
        (by_name[chosen], "exclude", "ann@team.example")
    ], decisions
    h.scroll_to_top(page.get_by_text(re.compile(r"^Selected: ")))
    _shot(page, "signin_2_allowed_user_gallery")

    # Streamlit's media endpoint serves a /media/ URL to anyone holding it, signed in or not; the app sends every
    # thumbnail inline instead, so no image ever had such a URL (the clicked downloads did: Streamlit serves them so).
    srcs = h.gallery_images(page)
    assert srcs and all(src.startswith("data:image/png;base64,") for src in srcs), srcs[:3]
    served = traffic.media()
    assert served and all(kind.startswith(("text/plain", "text/csv")) for _, _, kind in served), served


# ---------------------------------------------------------------- 3. a user not on the list


def test_a_user_not_on_the_list_is_refused_and_can_sign_out(signin_server, page):
    traffic = Traffic(page)
    sign_in(page, signin_server, "eve@elsewhere.example")
    refusal = page.get_by_text(re.compile(r"You are signed in as eve@elsewhere\.example, which is not on"))
    expect(refusal).to_be_visible(timeout=120_000)
    _script_done(page)
    page.wait_for_timeout(1_000)
    _shot(page, "signin_3_refused")
    buttons = page.get_by_role("button").filter(visible=True)
    assert buttons.count() == 1 and buttons.first.inner_text().strip() == "Sign out"
    assert not page.locator(f"{h.HEADER}, [data-testid=stImage]").count()
    assert not traffic.media() and not traffic.images(), (traffic.media(), traffic.images())
    assert not traffic.leaked(), f"the server sent app content to a refused user: {traffic.leaked()}"
    sign_out(page, signin_server, buttons.first)
    expect_sign_in_page(page)


def test_an_address_the_provider_calls_unverified_is_refused(signin_server, page):
    signin_server.provider.set_user("ann-unverified", {"email": "ann@team.example", "email_verified": False})
    sign_in(page, signin_server, "ann-unverified")
    expect(page.get_by_text(re.compile(r"did not give this app a verified e-mail address"))).to_be_visible(
        timeout=120_000
    )
    assert not page.locator(h.HEADER).count()


# ---------------------------------------------------------------- 4. sign-out


def test_a_domain_user_signs_in_and_sign_out_returns_to_the_sign_in_page(signin_server, page):
    sign_in(page, signin_server, "Bob@Crew.example")
    h.open_app(page, signin_server.url)
    expect(h.sidebar(page).get_by_text("Signed in as bob@crew.example", exact=True)).to_be_visible()
    sign_out(page, signin_server, h.sidebar(page).get_by_role("button", name="Sign out", exact=True))
    expect_sign_in_page(page)
    _shot(page, "signin_4_signed_out")
    page.reload()  # the identity cookie is gone, not just this session's copy of it
    expect_sign_in_page(page)
