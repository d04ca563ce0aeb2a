"""Sidebar: the warning that a session's work dies with it, and the opt-in autosave that outlives a restart."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from cleaner.decisions.autosave import AutosaveError, AutosaveStore, Owner, new_token
from cleaner.decisions.records import ParsedDecisions
from cleaner.server.config import Settings
from cleaner.server.text import plural
from cleaner.ui.state import DatasetWork, choose, remembered, show_widget_value, widget_value, work_by_digest
from cleaner.ui.text import literal

SAVE_EVERY_S = 3  # gallery ticks and queue decisions rerun only their own panel: this one looks for them this often
_STATE_KEY = "cleaner_autosave"  # not a widget: Streamlit keeps it for the whole session
TOGGLE_KEY = "autosave_on"
TOKEN_INPUT_KEY = "autosave_token_input"
WARNING = ("Your decisions live in this browser session only: a server restart, or closing this tab, loses "
           "them. Download them (the buttons above the images you review), or let this server keep them.")


@dataclass
class AutosaveState:
    """This session's autosave: its token, what was saved last per dataset, and the last message."""

    token: str = ""
    saved_version: dict[tuple[str, str], int] = field(default_factory=dict)  # (owner file name, digest) -> version
    linked: set[tuple[str, str]] = field(default_factory=set)  # merged with what was saved before, or started fresh
    saved_at: float = 0.0
    save_error: str = ""  # why the last save failed, shown where the saves are reported
    message: tuple[str, str] | None = None  # ("success" | "warning" | "error", text) about a restore


def _state() -> AutosaveState:
    found = widget_value(_STATE_KEY)
    if not isinstance(found, AutosaveState):
        found = AutosaveState()
        show_widget_value(_STATE_KEY, found)
    return found


def _store(cache_dir: str) -> AutosaveStore:
    return AutosaveStore.under(Path(cache_dir))


def _owner(state: AutosaveState, user: str) -> Owner:
    """A signed-in user's lists follow their e-mail; anyone else's follow the session's token."""
    if user:
        return Owner.from_email(user)
    if not state.token:
        state.token = new_token()
    return Owner.from_token(state.token)


def panel(work: DatasetWork, cfg: Settings, user: str = "") -> None:
    """The warning, the autosave toggle with the token to copy, and restoring from a token."""
    side = st.sidebar
    side.caption(WARNING)
    state = _state()
    on = side.toggle("Keep my decisions on this server", **remembered(TOGGLE_KEY, value=False),
                     help="Saved a few seconds after each change, under a name only your "
                          + ("sign-in" if user else "token") + " leads to. The download stays the safe copy.")
    if on:
        owner = _owner(state, user)
        with side:
            _keeper(work, str(cfg.cache_dir), owner)
        if owner.kind == "token":
            side.caption("Your token: copy it now. With it, and only with it, these decisions come back after a "
                         "restart (Restore below).")
            side.code(owner.secret, language=None)
        else:
            side.caption(f"Kept for {literal(user)}: after a restart, turn this on again to bring them back.")
    elif user and _store(str(cfg.cache_dir)).path(Owner.from_email(user), work.dataset.digest).exists():
        side.info("This server keeps decisions you made on this dataset before: turn on "
                  "“Keep my decisions on this server” to bring them back.")
    with side.expander("Restore saved decisions"):
        st.text_input("Token", key=TOKEN_INPUT_KEY, max_chars=64, type="password",
                      placeholder="the token shown when you turned saving on")
        st.button("Restore", key="btn_autosave_restore", on_click=_restore,
                  args=(work.dataset.digest, str(cfg.cache_dir)))
    if state.message:
        kind, text = state.message
        getattr(side, kind)(literal(text))


@st.fragment(run_every=SAVE_EVERY_S)
def _keeper(work: DatasetWork, cache_dir: str, owner: Owner) -> None:
    """Save when the decisions changed since the last save (a version number: the check costs nothing)."""
    state = _state()
    store = _store(cache_dir)
    digest = work.dataset.digest
    key = (owner.file_name(digest), digest)
    if key not in state.linked:
        # A signed-in user's earlier list (or a damaged one) is read before anything is written over it.
        state.linked.add(key)
        try:
            _merge(work, store.load(owner, digest), state)
        except AutosaveError as exc:
            if store.path(owner, digest).exists():
                state.message = ("error", str(exc))
    if state.saved_version.get(key) != work.decisions.version:
        try:
            store.save(owner, digest, work.decisions)
        except AutosaveError as exc:
            state.save_error = str(exc)
        else:
            state.saved_at, state.save_error = time.time(), ""
        state.saved_version[key] = work.decisions.version  # a failed save is tried again at the next change
    if state.save_error:
        st.error(literal(state.save_error))
    elif state.saved_at:
        st.caption(f"{plural(len(work.decisions), 'decision')} kept on this server "
                   f"(saved {time.strftime('%H:%M:%S', time.localtime(state.saved_at))}).")


def _merge(work: DatasetWork, parsed: ParsedDecisions, state: AutosaveState) -> None:
    """Bring a saved list into the session's work; this session's own decisions win where both decided."""
    fresh = {p: d for p, d in parsed.decisions.items() if p not in work.decisions}
    work.resume(ParsedDecisions(fresh, parsed.ignored_lines), "the decisions kept on this server")
    state.message = work.list_message
    work.forget_list_message()  # shown by this panel: the upload panel's message belongs to its uploaded file


def _restore(digest: str, cache_dir: str) -> None:
    """The Restore button: merge the token's list into this session's work, then keep saving under that token."""
    state = _state()
    work = work_by_digest(digest)
    try:
        owner = Owner.from_token(str(widget_value(TOKEN_INPUT_KEY) or ""))
        _merge(work, _store(cache_dir).load(owner, digest), state)
    except AutosaveError as exc:
        state.message = ("error", str(exc))
        return
    state.token = owner.secret
    state.linked.add((owner.file_name(digest), digest))
    choose(TOGGLE_KEY, True)  # and remembered as the user's choice: a redrawn toggle must not turn it off
