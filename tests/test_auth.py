"""Who gets in: the CLEANER_ALLOWED_USERS allow-list, finding `[auth]` in the secrets, and the gate's pages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cleaner.server.config import ENV_ALLOWED_USERS, load_settings, parse_allowed_users
from cleaner.ui.auth import OPEN_NOTE, authlib_installed, is_allowed, providers

REPO = Path(__file__).resolve().parents[1]
AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "s" * 32,
    "client_id": "cleaner",
    "client_secret": "x",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


# ---------------------------------------------------------------- parsing the allow-list


def test_allow_list_splits_on_commas_and_whitespace_lower_cases_and_drops_repeats():
    raw = " Ann@Team.Example,@Crew.example\n bob@x.io\t,, ann@team.example "
    assert parse_allowed_users(raw) == ("ann@team.example", "@crew.example", "bob@x.io")


def test_empty_allow_list_is_empty():
    assert parse_allowed_users("") == ()
    assert parse_allowed_users(" ,  \n") == ()
    assert load_settings({}).allowed_users == ()


def test_settings_read_the_allow_list_from_the_environment():
    assert load_settings({ENV_ALLOWED_USERS: "ann@team.example @crew.example"}).allowed_users == (
        "ann@team.example",
        "@crew.example",
    )


def test_star_lets_in_anyone_signed_in():
    assert parse_allowed_users("*") == ("*",)


@pytest.mark.parametrize("bad", ["ann", "@", "ann@", "@crew@example", "a@b@c", "team.example"])
def test_an_entry_that_is_neither_address_nor_domain_is_refused_with_its_name(bad):
    with pytest.raises(ValueError, match=ENV_ALLOWED_USERS) as info:
        parse_allowed_users(f"ok@team.example, {bad}")
    assert repr(bad.lower()) in str(info.value)


# ---------------------------------------------------------------- matching

ALLOWED = parse_allowed_users("ann@team.example, @crew.example")


@pytest.mark.parametrize(
    "email", ["ann@team.example", "ANN@Team.Example", " ann@team.example ", "bob@crew.example", "Zed@CREW.example"]
)
def test_listed_addresses_and_whole_domains_get_in(email):
    assert is_allowed(email, ALLOWED)


@pytest.mark.parametrize(
    "email",
    [
        "bob@team.example",  # same domain as a listed address, but only that address is listed
        "ann@team.example.evil",  # a listed address as a prefix
        "ann@eng.crew.example",  # a subdomain is another domain
        "bob@evilcrew.example",  # a listed domain as a suffix
        "crew.example",  # no address at all
        "@crew.example",  # a domain is not an address
        "ann@team.example@evil.example",
        "",
    ],
)
def test_everyone_else_is_refused(email):
    assert not is_allowed(email, ALLOWED)


def test_no_allow_list_lets_nobody_in_and_star_lets_in_every_address():
    assert not is_allowed("ann@team.example", ())
    assert is_allowed("anyone@anywhere.example", ("*",))
    assert not is_allowed("not-an-address", ("*",))


def test_providers_flat_section_or_named_sections():
    assert providers(AUTH) == [None]
    shared = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": AUTH["cookie_secret"]}
    named = {**shared, "google": dict(AUTH), "microsoft": dict(AUTH)}
    assert providers(named) == ["google", "microsoft"]
    assert providers(shared) == []


# ---------------------------------------------------------------- finding [auth] in a real secrets file

_PROBE = (
    "from cleaner.ui import auth\n"
    "try:\n    print(repr(auth.auth_section()))\n"
    "except auth.AuthConfigError as exc:\n    print('REFUSED', exc)\n"
)


def _probe(tmp_path: Path, secrets: str | None) -> str:
    """auth_section() in a fresh process whose only secrets file is the one written here (if any)."""
    (tmp_path / ".streamlit").mkdir()
    if secrets is not None:
        (tmp_path / ".streamlit" / "secrets.toml").write_text(secrets, encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.strip()


def test_no_secrets_file_means_open(tmp_path):
    assert _probe(tmp_path, None) == "None"


def test_secrets_without_auth_mean_open(tmp_path):
    assert _probe(tmp_path, 'api_key = "x"\n') == "None"


def test_auth_section_is_found(tmp_path):
    assert "'client_id': 'cleaner'" in _probe(tmp_path, '[auth]\nclient_id = "cleaner"\n')


def test_an_unreadable_secrets_file_refuses_rather_than_opening_the_app(tmp_path):
    assert _probe(tmp_path, "[auth\nclient_id = \n").startswith("REFUSED The secrets file could not be read")


# ---------------------------------------------------------------- the gate's pages (AppTest)


def _gated_app(allowed: str) -> None:
    import streamlit as st

    from cleaner.server.config import load_settings
    from cleaner.ui.auth import gate

    email = gate(load_settings({"CLEANER_ALLOWED_USERS": allowed}))
    st.write(f"THE APP for {email!r}")


def run_gate(
    allowed: str = "ann@team.example, @crew.example", user: dict | None = None, auth: dict | None = AUTH
) -> AppTest:
    at = AppTest.from_function(_gated_app, kwargs={"allowed": allowed}, default_timeout=60)
    # Secrets given here replace every secrets file, so a developer's own ~/.streamlit cannot leak in.
    at.secrets = {"auth": auth} if auth is not None else {"unrelated": "x"}
    at.user = user if user is not None else {"is_logged_in": False}
    at.run()
    assert not at.exception, at.exception
    return at


def plain(markdown: str) -> str:
    """What the reader sees of escaped Markdown."""
    return markdown.replace("\\", "")


def app_shown(at: AppTest) -> bool:
    return any(m.value.startswith("THE APP") for m in at.markdown)


def test_without_auth_the_app_is_open_and_says_so_in_the_sidebar():
    at = run_gate(auth=None)
    assert [m.value for m in at.markdown] == ["THE APP for ''"]
    assert [c.value for c in at.sidebar.caption] == [OPEN_NOTE]
    assert "open to anyone who can reach this server" in OPEN_NOTE


needs_authlib = pytest.mark.skipif(
    not authlib_installed(),
    reason="Authlib is not installed: pip install 'streamlit[auth]' (Streamlit's sign-in needs it)",
)


def test_without_authlib_sign_in_is_not_attempted_and_the_page_says_what_to_install(monkeypatch):
    monkeypatch.setattr("cleaner.ui.auth.authlib_installed", lambda: False)
    at = run_gate(user={"is_logged_in": True, "email": "ann@team.example"})
    assert not app_shown(at) and not at.button
    assert 'pip install "streamlit[auth]"' in plain(at.error[0].value)


@needs_authlib
def test_a_visitor_not_signed_in_sees_one_sign_in_button_and_nothing_of_the_app():
    at = run_gate()
    assert not app_shown(at)
    assert [b.label for b in at.button] == ["Sign in"]
    assert len(at.markdown) == 1 and "training images" in at.markdown[0].value
    assert not at.sidebar.caption and not at.error


@needs_authlib
def test_named_providers_get_a_button_each():
    named = {
        "redirect_uri": AUTH["redirect_uri"],
        "cookie_secret": AUTH["cookie_secret"],
        "google": dict(AUTH),
        "okta": dict(AUTH),
    }
    at = run_gate(auth=named)
    assert [b.label for b in at.button] == ["Sign in with google", "Sign in with okta"]


@needs_authlib
def test_an_allowed_user_gets_the_app_their_address_and_a_sign_out_button():
    at = run_gate(user={"is_logged_in": True, "email": "Bob@Crew.example", "email_verified": True})
    assert [m.value for m in at.markdown] == ["THE APP for 'bob@crew.example'"]
    assert [plain(c.value) for c in at.sidebar.caption] == ["Signed in as bob@crew.example"]
    assert [b.label for b in at.sidebar.button] == ["Sign out"]


@needs_authlib
def test_a_user_not_on_the_list_is_refused_with_only_a_sign_out_button():
    at = run_gate(user={"is_logged_in": True, "email": "eve@elsewhere.example"})
    assert not app_shown(at)
    assert len(at.error) == 1 and "eve@elsewhere.example" in plain(at.error[0].value)
    assert "not on this server's list" in plain(at.error[0].value)
    assert [b.label for b in at.button] == ["Sign out"]


@needs_authlib
def test_an_address_the_provider_calls_unverified_is_refused():
    at = run_gate(user={"is_logged_in": True, "email": "ann@team.example", "email_verified": False})
    assert not app_shown(at)
    assert "verified e-mail address" in plain(at.error[0].value)


@needs_authlib
def test_an_account_without_an_address_is_refused():
    at = run_gate(user={"is_logged_in": True, "sub": "12345"})
    assert not app_shown(at)
    assert [b.label for b in at.button] == ["Sign out"]


@needs_authlib
def test_with_sign_in_but_no_allow_list_nobody_gets_in_and_the_page_says_what_to_set():
    at = run_gate(allowed="", user={"is_logged_in": True, "email": "ann@team.example"})
    assert not app_shown(at)
    assert ENV_ALLOWED_USERS in plain(at.error[0].value)


@needs_authlib
def test_star_lets_in_every_signed_in_user():
    at = run_gate(allowed="*", user={"is_logged_in": True, "email": "anyone@anywhere.example"})
    assert app_shown(at)


@needs_authlib
def test_the_address_is_shown_as_written_not_as_markdown():
    at = run_gate(user={"is_logged_in": True, "email": "[eve](http://x.example)*@elsewhere.example"})
    assert r"\[eve\]\(http\:" in at.error[0].value and r"\*@elsewhere\.example" in at.error[0].value
