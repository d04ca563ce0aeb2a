"""Who may use the app: Streamlit's own sign-in (`st.login`, OpenID Connect) when `[auth]` is configured, plus
the `CLEANER_ALLOWED_USERS` allow-list. Without `[auth]` the app is open, and says so.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import NoReturn

import streamlit as st

from cleaner.server.config import ALLOW_ANY_SIGNED_IN, ENV_ALLOWED_USERS, Settings
from cleaner.server.errors import CleanerError
from cleaner.server.text import one_line, shown
from cleaner.ui.text import literal

ABOUT = (
    "cleaner shows a team's training images so its members can find and exclude the mislabeled, "
    "corrupted and off-topic ones."
)
OPEN_NOTE = "Sign-in is off: this app is open to anyone who can reach this server."


class AuthConfigError(CleanerError, RuntimeError):
    """A secrets file exists but cannot be read: refuse to serve rather than fall back to an open app."""


def is_allowed(email: str, allowed: tuple[str, ...]) -> bool:
    """True when the address, or its whole domain, is on the allow-list (already lower-cased), or it has `*`."""
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not (at and local and domain) or "@" in local:
        return False  # no usable address: nothing on the list can vouch for it
    if ALLOW_ANY_SIGNED_IN in allowed:
        return True
    return email in allowed or f"@{domain}" in allowed


def auth_section() -> Mapping[str, object] | None:
    """The secrets' `[auth]` table, or None when sign-in is not configured (no secrets file, or no `[auth]`)."""
    try:
        if "auth" not in st.secrets:
            return None
        section = st.secrets["auth"]
    except FileNotFoundError as exc:  # Streamlit's "no secrets" error; it is also raised for an unreadable file
        if any(os.path.isfile(path) for path in _secrets_files()):
            raise AuthConfigError(f"The secrets file could not be read, so the app will not start: {exc}") from exc
        return None
    if not isinstance(section, Mapping):
        raise AuthConfigError("`auth` in the secrets file must be a table: `[auth]` followed by its keys.")
    return section


def authlib_installed() -> bool:
    """Streamlit's sign-in needs Authlib (the `streamlit[auth]` extra); without it `st.login` fails."""
    return importlib.util.find_spec("authlib") is not None


def _secrets_files() -> list[str]:
    files = st.get_option("secrets.files") or []
    return [str(path) for path in files]


def providers(section: Mapping[str, object]) -> list[str | None]:
    """What to pass to `st.login`: None for the single provider written straight under `[auth]`, else each
    `[auth.<name>]` table's name."""
    if "client_id" in section:
        return [None]
    return [name for name, value in section.items() if isinstance(value, Mapping) and "client_id" in value]


def _signed_in_email() -> str:
    """The verified e-mail the provider vouched for, or "" when it gave none (or said it is unverified)."""
    email = st.user.get("email")
    if not isinstance(email, str):
        return ""
    # Providers that check addresses say so; an address they say is unverified could be anyone's.
    if st.user.get("email_verified") in (False, "false"):
        return ""
    return email.strip().lower()


def _sign_in_page(section: Mapping[str, object]) -> None:
    st.title("cleaner")
    st.write(ABOUT + " Sign in to continue.")
    names = providers(section)
    if not names:
        st.error(
            "Sign-in is configured without a provider: `[auth]` in the secrets file needs `client_id`, "
            "`client_secret` and `server_metadata_url`."
        )
        return
    for name in names:
        label = "Sign in" if name is None or len(names) == 1 else f"Sign in with {name}"
        if st.button(label, type="primary", key=f"sign_in_{name or ''}"):
            st.login(name)


def _refusal(email: str, settings: Settings) -> None:
    st.title("cleaner")
    who = literal(shown(email))  # the provider's claim, shown as written (no Markdown, no link)
    if not email:
        st.error(
            "Your account did not give this app a verified e-mail address, so it cannot tell whether you "
            "are on the team's list. Sign out and sign in with your team account."
        )
    elif not settings.allowed_users:
        st.error(
            f"You are signed in as {who}, but nobody has been let in yet: the server's administrator has "
            f"to list the team in {ENV_ALLOWED_USERS} (addresses or @domain entries)."
        )
    else:
        st.error(
            f"You are signed in as {who}, which is not on this server's list of users. "
            "Ask the server's administrator to add you, or sign out and use another account."
        )
    if st.button("Sign out", key="sign_out_refused"):
        st.logout()


def _stop_with(message: str) -> NoReturn:
    """A configuration error the administrator must fix: say it, and serve nothing else."""
    st.title("cleaner")
    st.error(message)
    st.stop()


def gate(settings: Settings) -> str:
    """The signed-in, allowed user's e-mail ("" when sign-in is off); anyone else gets the sign-in page or a
    refusal, and the script stops there so nothing of the app is sent."""
    try:
        section = auth_section()
    except AuthConfigError as exc:
        _stop_with(literal(one_line(exc, limit=400)))
    if section is None:
        st.sidebar.caption(OPEN_NOTE)
        return ""
    if not authlib_installed():
        _stop_with(
            "Sign-in is configured in the secrets file, but this server lacks Authlib, which Streamlit's "
            'sign-in needs: install it with pip install "streamlit[auth]".'
        )
    if not st.user.is_logged_in:
        _sign_in_page(section)
        st.stop()
    email = _signed_in_email()
    if not email or not is_allowed(email, settings.allowed_users):
        _refusal(email, settings)
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as {literal(shown(email))}")
        if st.button("Sign out", key="sign_out"):
            st.logout()
    return email
