"""The review queue's page mode: a grid of suspects that tell one story, each pre-ticked with its proposed action,
decided in one action (ticked cards get their action, the others are kept) and undone in one step."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import streamlit as st

from cleaner.graph.neighbours import NeighbourGraph
from cleaner.io.images import ImageAccess
from cleaner.issues.registry import kind_named
from cleaner.issues.review import ReviewPage, next_page_rows, review_page, typical_rows
from cleaner.issues.suspects import ScanResult
from cleaner.ui import team
from cleaner.ui.state import DatasetWork, QueuePage
from cleaner.ui.text import literal
from cleaner.ui.thumbs import thumbnail

PAGE_COLUMNS = 4
TYPICAL_SHOWN = 6  # images of each class in the evidence strip
APPLY_KEY = "A"  # Streamlit reserves R (rerun) and C; the card mode uses X K L U
TOGGLE_KEYS = "123456789"  # the first nine cards' number keys

# The next page's thumbnails are read beside the page, so they are in the thumbnail cache when it is shown.
_prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cleaner-thumbs")
_prefetched: list[tuple[str, ...]] = [()]


# The classes' most central images, found in one pass over the graph for all classes, once per graph.
@st.cache_data(max_entries=8, show_spinner=False)
def _typical(
    digest: str, k: int, metric: str, n_classes: int, _graph: NeighbourGraph, _codes: np.ndarray
) -> list[np.ndarray]:
    return typical_rows(_graph.indices, _graph.distances, _codes, n_classes, TYPICAL_SHOWN)


def page_mode(
    work: DatasetWork,
    graph: NeighbourGraph,
    result: ScanResult,
    by: str,
    queue: np.ndarray,
    access: ImageAccess,
    size: int,
    fallback_reason: str,
) -> None:
    """The page of suspects for the chosen order: what they have in common, the two classes' typical images, the
    button (and key) that applies the page, and the cards."""
    dataset = work.dataset
    page = review_page(dataset, result, by, queue, size, fallback_reason)
    if page is None:
        return
    shown = work.show_page(by, page)
    team.hold(work, shown.rows)  # teammates' queues are shown other suspects
    st.markdown(f"**{_story_title(work, page)}** · {len(page.cards)} of {page.story_total:,} such suspects")
    if page.story.given >= 0:
        _evidence_strip(work, graph, page, access)
    st.caption(
        f"Every card is ticked with its proposed action. Click a card (or press its number key 1-"
        f"{min(len(page.cards), len(TOGGLE_KEYS))}) to keep it instead; {APPLY_KEY} applies the page."
    )
    st.button(
        _apply_label(shown),
        key="btn_apply_page",
        type="primary",
        width="stretch",
        on_click=work.apply_page,
        args=(shown.rows,),
        shortcut=APPLY_KEY,
        help="Ticked cards get their proposed action, the others are kept; Undo takes the whole page back",
    )
    grid = st.columns(PAGE_COLUMNS)
    for i, card in enumerate(shown.cards):
        with grid[i % PAGE_COLUMNS].container(key=f"page_card_{i}"):  # no border: its padding costs the image
            _card(work, result, card, card.row in shown.ticked, i, access)
    _prefetch_next(work, result, by, queue, page, access)


def _story_title(work: DatasetWork, page: ReviewPage) -> str:
    names, story = work.dataset.class_names, page.story
    if story.given >= 0:
        return f"Labelled {literal(names[story.given])}, the neighbours say {literal(names[story.suggested])}"
    title = kind_named(story.kind).title if story.kind else "Suspect"
    if story.kind == "near_duplicate":
        return f"{title}s: every copy but one proposed for exclusion"
    return f"{title}s: proposed for exclusion"


def _apply_label(shown: QueuePage) -> str:
    acting = [c for c in shown.cards if c.row in shown.ticked]
    kept = len(shown.cards) - len(acting)
    relabels = [c for c in acting if c.action == "relabel"]
    parts = []
    if relabels:
        parts.append(f"relabel {len(relabels)} to {literal(relabels[0].new_label)}")
    if len(acting) > len(relabels):
        parts.append(f"exclude {len(acting) - len(relabels)}")
    if kept:
        parts.append(f"keep {kept}")
    return "Apply this page: " + ", ".join(parts)


def _evidence_strip(work: DatasetWork, graph: NeighbourGraph, page: ReviewPage, access: ImageAccess) -> None:
    """The given and the suggested class's most central images, so each card is compared against both at a glance."""
    dataset = work.dataset
    typical = _typical(dataset.digest, graph.k, graph.metric, len(dataset.class_names), graph, dataset.label_codes)
    st.caption("The most typical images of both classes (the most central in the neighbour graph):")
    for code, what in ((page.story.given, "given"), (page.story.suggested, "suggested")):
        cols = st.columns([2.2] + [1] * TYPICAL_SHOWN, gap="small", vertical_alignment="center")
        cols[0].text(f"{dataset.class_names[code]}\n({what})")  # st.text: a label never renders
        for col, row in zip(cols[1:], typical[code].tolist()):
            col.image(thumbnail(str(dataset.image_paths[row]), access)[0], width="stretch")


def _card(work: DatasetWork, result: ScanResult, card, ticked: bool, index: int, access: ImageAccess) -> None:
    dataset = work.dataset
    row = card.row
    url, thumb = thumbnail(str(dataset.image_paths[row]), access)
    st.image(url, width="stretch")
    if card.action == "relabel":  # the page's title gives both labels; how sure the neighbours are varies
        st.text(f"{result.labels.suggestion_share[row]:.0%} say {card.new_label}")
    else:
        st.text(f"label: {dataset.label_text(row)}" + (f" · copies {card.group}" if card.group >= 0 else ""))
    if not thumb.ok:
        st.text(f"⚠ {thumb.reason}")
    action = "Relabel" if card.action == "relabel" else "Exclude"  # short: the page's title says to what
    target = f" to {literal(card.new_label)}" if card.action == "relabel" else ""
    st.button(
        f"✓ {action}" if ticked else "Keep",
        key=f"pg_{row}",
        type="primary" if ticked else "secondary",
        on_click=work.toggle_page_card,
        args=(row,),
        width="stretch",
        shortcut=TOGGLE_KEYS[index] if index < len(TOGGLE_KEYS) else None,
        help=f"{dataset.file_name(row)}: {card.reason}. Click to "
        f"{'keep it instead' if ticked else action.lower() + target}.",
    )


def _prefetch_next(
    work: DatasetWork, result: ScanResult, by: str, queue: np.ndarray, page: ReviewPage, access: ImageAccess
) -> None:
    paths = tuple(str(work.dataset.image_paths[r]) for r in next_page_rows(result, by, queue, page).tolist())
    if paths and paths != _prefetched[0]:
        _prefetched[0] = paths
        _prefetch.submit(lambda: [thumbnail(p, access) for p in paths])
