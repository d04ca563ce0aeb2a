"""The selected images: selection tools (class, neighbours), then a page of thumbnails with an Exclude tick each."""

from __future__ import annotations

import numpy as np
import streamlit as st

from cleaner.graph.neighbours import GRAPH_K, NeighbourGraph
from cleaner.io.images import ImageAccess
from cleaner.server.text import plural
from cleaner.ui.downloads import decision_files
from cleaner.ui.state import DatasetWork, remembered, show_widget_value, widget_value
from cleaner.ui.thumbs import thumbnail

PAGE_SIZE = 24
GALLERY_COLUMNS = 4


def _select_class(work: DatasetWork) -> None:
    names = work.dataset.class_names
    klass = widget_value("select_class")
    rows = tuple(np.flatnonzero(work.dataset.label_codes == names.index(klass)).tolist())
    work.select(rows, f"class {klass!r} ({plural(len(rows), 'image')})")


def _select_neighbours(work: DatasetWork, graph: NeighbourGraph) -> None:
    anchor, k = work.selection.anchor, int(widget_value("knn_k"))
    if anchor is not None:
        rows = (anchor,) + tuple(graph.indices[anchor, :k].tolist())
        work.select(rows, f"point #{anchor} and its {k} nearest neighbours", anchor=anchor)


def selection_tools(work: DatasetWork, graph: NeighbourGraph | None) -> None:
    """Select a whole class, or the nearest neighbours of the clicked point, or clear the selection.

    Callbacks, not return values: they run before the script, so the map (drawn first) shows the new selection.
    """
    cols = st.columns([2, 1.4, 1], vertical_alignment="bottom")
    classes = list(work.dataset.class_names)
    # Remembered: a browser drawing the box afresh (a whole-page run while the maps arrive) must start it at the
    # user's class, not the first one, or it sends that back as the user's choice.
    cols[0].selectbox("Class", classes, **remembered("select_class", options=classes))
    cols[1].button("Select class", key="btn_class", width="stretch", on_click=_select_class, args=(work,))
    cols[2].button("Clear", key="btn_clear", width="stretch", on_click=work.clear_selection)
    # Drawn, disabled, while the neighbours are being found: the gallery below must not move under the pointer
    # when they arrive.
    k = graph.k if graph is not None else min(GRAPH_K, work.dataset.n - 1)
    cols = st.columns([2, 1.4, 1], vertical_alignment="bottom")
    cols[0].slider("Nearest neighbours of the clicked point", 1, k, min(10, k), key="knn_k", disabled=graph is None)
    anchor = work.selection.anchor
    why = (
        "The nearest neighbours are being found"
        if graph is None
        else "Click a point on the map first"
        if anchor is None
        else None
    )
    cols[1].button(
        "Select neighbours",
        key="btn_knn",
        disabled=why is not None,
        width="stretch",
        help=why,
        on_click=_select_neighbours,
        args=(work, graph),
    )


def _tick(work: DatasetWork, row: int, key: str) -> None:
    # Read, not assumed the opposite of what was shown: Streamlit also calls this when a page of the gallery shows
    # the box afresh, with the value the page set.
    work.set_excluded([row], bool(widget_value(key)))


def _go_to_page(work: DatasetWork, key: str) -> None:
    work.go_to_page(int(widget_value(key)) - 1)


@st.fragment
def gallery(work: DatasetWork, access: ImageAccess) -> None:
    """The selected images with an Exclude checkbox each; a tick reruns only this fragment."""
    dataset = work.dataset
    if work.map_redraw_due:
        st.rerun()
    decision_files(work)
    sel = work.selection
    if not sel.rows:
        st.info("Click a point or draw a box or lasso on the map, or select a class, to review images here.")
        return
    n_pages = (len(sel.rows) + PAGE_SIZE - 1) // PAGE_SIZE
    page = min(work.page, n_pages - 1)
    top = st.columns([4, 2])
    top[0].markdown(f"**Selected: {plural(len(sel.rows), 'image')}**")
    top[0].text(sel.description)
    if work.map_is_behind:
        map_behind_note(work, top[0], "btn_map_marks_gallery")
    page_key = f"page_{dataset.digest[:12]}"
    show_widget_value(page_key, page + 1)
    top[1].number_input(f"Page (of {n_pages})", 1, n_pages, key=page_key, on_change=_go_to_page, args=(work, page_key))
    rows = list(sel.rows[page * PAGE_SIZE : (page + 1) * PAGE_SIZE])
    buttons = st.columns(2)
    buttons[0].button(
        "Exclude all on this page",
        key="btn_excl_page",
        on_click=work.set_excluded,
        args=(rows, True),
        width="stretch",
    )
    buttons[1].button(
        "Include all on this page",
        key="btn_incl_page",
        on_click=work.set_excluded,
        args=(rows, False),
        width="stretch",
    )
    grid = st.columns(GALLERY_COLUMNS)
    for i, row in enumerate(rows):
        with grid[i % GALLERY_COLUMNS]:
            _card(work, row, access)


def _card(work: DatasetWork, row: int, access: ImageAccess) -> None:
    dataset = work.dataset
    path = str(dataset.image_paths[row])
    url, thumb = thumbnail(path, access)
    st.image(url, width="stretch")
    decision = work.decisions.get(path)
    label = dataset.label_text(row)
    if decision is not None and decision.kind == "relabel":
        label = f"{label} → {decision.new_label}"
    st.text(f"label: {label}\n{dataset.file_name(row)}")  # st.text never renders markup
    if not thumb.ok:
        st.text(f"⚠ {thumb.reason}")
    key = f"excl_{dataset.digest[:12]}_{row}"
    show_widget_value(key, work.decisions.is_excluded(path))
    st.checkbox("Exclude", key=key, on_change=_tick, args=(work, row, key))


def map_behind_note(work: DatasetWork, where, key: str) -> None:
    """Large data: decisions rerun only their panel, so the map's marks wait until asked for (downloads are current)."""
    where.caption(
        f"{plural(work.decisions.count('exclude'), 'image')} excluded in all; "
        "the map shows the marks of your earlier decisions."
    )
    if where.button("Show my decisions on the map", key=key, help=f"Redraws the map of {work.dataset.n:,} points"):
        st.rerun()
