"""Sidebar: where this session's decisions are kept. Signed in, they are the team's, in the decision store, as they
are made (cleaner/ui/team.py); otherwise they live in the browser session unless the user asks this server to keep
them ("Keep my decisions on this server": the store, under a token the user holds). Lists kept by the retired
autosave files are imported into the store once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from cleaner.decisions.autosave import AutosaveError, AutosaveStore, Owner, is_token, new_token
from cleaner.decisions.records import ParsedDecisions
from cleaner.decisions.store import token_space
from cleaner.server.config import Settings
from cleaner.server.text import plural
from cleaner.ui import team
from cleaner.ui.state import DatasetWork, choose, remembered, show_widget_value, widget_value, work_by_digest
from cleaner.ui.text import literal

# How often an idle page writes what waits for the database and brings in teammates' decisions. Every page run does
# both anyway; each poll is a fragment run the server makes and the browser redraws, in every open session.
SAVE_EVERY_S = 10
_STATE_KEY = "cleaner_autosave"  # not a widget: Streamlit keeps it for the whole session
TOGGLE_KEY = "autosave_on"
TOKEN_INPUT_KEY = "autosave_token_input"
WARNING = (
    "Your decisions live in this browser session only: a server restart, or closing this tab, loses "
    "them. Download them (the buttons above the images you review), or let this server keep them."
)
TEAM_NOTE = (
    "Your decisions are kept in this server's database as you make them, shared with your team: a "
    "restart loses nothing."
)


@dataclass
class AutosaveState:
    """This session's token, and the last message about a restore or an import."""

    token: str = ""
    message: tuple[str, str] | None = None  # ("success" | "warning" | "error", text)
    imported: frozenset[tuple[str, str]] = frozenset()  # (owner kind, digest) whose old list was looked for
    restoring: bool = False  # the Restore button was pressed: say what the token brought, even nothing


def _state() -> AutosaveState:
    found = widget_value(_STATE_KEY)
    if not isinstance(found, AutosaveState):
        found = AutosaveState()
        show_widget_value(_STATE_KEY, found)
    return found


def _files(cache_dir: str) -> AutosaveStore:
    return AutosaveStore.under(Path(cache_dir))


def panel(work: DatasetWork, cfg: Settings, user: str = "") -> None:
    """Signed in: the team's store, always on. Otherwise the warning, the toggle with the token to copy, and
    restoring from a token."""
    side = st.sidebar
    state = _state()
    if user:
        side.caption(TEAM_NOTE)
        _import_old_list(work, cfg, Owner.from_email(user), state)
        with side:
            _keeper(work.dataset.digest)
    else:
        side.caption(WARNING)
        on = side.toggle(
            "Keep my decisions on this server",
            **remembered(TOGGLE_KEY, value=False),
            help="Kept in this server's database as you make them, under a token only you hold. "
            "The download stays the safe copy.",
        )
        if on:
            if not is_token(state.token):
                state.token = new_token()
            team.link(work, cfg, token_space(state.token), team.token_who(state.token))
            _import_old_list(work, cfg, Owner.from_token(state.token), state)
            if state.restoring and work.ledger is not None and work.ledger.opened:
                state.restoring = False
                if work.store_note is None and state.message is None:
                    state.message = (
                        "warning",
                        "No decisions are kept on this server under that token for this "
                        "dataset; from now on this session's are.",
                    )
            with side:
                _keeper(work.dataset.digest)
            side.caption(
                "Your token: copy it now. With it, and only with it, these decisions come back after a "
                "restart (Restore below)."
            )
            side.code(state.token, language=None)
        elif work.ledger is not None:
            work.detach()  # turned off: from now on this session's decisions stay in it
        with side.expander("Restore saved decisions"):
            st.text_input(
                "Token",
                key=TOKEN_INPUT_KEY,
                max_chars=64,
                type="password",
                placeholder="the token shown when you turned saving on",
            )
            st.button("Restore", key="btn_autosave_restore", on_click=_restore, args=(work,))
    team.store_status(work)
    if state.message:
        kind, text = state.message
        getattr(side, kind)(literal(text))


@st.fragment(run_every=SAVE_EVERY_S)
def _keeper(digest: str) -> None:
    """Write what waits for the database, bring in what others wrote, and say how many decisions are kept."""
    work = work_by_digest(digest)
    if work.sync() and work.map_redraw_due:
        st.rerun(scope="app")  # small data: teammates' decisions reach the map, the queue and the header at once
    ledger = work.ledger
    if ledger is None:
        return
    if ledger.error:
        st.caption(f"{plural(len(ledger.pending), 'decision')} waiting for the database.")
    elif ledger.opened:
        st.caption(f"{plural(len(work.decisions), 'decision')} on this dataset kept on this server.")


def _import_old_list(work: DatasetWork, cfg: Settings, owner: Owner, state: AutosaveState) -> None:
    """Once per owner and dataset: a list the retired autosave kept goes into the store, then is retired."""
    key = (owner.kind, work.dataset.digest)
    if key in state.imported or work.ledger is None or not work.ledger.opened:
        return
    files = _files(str(cfg.cache_dir))
    try:
        parsed = files.legacy(owner, work.dataset.digest)
    except AutosaveError as exc:
        state.message = ("error", f"An older saved list was not imported: {exc}")
        state.imported |= {key}
        return
    state.imported |= {key}
    if parsed is None:
        return
    _merge(work, parsed, state, "the decisions this server kept in its older format")
    if work.ledger.flush():
        files.retire(owner, work.dataset.digest)


def _merge(work: DatasetWork, parsed: ParsedDecisions, state: AutosaveState, what: str) -> None:
    """Bring a saved list into the session's work; this session's own decisions win where both decided."""
    fresh = {p: d for p, d in parsed.decisions.items() if p not in work.decisions}
    work.resume(
        ParsedDecisions(
            fresh, parsed.ignored_lines, {p: v for p, v in parsed.audit.items() if p not in work.decisions.audit}
        ),
        what,
    )
    state.message = work.list_message
    work.forget_list_message()  # shown by this panel: the upload panel's message belongs to its uploaded file


def _restore(work: DatasetWork) -> None:
    """The Restore button: keep this session's decisions under that token from now on, bringing in what it holds
    (the link is made on this run, by `panel`)."""
    state = _state()
    token = str(widget_value(TOKEN_INPUT_KEY) or "").strip()
    try:
        Owner.from_token(token)
    except AutosaveError as exc:
        state.message = ("error", str(exc))
        return
    state.token, state.restoring = token, True
    state.message = None  # what the token held is said by the store's note once linked
    work.detach()  # linked again, to that token's decisions, by the panel on this run
    choose(TOGGLE_KEY, True)  # and remembered as the user's choice: a redrawn toggle must not turn it off
