"""Where the panels go: on a wide screen the map and the review side by side (the map stays in view while the
list scrolls); on a narrow one they stack."""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

STACK_BELOW_PX = 1100  # narrower than this, a map beside four thumbnails a row is too cramped to use

_CSS = f"""<style>
[data-testid="stMainBlockContainer"] {{ padding-top: 2.5rem; }}
.st-key-workspace div[data-testid="stHorizontalBlock"]:has(.st-key-map_pane) > div:first-child {{
  position: sticky; top: 3.75rem; align-self: flex-start; z-index: 1;
}}
@media (max-width: {STACK_BELOW_PX}px) {{
  .st-key-workspace div[data-testid="stHorizontalBlock"]:has(.st-key-map_pane) {{ flex-direction: column; }}
  .st-key-workspace div[data-testid="stHorizontalBlock"]:has(.st-key-map_pane) > div {{
    width: 100% !important; flex: 1 1 100% !important;
  }}
  .st-key-workspace div[data-testid="stHorizontalBlock"]:has(.st-key-map_pane) > div:first-child {{
    position: static;  /* stacked, a sticky map would cover the review scrolling under it */
  }}
}}
</style>"""


def workspace() -> tuple[DeltaGenerator, DeltaGenerator]:
    """The map's pane and the review's pane."""
    st.html(_CSS)
    outer = st.container(key="workspace")
    left, right = outer.columns([1.15, 1], gap="medium")
    return left.container(key="map_pane"), right.container(key="review_pane")
