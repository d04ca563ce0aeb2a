"""The map: 3D (click) or 2D (box / lasso), coloured by class or by a score, excluded images marked."""
from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit_plotly_events import plotly_events

from .. import figures
from ..dataset import Dataset
from ..review import ORDERS
from ..scores import plural, worst
from ..suspects import ScanResult
from .compute import Maps
from .state import DatasetWork, is_new_event, remembered

MAP_VIEWS = ("3D map: click a point", "2D map: box or lasso select")


@st.cache_resource(max_entries=32, show_spinner=False)
def _map_3d(digest: str, layout_key: str, excluded_key: tuple[int, ...], color_key: str,
            _dataset: Dataset, _coords: np.ndarray, _scores: np.ndarray | None):
    return figures.map_3d(_dataset, _coords, np.asarray(excluded_key, dtype=np.int64), scores=_scores)


@st.cache_resource(max_entries=32, show_spinner=False)
def _map_2d(digest: str, layout_key: str, excluded_key: tuple[int, ...], color_key: str,
            _dataset: Dataset, _coords: np.ndarray, _scores: np.ndarray | None):
    return figures.map_2d(_dataset, _coords, np.asarray(excluded_key, dtype=np.int64), scores=_scores)


def _scores_for_color(result: ScanResult, color_by: str) -> np.ndarray | None:
    if color_by == "class":
        return None
    if color_by == "worst":
        return worst(*result.all()).score
    return next(s.score for s in result.all() if s.name == color_by)


def map_panel(work: DatasetWork, maps: Maps, result: ScanResult) -> None:
    """3D map (click a point) and 2D map (box/lasso); a new selection replaces the current one."""
    dataset = work.dataset
    excluded = tuple(work.excluded_rows().tolist())
    work.map_drawn()
    color_names = {"class": "Class", **{k: v for k, v in ORDERS.items() if k != "unreadable"}}
    if result.unreadable is not None:
        color_names["unreadable"] = ORDERS["unreadable"]
    color_by = st.selectbox("Color the map by", list(color_names), format_func=color_names.get,
                            **remembered("color_by"))
    scores = _scores_for_color(result, color_by)
    # One map at a time: the 3D click component left mounted in a hidden st.tabs tab redraws itself in a loop.
    view = st.radio("Map", MAP_VIEWS, horizontal=True, label_visibility="collapsed",
                    **remembered("map_view"))
    if view == MAP_VIEWS[0]:
        fig3 = _map_3d(dataset.digest, maps.key, excluded, color_by, dataset, maps.coords3, scores)
        clicked = plotly_events(fig3, click_event=True, override_height=600, key=f"map3d_{dataset.digest[:12]}")
        if clicked and is_new_event("map3d", (dataset.digest, clicked)):
            event = clicked[0]
            row = fig3.rows_for(int(event.get("curveNumber", -1)), int(event.get("pointNumber", -1)))
            if row is not None:
                work.select((row,), f"clicked point #{row}", anchor=row)
    else:
        fig2 = _map_2d(dataset.digest, maps.key, excluded, color_by, dataset, maps.coords2, scores)
        state = st.plotly_chart(
            fig2, on_select="rerun", selection_mode=("box", "lasso"), key=f"map2d_{dataset.digest[:12]}",
            config={"displaylogo": False},
        )
        points = (state or {}).get("selection", {}).get("points", []) if state else []
        rows = tuple(dict.fromkeys(int(p["customdata"]) for p in points if "customdata" in p))
        if rows and is_new_event("map2d", (dataset.digest, rows)):
            work.select(rows, f"{plural(len(rows), 'point')} selected in the 2D map",
                        anchor=rows[0] if len(rows) == 1 else None)
