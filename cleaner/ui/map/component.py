"""The 3D/2D map as a frameless Streamlit component (components v2): binary data in, click/box/lasso events out.

A map is three elements with no gap between them:
- "cleaner.plotlyjs" carries the plotly.js of the installed plotly wheel and sets `window.Plotly`;
- "cleaner.map" (its script is map_component.js next to this file) draws the points with it;
- "cleaner.mapmarks" (map_marks.js) carries the selected and excluded rows, drawn over the map.
Streamlit sends an element that is the same as on the previous run as a reference to the browser's copy (its
message cache), so a rerun sends plotly.js's 4.8 MB only with the first page load, the points only when they
or their colouring change, and a new selection or exclusion costs 4 bytes per marked row (or a bit per point,
whichever is smaller).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import plotly
import streamlit as st
from streamlit.errors import StreamlitDuplicateElementKey

from cleaner.ui.map.events import MapEvent, MapEventError, decode_event
from cleaner.ui.map.payload import MapPayload
from cleaner.ui.state import session_table, widget_value

_LOG = logging.getLogger(__name__)
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PLOTLY_KEY = "cleaner-plotlyjs"


class MapComponentError(RuntimeError):
    """The map component cannot be set up (its scripts are missing from the installation)."""


@cache
def _plotly_component():
    if not PLOTLY_JS.is_file():
        raise MapComponentError(f"plotly.js is missing from the plotly package ({PLOTLY_JS}); reinstall plotly")
    # plotly.min.js is a UMD bundle: evaluated as a module it sets window.Plotly. The export makes it a component.
    js = PLOTLY_JS.read_text(encoding="utf-8") + "\nexport default function () {}\n"
    return st.components.v2.component("cleaner.plotlyjs", js=js)


@cache
def _script(name: str) -> str:
    try:
        return resources.files("cleaner.ui.map").joinpath(name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise MapComponentError(f"the map's script cleaner/ui/map/{name} is missing: {exc}") from exc


@cache
def _map_component():
    # isolate_styles=False: plotly.js puts its CSS (modebar, hover labels) into document.head, which a shadow
    # root would keep out.
    return st.components.v2.component("cleaner.map", js=_script("map_component.js"), isolate_styles=False)


@cache
def _marks_component():
    """The selected and excluded rows, in an element of their own: changing them leaves the map's element as is."""
    return st.components.v2.component("cleaner.mapmarks", js=_script("map_marks.js"), isolate_styles=False)


# The map's own session state: per component key, the payload last drawn (an event's rows refer to what the
# user saw) and the event decoded by the callback, until the script run picks it up.
_DRAWN = "map_drawn"
_EVENTS = "map_events"


def _decode_pending(key: str, on_event: Callable[[MapEvent], None] | None) -> None:
    """The component's callback: runs before the script, so a selection shows on the very next run."""
    state = widget_value(key)
    raw = state.get("event") if isinstance(state, dict) else None
    payload = session_table(_DRAWN).get(key)
    if raw is None or payload is None:
        return
    try:
        event = decode_event(raw, payload)
    except MapEventError as exc:
        _LOG.warning("ignored a malformed map event: %s", exc)
        return
    session_table(_EVENTS)[key] = event
    if on_event is not None:
        on_event(event)


def map_chart(payload: MapPayload, *, key: str, height: int = 600,
              on_event: Callable[[MapEvent], None] | None = None) -> MapEvent | None:
    """Draw the map; return the user's click, box or lasso once, on the run it happened, else None.

    `on_event`, if given, is called with the event before the script reruns (a Streamlit callback): apply the
    selection there and the same run draws it highlighted. `key` identifies the map across reruns: keep it while
    the dataset stays the same (camera, zoom and legend persist); change it (e.g. add the dataset digest) to give
    a new dataset a fresh view. The payload's coordinates decide 2D or 3D.
    """
    session_table(_DRAWN)[key] = payload
    with st.container(gap=None):
        try:
            # One key for every map: the element is then the same message on every run, whichever map shows.
            _plotly_component()(key=PLOTLY_KEY, height=0)
        except StreamlitDuplicateElementKey:
            pass  # a second map in this run: plotly.js is on the page already
        data: dict[str, Any] = payload.component_data()
        data["meta"] = {**data["meta"], "height": int(height), "key": key}
        _map_component()(key=key, data=data, height="content",
                         on_event_change=lambda: _decode_pending(key, on_event))
        marks = payload.marks_data()
        marks["map_key"] = key
        _marks_component()(key=f"{key}-marks", data=marks, height=0)
    return session_table(_EVENTS).pop(key, None)
