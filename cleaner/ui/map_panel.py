"""The map: one component for 3D and 2D; click, box or lasso select; coloured by class or by a score."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from cleaner.io.dataset_types import Dataset
from cleaner.io.map_sample import MapSample
from cleaner.issues.ranking import worst
from cleaner.issues.registry import WORST, orders
from cleaner.issues.suspects import ScanResult
from cleaner.ui.compute import Maps
from cleaner.ui.map.component import map_chart
from cleaner.ui.map.events import MapEvent
from cleaner.ui.map.palette import class_colours
from cleaner.ui.map.payload import HOVER_NAMES_MAX_POINTS, MapPayload, build_payload
from cleaner.ui.state import DatasetWork, remembered, session_table
from cleaner.ui.team import teammates_excluded_rows
from cleaner.ui.text import literal

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
    dataset: Dataset,
    coords: np.ndarray,
    work: DatasetWork,
    result: ScanResult | None,
    color_by: str,
    drawn: np.ndarray | None = None,
) -> MapPayload:
    """The map of every row, or of the rows `drawn` only (a partial map: `coords` are theirs, in their order)."""
    rows = np.arange(dataset.n) if drawn is None else drawn
    score = _score_for_colour(result, color_by)
    return build_payload(
        coords,
        work.label_codes()[rows],
        dataset.class_names,
        score=None if score is None else score[rows],
        score_name=orders().get(color_by, color_by),
        colours=class_colours(len(dataset.class_names)),
        hover_names=[dataset.file_name(r) for r in rows.tolist()] if len(rows) <= HOVER_NAMES_MAX_POINTS else None,
    )


def _score_for_colour(result: ScanResult | None, color_by: str) -> np.ndarray | None:
    if color_by == "class" or result is None:  # no scores before the neighbours are found: class colours
        return None
    if color_by == WORST:
        return worst(*result.all()).score
    return next(s.score for s in result.all() if s.name == color_by)


def drawn_positions(rows: np.ndarray, drawn: np.ndarray | None) -> np.ndarray:
    """Where dataset `rows` are among the points of a map drawing the sorted rows `drawn` (None: every row, in order);
    rows it does not draw are left out."""
    rows = np.asarray(rows, dtype=np.int64)
    if drawn is None:
        return rows
    at = np.clip(np.searchsorted(drawn, rows), 0, max(len(drawn) - 1, 0))
    return at[(len(drawn) > 0) & (drawn[at] == rows)] if len(drawn) else at[:0]


def dataset_event(event: MapEvent, drawn: np.ndarray | None) -> MapEvent:
    """The event with its points turned into dataset rows: on a partial map the points are the rows `drawn`, so a
    selection there covers the images drawn, and Shift or Alt adds or removes them from the whole selection."""
    return event if drawn is None else dataclasses.replace(event, rows=drawn[np.asarray(event.rows, dtype=np.int64)])


def _on_map_event(work: DatasetWork, dims: int, event: MapEvent, sampled: int | None = None) -> None:
    """A click, box or lasso (its points already dataset rows): the gallery shows its rows (Shift adds to the
    selection, Alt removes from it). On a map sample of `sampled` images the gallery says only those were selectable."""
    described = event.describe(dims)
    if sampled is not None:
        described += f" (of the {sampled:,} sampled images the map shows, not of all {work.dataset.n:,})"
    rows = event.apply(np.asarray(work.selection.rows, dtype=np.int64))
    anchor = int(event.rows[0]) if event.kind == "click" and len(event.rows) == 1 else work.selection.anchor
    work.select(tuple(rows.tolist()), described, anchor=anchor)


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


def map_panel(work: DatasetWork, maps: Maps, result: ScanResult | None, shown: np.ndarray | None = None) -> None:
    """Colouring and view choices above the map; the selection and the excluded images drawn on it. Until the scores
    exist (`result` None) the map is coloured by class. `shown`: the dataset rows of a map sample's points (the maps
    then hold their places only)."""
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
    drawn = shown if shown is not None else maps.drawn_rows(dims)  # a map sample, or a partial map
    base = _payload(
        dataset.digest,
        layout_key if shown is None else f"sample:{len(shown)}:{layout_key}",
        dims,
        color_by,
        work.relabels_key(),
        lambda: _build_payload(dataset, coords, work, result, color_by, drawn),
    )
    theirs = teammates_excluded_rows(work)  # team mode: yours and your teammates' exclusions marked apart
    payload = base.with_marks(
        selected_rows=drawn_positions(work.selection.rows, drawn),
        excluded_rows=drawn_positions(work.excluded_rows(), drawn),
        team_excluded_rows=None if theirs is None else drawn_positions(theirs, drawn),
    )
    work.map_drawn()
    # A new layout (the UMAP map replacing the PCA preview, new map settings) gets a fresh view: a new key.
    layout_tag = hashlib.blake2b(layout_key.encode(), digest_size=4).hexdigest()
    map_chart(
        payload,
        key=f"map{dims}d_{dataset.digest[:12]}_{layout_tag}",
        height=MAP_HEIGHT,
        on_event=lambda event: _on_map_event(
            work, dims, dataset_event(event, drawn), None if shown is None else len(shown)
        ),
    )


def sampled_map_panel(work: DatasetWork, sample: MapSample | str | None, result: ScanResult | None, limit: int) -> None:
    """A dataset with more images than the map draws (`limit`): the scan's map sample, said as such; without one
    (`sample` None, or why it cannot be used), what to run instead. The queue and the exports cover every image."""
    dataset = work.dataset
    if not isinstance(sample, MapSample):
        why = f" The map sample next to it is not used: {sample}." if sample else ""
        st.info(
            literal(
                f"{dataset.name} has {dataset.n:,} images, more than the map draws ({limit:,}: CLEANER_MAP_LIMIT).{why} "
                "Run the command below where the data lies (add --dask local:N, or --dask tcp://SCHEDULER:8786 for a "
                "cluster): it writes the neighbours, the maps and a map sample (every flagged image plus a "
                "class-stratified sample) next to the data, and the page then draws that sample. The review queue, "
                "the scores and every export cover all images meanwhile."
            )
        )
        st.code(
            f"python -m cleaner scan {dataset.name} --out report.csv --precompute --map-limit {limit}", language="bash"
        )
        return
    st.caption(
        literal(
            f"The map shows a sample of {len(sample.rows):,} of {dataset.n:,} images: {sample.how}. The review "
            f"queue, the scores and every export cover all {dataset.n:,}; a box or lasso on the map selects "
            "sampled images only."
        )
    )
    maps = {coords.shape[1]: (coords, key) for key, coords in sample.layouts.items()}
    map_panel(work, Maps(maps[3][0], maps[2][0], maps[3][1], maps[2][1]), result, shown=sample.rows)
