"""The map: one component for 3D and 2D; click, box or lasso select; coloured by class or by a score."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from cleaner.io.dataset_types import Dataset
from cleaner.issues.ranking import worst
from cleaner.issues.registry import WORST, orders
from cleaner.issues.suspects import ScanResult
from cleaner.ui.compute import Maps
from cleaner.ui.map.component import map_chart
from cleaner.ui.map.events import MapEvent
from cleaner.ui.map.palette import class_colours
from cleaner.ui.map.payload import HOVER_NAMES_MAX_POINTS, MapPayload, build_payload
from cleaner.ui.state import DatasetWork, remembered, session_table, work_by_digest
from cleaner.ui.team import teammates_excluded_rows

MAP_VIEWS = ("3D", "2D")
MAP_HEIGHT = 620


@st.cache_resource(max_entries=16, show_spinner=False)
def _payload(
    digest: str, layout_key: str, dims: int, color_by: str, relabels_key: int, _build: Callable[[], MapPayload]
) -> MapPayload:
    """The map's points, built once per (layout, colouring, relabels) and shared by every session that shows it.

    The key is a few short strings and numbers: a rerun that changes nothing on the map hashes no array and
    builds nothing (`_build`, which gathers the codes and the colouring score, runs on a miss only)."""
    return _build()


def _build_payload(
    dataset: Dataset, coords: np.ndarray, work: DatasetWork, result: ScanResult | None, color_by: str
) -> MapPayload:
    small = dataset.n <= HOVER_NAMES_MAX_POINTS
    return build_payload(
        coords,
        work.label_codes(),
        dataset.class_names,
        score=_score_for_colour(result, color_by),
        score_name=orders().get(color_by, color_by),
        colours=class_colours(len(dataset.class_names)),
        hover_names=[dataset.file_name(r) for r in range(dataset.n)] if small else None,
    )


def _score_for_colour(result: ScanResult | None, color_by: str) -> np.ndarray | None:
    if color_by == "class" or result is None:  # no scores before the neighbours are found: class colours
        return None
    if color_by == WORST:
        return worst(*result.all()).score
    return next(s.score for s in result.all() if s.name == color_by)


def _on_map_event(digest: str, dims: int, event: MapEvent) -> None:
    """A click, box or lasso: the gallery shows its rows (Shift adds to the selection, Alt removes from it)."""
    work = work_by_digest(digest)
    rows = event.apply(np.asarray(work.selection.rows, dtype=np.int64))
    anchor = int(event.rows[0]) if event.kind == "click" and len(event.rows) == 1 else work.selection.anchor
    work.select(tuple(rows.tolist()), event.describe(dims), anchor=anchor)


def placeholder(work: DatasetWork) -> Callable[[], DeltaGenerator]:
    """The map's place on the page, opened later by calling the result. When the dataset changed, the place says at
    once what is being computed, so the last dataset's map never stands under this one's name meanwhile."""
    shown = session_table("map_shown")
    if shown.get("digest") == work.dataset.digest:
        # A container keeps the map mounted while this run reaches it; an st.empty here would blank the map at the
        # start of every rerun and remount it (a flicker, and the view rebuilt) whenever the run is slow.
        area = st.container()
        return lambda: area
    slot = st.empty()
    slot.info(
        f"Preparing the map of {work.dataset.name} ({work.dataset.n:,} images): a quick PCA preview first, "
        "then the nearest neighbours and the UMAP map in the background."
    )
    shown["digest"] = work.dataset.digest
    return slot.container


def map_panel(work: DatasetWork, maps: Maps, result: ScanResult | None) -> None:
    """Colouring and view choices above the map; the selection and the excluded images drawn on it. Until the scores
    exist (`result` None) the map is coloured by class."""
    dataset = work.dataset
    colour_names = {"class": "Class", **orders(result.scores if result is not None else None)}
    top = st.columns([2, 1], vertical_alignment="bottom")
    color_by = top[0].selectbox(
        "Colour the map by",
        list(colour_names),
        format_func=colour_names.get,
        **remembered("color_by", options=list(colour_names)),
    )
    view = top[1].segmented_control("Map", MAP_VIEWS, **remembered("map_view", default="3D"))
    dims = 2 if view == "2D" else 3  # a second click on the chosen view unselects it: stay in 3D
    coords, layout_key = maps.view(dims)
    base = _payload(
        dataset.digest,
        layout_key,
        dims,
        color_by,
        work.relabels_key(),
        lambda: _build_payload(dataset, coords, work, result, color_by),
    )
    payload = base.with_marks(
        selected_rows=work.selection.rows,
        excluded_rows=work.excluded_rows(),
        team_excluded_rows=teammates_excluded_rows(work),  # team mode: yours and your teammates' marked apart
    )
    work.map_drawn()
    # A new layout (the UMAP map replacing the PCA preview, new map settings) gets a fresh view: a new key.
    layout_tag = hashlib.blake2b(layout_key.encode(), digest_size=4).hexdigest()
    map_chart(
        payload,
        key=f"map{dims}d_{dataset.digest[:12]}_{layout_tag}",
        height=MAP_HEIGHT,
        on_event=lambda event: _on_map_event(dataset.digest, dims, event),
    )
