"""The 3D/2D map as a frameless Streamlit component (components v2): binary data in, click/box/lasso events out.

A map is three elements with no gap between them (four when its scripts go inline, below):
- "cleaner.map" (frontend/map.js and the modules it imports) draws the points: its data is the points message
  (16-bit fixed-point coordinates, payload.py);
- "cleaner.mapcolours" (frontend/colours_element.js) carries the class codes, scores and palette;
- "cleaner.mapmarks" (frontend/marks_element.js) carries the selected and excluded rows, drawn over the map.
Streamlit sends an element that is the same as on the previous run as a reference to the browser's copy (its
message cache), so a rerun sends the coordinates only when the layout changes, the colours when the colouring or a
label changes, and a new selection or exclusion costs 4 bytes per marked row (or a bit per point, if smaller).

Where the scripts come from (`map_scripts()` says which):
- "files": the project is installed (`-e .` in requirements.txt), so Streamlit serves frontend/ as the elements'
  asset folder (pyproject.toml's [tool.streamlit.component]): the browser loads the ES modules and
  frontend/vendor/plotly.min.js over HTTP, like any other file of the page, and the websocket carries data only;
- "inline": a checkout that is not installed. The modules are joined into one inline script, and plotly.js travels
  over the websocket in an element of its own ("cleaner.plotlyjs", once per page load).
Both run the same plotly.js: the copy vendored in frontend/vendor (from the plotly wheel, PLOTLY_JS_VERSION).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import streamlit as st
from streamlit.errors import StreamlitAPIException, StreamlitDuplicateElementKey

from cleaner.ui.map.events import MapEvent, MapEventError, decode_event
from cleaner.ui.map.payload import MapPayload
from cleaner.ui.state import session_table, widget_value

_LOG = logging.getLogger(__name__)
# plotly.js, vendored from the plotly wheel of that version (`plotly/package_data/plotly.min.js`), licence header
# kept; tests/test_map_assets.py checks it is that plotly.js.
PLOTLY_JS_FILE = "vendor/plotly.min.js"
PLOTLY_JS_VERSION = "4.1.1"
PLOTLY_KEY = "cleaner-plotlyjs"
# The map's modules, each after those it imports (the inline bundle keeps this order).
MAP_MODULES = ("style.js", "plotly_internals.js", "decode.js", "figure.js", "marks.js", "tools.js", "map.js")
MAP_COMPONENT = "cleaner.map"


class MapComponentError(RuntimeError):
    """The map component cannot be set up (its scripts are missing from the installation)."""


@cache
def _plotly_component():
    """The inline mode's plotly.js element: plotly.min.js is a UMD bundle that, evaluated as a module, sets
    window.Plotly; the export makes it a component."""
    js = _script(PLOTLY_JS_FILE) + "\nexport default function () {}\n"
    return st.components.v2.component("cleaner.plotlyjs", js=js)


@cache
def _script(name: str) -> str:
    try:
        return resources.files("cleaner.ui.map").joinpath("frontend", *name.split("/")).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise MapComponentError(f"the map's script cleaner/ui/map/frontend/{name} is missing: {exc}") from exc


_IMPORT = re.compile(r'^import \{[^}]*\} from "\./[a-z_]+\.js";\n', re.MULTILINE)
_EXPORT = re.compile(r"^export (?=(?:async )?function |const |class )", re.MULTILINE)


def bundle(names: tuple[str, ...] = MAP_MODULES) -> str:
    """The map's modules as one inline module: their relative imports dropped (every module's names are unique
    across the folder, so they meet in one scope) and only the last module's default export kept."""
    parts = []
    for name in names:
        text = _IMPORT.sub("", _script(name))
        if name != names[-1]:
            text = _EXPORT.sub("", text)
        parts.append(f"// ---- {name}\n{text}")
    return "\n".join(parts)


@dataclass(frozen=True)
class MapScripts:
    """The map's three elements and where their scripts come from ("files" or "inline", see the module's doc)."""

    mode: Literal["files", "inline"]
    map: Any
    colours: Any
    marks: Any


@cache
def map_scripts() -> MapScripts:
    """The map's elements: their scripts served as files from the installed package's asset folder when Streamlit
    knows it (it raises its StreamlitAPIException for a file path otherwise), else inline."""
    v2 = st.components.v2
    # isolate_styles=False: plotly.js puts its CSS (modebar, hover labels) into document.head, which a shadow
    # root would keep out.
    try:
        return MapScripts(
            mode="files",
            map=v2.component(MAP_COMPONENT, js="map.js", isolate_styles=False),
            colours=v2.component("cleaner.mapcolours", js="colours_element.js", isolate_styles=False),
            marks=v2.component("cleaner.mapmarks", js="marks_element.js", isolate_styles=False),
        )
    except StreamlitAPIException as exc:
        _LOG.info("the map's scripts go inline (the project is not installed: %s)", exc)
    return MapScripts(
        mode="inline",
        map=v2.component(MAP_COMPONENT, js=bundle(), isolate_styles=False),
        colours=v2.component("cleaner.mapcolours", js=_script("colours_element.js"), isolate_styles=False),
        marks=v2.component("cleaner.mapmarks", js=_script("marks_element.js"), isolate_styles=False),
    )


# The map's own session state: the payload on screen (an event's rows refer to what the user saw), by component
# key; the event decoded by the callback, until the script run picks it up; and the points and colours messages
# the browser was handed for that key. Only the map on screen is kept.
_DRAWN = "map_drawn"
_EVENTS = "map_events"
_HANDED = "map_handed"


def _element_data(key: str, part: str, message: bytes, reference: dict[str, str]) -> bytes | dict[str, str]:
    """The message itself, or, when the browser was handed this very message before, a reference to it: Streamlit
    hashes and serialises an element's data on every run, so a reference keeps an unchanged map's run independent
    of the number of points."""
    handed = session_table(_HANDED).setdefault(key, {})
    same = handed.get(part) is message
    handed[part] = message
    return reference if same else message


def _resend(key: str, part: str) -> None:
    """The browser has no copy of the referenced message (a reload into this session, a remount): the next run
    sends it whole."""
    session_table(_HANDED).get(key, {}).pop(part, None)


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


def map_chart(
    payload: MapPayload, *, key: str, height: int = 600, on_event: Callable[[MapEvent], None] | None = None
) -> MapEvent | None:
    """Draw the map; return the user's click, box or lasso once, on the run it happened, else None.

    `on_event`, if given, is called with the event before the script reruns (a Streamlit callback): apply the
    selection there and the same run draws it highlighted. `key` identifies the map across reruns: keep it while
    the dataset stays the same (camera, zoom and legend persist); change it (e.g. add the dataset digest) to give
    a new dataset a fresh view. The payload's coordinates decide 2D or 3D.

    The work of a run is independent of the number of points when the payload is the one drawn before (built once,
    e.g. in a cache): its messages are encoded once, and a run that would hand the browser the same message again
    hands it a reference instead ({"key"/"map_key", "ref"}), which the browser resolves to the copy it holds or
    answers with a "resend" trigger.
    """
    for table in (session_table(_DRAWN), session_table(_HANDED)):
        for other in [k for k in table if k != key]:
            del table[other]  # a session keeps the payload of the map on screen only
    session_table(_DRAWN)[key] = payload
    scripts = map_scripts()
    extra: dict[str, str | int] = {"key": key, "height": int(height)}
    if scripts.mode == "files":
        extra["plotly"] = PLOTLY_JS_FILE  # map.js imports it from beside itself
    with st.container(gap=None):
        if scripts.mode == "inline":
            try:
                # One key for every map: the element is then the same message on every run, whichever map shows.
                _plotly_component()(key=PLOTLY_KEY, height=0)
            except StreamlitDuplicateElementKey:
                pass  # a second map in this run: plotly.js is on the page already
        # data: one bytes object each (a components-v2 element takes JSON, Arrow or bytes), the key inside
        points = payload.points_message(**extra)
        scripts.map(
            key=key,
            data=_element_data(key, "points", points, {"key": key, "ref": payload.message_ref("points", **extra)}),
            height="content",
            on_event_change=lambda: _decode_pending(key, on_event),
            on_resend_change=lambda: _resend(key, "points"),
        )
        colours = payload.colours_message(map_key=key)
        scripts.colours(
            key=f"{key}-colours",
            data=_element_data(
                key, "colours", colours, {"map_key": key, "ref": payload.message_ref("colours", map_key=key)}
            ),
            height=0,
            on_resend_change=lambda: _resend(key, "colours"),
        )
        marks = payload.marks_data()
        marks["map_key"] = key
        scripts.marks(key=f"{key}-marks", data=marks, height=0)
    return session_table(_EVENTS).pop(key, None)
