"""The decision store in the page: team mode (everyone signed in shares one dataset's decisions), the Conflicts
view with one-click settling, each image's history, and the store's state in the sidebar.

The session's work (cleaner/ui/state.py) holds the link to the store (a `Ledger`) and writes each decision through
it; this module only chooses the space, opens the store for the page, and draws what the store says.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np
import streamlit as st

from cleaner.decisions.store import (
    TEAM_SPACE,
    Conflict,
    DecisionStore,
    Event,
    Ledger,
    StoreError,
    paths_identity,
    shared_store,
    token_space,
)
from cleaner.server.config import Settings
from cleaner.server.text import plural, shown
from cleaner.ui.state import DatasetWork
from cleaner.ui.text import literal

_identities: OrderedDict[str, str] = OrderedDict()  # dataset digest -> identity of its paths (sorting 1M paths: ~1 s)
_identities_lock = threading.Lock()
HISTORY_SHOWN = 20
CONFLICTS_SHOWN = 50


def store_opener(cfg: Settings) -> Callable[[], DecisionStore]:
    """The server's store for the configured URL, opened on first use (a failed open is tried again later)."""
    return lambda: shared_store(cfg.database_url or None, cfg.cache_dir)


def identity_of(work: DatasetWork) -> str:
    digest = work.dataset.digest
    with _identities_lock:
        found = _identities.get(digest)
    if found is None:
        found = paths_identity(work.dataset.image_paths.tolist())
        with _identities_lock:
            _identities[digest] = found
            while len(_identities) > 64:
                _identities.popitem(last=False)
    return found


def token_who(token: str) -> str:
    """What a token's decisions say in `decided_by`: a short tag of the token, never the token."""
    return "token " + token_space(token).split(":", 1)[1][:8]


def link(work: DatasetWork, cfg: Settings, space: str, who: str) -> None:
    """Write this session's work on the dataset through to a space of the store (once; later runs bring in what
    others wrote since)."""
    ledger = work.ledger
    if ledger is None or ledger.space != space:
        work.attach(Ledger(store_opener(cfg), space, who, identity_of(work), work.dataset.name, work.dataset.n))
    else:
        work.sync()


def team_mode(work: DatasetWork, cfg: Settings, user: str) -> None:
    """Signed in: everyone's decisions on this dataset are shared, through the store, as they are made."""
    if user:
        link(work, cfg, TEAM_SPACE, user)


def is_team(work: DatasetWork) -> bool:
    return work.ledger is not None and work.ledger.space == TEAM_SPACE


def store_status(work: DatasetWork) -> None:
    """In the sidebar: what opening the store brought in, and whether decisions wait for the database."""
    ledger = work.ledger
    if ledger is None:
        return
    side = st.sidebar
    if is_team(work):
        side.caption(
            "Team mode: your decisions are shared with everyone signed in on this server, as you make "
            "them; the review queue skips images a teammate decided."
        )
    if work.store_note:
        kind, text = work.store_note
        getattr(side, kind)(literal(text))
    if ledger.error:
        waiting = len(ledger.pending)
        side.error(
            literal(ledger.error) + " Your decisions are kept in this session (the downloads hold all of "
            "them)"
            + (f"; {plural(waiting, 'decision')} will be written once the database is back." if waiting else ".")
        )


# ---------------------------------------------------------------- conflicts


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _what(e: Event) -> str:
    if e.kind == "relabel":
        return f"relabel to {e.new_label}"
    return {"undo": "took back", "exclude": "exclude", "keep": "keep"}.get(e.kind, e.kind)


def conflicts(work: DatasetWork) -> list[Conflict]:
    """The dataset's disagreements, read again only when the space has changed."""
    ledger = work.ledger
    if ledger is None:
        return []
    key = ("conflicts", ledger.seq)
    cached = ledger.cache.get("conflicts")
    if cached is None or cached[0] != key:
        try:
            store = ledger.store()
            found = store.conflicts(ledger.space, work.dataset.image_paths)
        except StoreError as exc:
            st.error(literal(str(exc)))
            return []
        ledger.cache["conflicts"] = (key, found)
        return found
    return cached[1]


def conflicts_panel(work: DatasetWork, thumbnail: Callable[[str], str] | None = None) -> None:
    """Images teammates disagree on, with who decided what and when; one click settles each."""
    if not is_team(work):
        st.info(
            "The Conflicts view lists the images teammates disagree on. It needs sign-in (team mode): with "
            "sign-in off, each browser session decides alone."
        )
        return
    work.sync()
    found = conflicts(work)
    if not found:
        st.success("No conflicts: nobody disagrees on any image of this dataset.")
        return
    st.markdown(
        f"**{plural(len(found), 'image')} your team disagrees on.** Settling one makes your choice the "
        "image's decision, for everyone."
    )
    for conflict in found[:CONFLICTS_SHOWN]:
        rows = work.dataset.rows_with_paths([conflict.path])
        if not len(rows):
            continue
        row = int(rows[0])
        with st.container(border=True, key=f"conflict_{row}"):
            cols = st.columns([1, 3])
            if thumbnail is not None:
                cols[0].image(thumbnail(conflict.path), width=110)
            body = cols[1]
            body.text(f"{work.dataset.file_name(row)} · label: {work.dataset.label_text(row)}")
            body.text(
                "\n".join(
                    f"{shown(e.decided_by) or 'someone'}: {_what(e)} ({_when(e.decided_at)})"
                    + (f" · {e.reason}" if e.reason else "")
                    for e in conflict.by_person
                )
            )
            if conflict.current is not None:
                body.caption(f"Now: {_what(conflict.current)}, by {shown(conflict.current.decided_by)}")
            options = list(dict.fromkeys((e.kind, e.new_label) for e in conflict.by_person))
            buttons = body.columns(len(options))
            for i, (kind, label) in enumerate(options):
                text = f"Settle: relabel to {label}" if kind == "relabel" else f"Settle: {kind}"
                buttons[i].button(
                    literal(text),
                    key=f"settle_{row}_{i}",
                    on_click=work.settle,
                    args=(conflict.path, kind, label),
                    width="stretch",
                )
    if len(found) > CONFLICTS_SHOWN:
        st.caption(f"The first {CONFLICTS_SHOWN} are shown; settle them to see the next.")


# ---------------------------------------------------------------- history


def histories(work: DatasetWork, rows: Iterable[int]) -> dict[int, list[Event]]:
    """Each row's history, read in one query for the rows whose cached copy predates the space's latest event (the
    queue asks for its cards together: a query per card costs every teammate's decision six reads in every page)."""
    ledger = work.ledger
    rows = list(rows)
    if ledger is None:
        return {r: [] for r in rows}
    paths = {r: str(work.dataset.image_paths[r]) for r in rows}
    stale = sorted({p for p in paths.values() if (ledger.cache.get(("history", p)) or (None,))[0] != ledger.seq})
    if stale:
        try:
            found = ledger.store().events_for(ledger.space, stale)
        except StoreError:
            return {r: [] for r in rows}
        by_path: dict[str, list[Event]] = {p: [] for p in stale}
        for e in found:
            by_path[e.path].append(e)
        for p, events in by_path.items():
            ledger.cache[("history", p)] = (ledger.seq, events)
    return {r: ledger.cache[("history", p)][1] for r, p in paths.items()}


def history_popover(work: DatasetWork, row: int) -> None:
    """Who decided what on this image, and when (team mode and the server-kept decisions only)."""
    if work.ledger is None:
        return
    events = histories(work, [row])[row]
    with st.popover(f"History ({len(events)})", width="stretch"):
        if not events:
            st.caption("Nobody has decided this image yet.")
        for e in events[-HISTORY_SHOWN:][::-1]:
            st.text(
                f"{_when(e.decided_at)} · {shown(e.decided_by) or 'someone'} · "
                f"{'audit: ' if e.stream == 'audit' else ''}{_what(e)}"
                + (" (settled)" if e.settles else "")
                + (f" · {e.reason}" if e.reason else "")
            )


def teammates_rows(work: DatasetWork) -> np.ndarray:
    """Rows whose decision a teammate made (not this user)."""
    if not is_team(work):
        return np.array([], dtype=np.int64)
    return work.dataset.rows_with_paths(
        p for p, d in work.decisions.by_path.items() if d.decided_by and d.decided_by != work.user
    )


def free_suspects(work: DatasetWork, left: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """The queue's suspects this session may be shown (in order): those on no teammate's cards now; and the rows
    on teammates' cards, with who has each."""
    held = held_by_teammates(work)
    return (left[~np.isin(left, list(held))] if held else left), held


def held_cards(work: DatasetWork, order: str, queue: np.ndarray, n: int) -> list[int | None]:
    """The queue's n cards (`DatasetWork.queue_cards`), held for this session so teammates are shown others."""
    cards = work.queue_cards(order, queue, n)
    taken = hold(work, cards)
    if taken:  # a teammate's queue took one of the new suspects at the same moment: refill those places once
        cards = work.queue_cards(order, queue[~np.isin(queue, list(taken))], n)
        hold(work, cards)
    return cards


def held_by_teammates(work: DatasetWork) -> dict[int, str]:
    """Rows on a teammate's review cards now, and who has each (team mode): this session is shown other suspects."""
    ledger = work.ledger
    if ledger is None or not is_team(work):
        return {}
    held = ledger.held_by_others()
    if not held:
        return {}
    rows = work.dataset.rows_with_paths(held)
    return {int(r): held[str(work.dataset.image_paths[r])] for r in rows.tolist()}


def hold(work: DatasetWork, rows: Iterable[int | None]) -> set[int]:
    """Hold the rows this session's cards show (team mode), letting go of the others; returns the rows a teammate
    took first (two queues that refilled a card with the same suspect at the same moment)."""
    ledger = work.ledger
    if ledger is None or not is_team(work):
        return set()
    paths = {int(r): str(work.dataset.image_paths[r]) for r in rows if r is not None}
    got = ledger.hold(list(paths.values()))
    if got is None:  # the database could not say: show the cards anyway
        return set()
    return {r for r, p in paths.items() if p not in got}


def teammates_excluded_rows(work: DatasetWork) -> np.ndarray | None:
    """Rows a teammate excluded (not this user), which the map marks apart from yours; None outside team mode.
    Worked out once per change of the decisions: the map asks on every run."""
    ledger = work.ledger
    if ledger is None or not is_team(work):
        return None
    version = work.decisions.version
    cached = ledger.cache.get("teammates_excluded")
    if cached is None or cached[0] != version:
        theirs = (
            p
            for p, d in work.decisions.by_path.items()
            if d.kind == "exclude" and d.decided_by and d.decided_by != work.user
        )
        cached = ledger.cache["teammates_excluded"] = (version, work.dataset.rows_with_paths(theirs))
    return cached[1]
