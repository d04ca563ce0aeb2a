"""The review queue: the most suspect images first, each with its reason and Exclude / Keep / Relabel buttons."""

from __future__ import annotations

import os

import streamlit as st

from cleaner.graph.neighbours import NeighbourGraph
from cleaner.io.images import ImageAccess
from cleaner.issues.registry import orders
from cleaner.issues.review import KEPT_REASON, PAGE_SIZE, PAGE_SIZES, neighbour_summary, pending_rows, reasons
from cleaner.issues.suspects import ScanResult
from cleaner.server.text import shown
from cleaner.ui import team
from cleaner.ui.compute import check_images, learn_from_decisions
from cleaner.ui.downloads import decision_files
from cleaner.ui.keys import keys_work_at_once
from cleaner.ui.page_mode import page_mode
from cleaner.ui.state import DatasetWork, remembered
from cleaner.ui.text import literal
from cleaner.ui.thumbs import thumbnail

QUEUE_SHOWN = 6
EVIDENCE_NEIGHBOURS = 6
SHORTCUTS = {"exclude": "X", "keep": "K", "relabel": "L", "undo": "U"}  # Streamlit reserves R (rerun) and C
MODES = ("Cards", "Page")


@st.fragment
def review_queue_panel(work: DatasetWork, graph: NeighbourGraph, result: ScanResult, access: ImageAccess) -> None:
    """The most suspect samples first; a decided card's place goes to the next suspect, the others stay put."""
    dataset = work.dataset
    work.sync()  # what teammates decided since (team mode): their images leave the queue
    if work.map_redraw_due:
        st.rerun()
    keys_work_at_once()
    decision_files(work)
    result = learn_from_decisions(result, graph, work)  # the queue learns from each decision (a page: once)
    titles = orders(result.scores)
    top = st.columns([2.2, 1.6, 1.8], vertical_alignment="bottom")
    by = top[0].selectbox(
        "Order by", list(titles), format_func=titles.get, **remembered("queue_order", options=list(titles))
    )
    if result.unreadable is None and top[1].button(
        "Check image files",
        key="btn_check_images",
        width="stretch",
        help="Open every image to find missing, empty, truncated or non-image files",
    ):
        check_images(work, access)
        st.rerun()
    top[2].button(
        "Undo last decision",
        key="btn_undo",
        on_click=work.undo,
        disabled=not work.undo_stack,
        width="stretch",
        shortcut=SHORTCUTS["undo"],
    )
    mode_row = st.columns([1.4, 2.6], vertical_alignment="bottom")
    mode = mode_row[0].segmented_control(
        "Review",
        MODES,
        required=True,
        **remembered("queue_mode", default=MODES[0]),
        help="Cards: one suspect at a time. Page: a page of suspects that tell one story, decided in one action",
    )
    left = pending_rows(result, by, work.decided_rows())
    queue, held = team.free_suspects(work, left)  # a teammate's cards hold the others: this session sees these
    st.markdown(
        f"**{len(left):,} flagged samples left to review** · {len(work.decisions):,} decided · "
        f"{work.decisions.count('exclude'):,} excluded"
    )
    if work.last_decided is not None:  # a confirmation that stays put while teammates' decisions move the cards
        path, kind, label = work.last_decided
        st.caption(literal(f"Your last decision: {_done(kind, label)} {shown(os.path.basename(path))} (U undoes it)."))
    skipped = _skipped_note(len(team.teammates_rows(work)), len(left) - len(queue))
    if skipped:
        st.caption(skipped)
    if mode == MODES[1]:
        size = mode_row[1].segmented_control(
            "Cards on a page", PAGE_SIZES, required=True, **remembered("queue_page_size", default=PAGE_SIZE)
        )
    else:
        st.caption("Keys for the first card: X exclude · K keep · L relabel to the suggestion · U undo")
    if not len(left):
        st.success("Nothing flagged is left to review for this order. Pick another order, or explore the map.")
        return
    if not len(queue):
        st.info(
            f"The {len(left):,} flagged {'sample' if len(left) == 1 else 'samples'} left in this order "
            f"{'is' if len(left) == 1 else 'are'} on teammates' cards now. Pick another order, or come back to "
            "this one later."
        )
        return
    if mode == MODES[1]:
        page_mode(work, graph, result, by, queue, access, int(size or PAGE_SIZE), _fallback_reason(by))
        return
    cards = team.held_cards(work, by, queue, QUEUE_SHOWN)
    team.histories(work, [row for row in cards if row is not None])  # every card's history in one read
    held_paths = {str(dataset.image_paths[r]): who for r, who in held.items()}
    grid = st.columns(2)
    for slot, row in enumerate(cards):
        with grid[slot % 2].container(border=True, key=f"queue_slot_{slot}"):
            if row is None:
                st.caption(_emptied_note(work, by, slot, held_paths))
                continue
            _card(work, result, row, by, access, first=slot == 0)
            _evidence(work, graph, row, access)


def _card(work: DatasetWork, result: ScanResult, row: int, by: str, access: ImageAccess, first: bool) -> None:
    dataset = work.dataset
    labels = result.labels
    why = reasons(dataset, result, row)
    given = dataset.class_names[int(labels.given_label[row])]
    suggested = dataset.class_names[int(labels.suggested_label[row])]
    url, thumb = thumbnail(str(dataset.image_paths[row]), access)
    st.image(url, width=150)
    st.text(f"label: {given}" + (f"   neighbours say: {suggested}" if suggested != given else ""))
    st.text(dataset.file_name(row))
    team.history_popover(work, row)
    st.text("\n".join(why) or "no strong signal")
    if not thumb.ok and not any(thumb.reason in w for w in why):
        st.text(f"⚠ {thumb.reason}")
    reason = why[0] if why else _fallback_reason(by)
    keys = SHORTCUTS if first else {}
    b = st.columns(2)
    b[0].button(
        "Exclude",
        key=f"q_excl_{row}",
        on_click=work.decide,
        type="primary",
        shortcut=keys.get("exclude"),
        args=(row, "exclude", reason),
        width="stretch",
    )
    b[1].button(
        "Keep",
        key=f"q_keep_{row}",
        on_click=work.decide,
        shortcut=keys.get("keep"),
        args=(row, "keep", KEPT_REASON),
        width="stretch",
    )
    if suggested != given:
        st.button(
            f"Relabel to {literal(suggested)}",
            key=f"q_relabel_{row}",
            on_click=work.decide,
            shortcut=keys.get("relabel"),
            args=(row, "relabel", reason, suggested),
            width="stretch",
        )


def _skipped_note(decided: int, held: int) -> str:
    """What team mode leaves out of this session's queue: images a teammate decided, and those on their cards."""
    parts = []
    if decided:
        parts.append(f"{decided:,} {'image' if decided == 1 else 'images'} a teammate decided")
    if held:
        parts.append(f"{held:,} on a teammate's cards now")
    return f"Skipping {' and '.join(parts)}." if parts else ""


def _emptied_note(work: DatasetWork, by: str, slot: int, held_by: dict[str, str] | None = None) -> str:
    """An empty card says who decided the image it showed (a teammate's decision is news to this user), or who has
    it on their cards (a claim this session let lapse)."""
    path, decision = work.emptied_card(by, slot)
    left = "No flagged suspect is left in this order to take its place."
    if decision is None and path in (held_by or {}):
        return literal(
            f"{shown(held_by[path])} has {shown(os.path.basename(path))} on their cards now. No other flagged "
            "suspect is free to take its place."
        )
    if decision is None or not decision.decided_by or decision.decided_by == work.user:
        return f"Decided. {left}"
    what = _done(decision.kind, decision.new_label)
    return literal(f"{shown(decision.decided_by)} {what} {shown(os.path.basename(path))}. {left}")


def _done(kind: str, new_label: str) -> str:
    return {"exclude": "excluded", "keep": "kept"}.get(kind, f"relabelled to {new_label}")


def _fallback_reason(by: str) -> str:
    """A decision's reason when the card names none."""
    return f"review queue ({orders().get(by, by)})"


def _evidence(work: DatasetWork, graph: NeighbourGraph, row: int, access: ImageAccess) -> None:
    """Its nearest neighbours' thumbnails with their labels and distances, so a person can judge in one look."""
    dataset = work.dataset
    st.caption("Nearest neighbours:")
    cols = st.columns(EVIDENCE_NEIGHBOURS, gap="small")
    neighbours = graph.indices[row, :EVIDENCE_NEIGHBOURS].tolist()
    distances = graph.distances[row, :EVIDENCE_NEIGHBOURS].tolist()
    codes = work.label_codes()  # a relabelled neighbour shows its new label
    names = [dataset.class_names[int(codes[other])] for other in neighbours]
    for col, other in zip(cols, neighbours):
        url, _ = thumbnail(str(dataset.image_paths[other]), access)
        col.image(url, width="stretch")
    # One line under the strip: a label under each thumbnail of a half-width card wraps letter by letter.
    st.text(neighbour_summary(names, distances))  # st.text: labels never render
