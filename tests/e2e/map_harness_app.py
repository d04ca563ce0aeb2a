"""A page with nothing but the map component, on a synthetic dataset, for the browser tests and the bench.

Query parameters: `n` (points, default 300), `dims` (3 or 2), `classes` (default 3), `names` (1: send hover
names), `component=old` (today's streamlit-plotly-events 3D map instead, for the bench), `team=1` (team mode: a
second button excludes the selection as a teammate would, and the map marks those apart). Under the map it prints
the last event and the current selection as JSON ("harness-state ..."). Buttons exclude the selected rows and
switch the colouring to a score (reruns that change the marks, or the points); a checkbox hides the map.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, when run by `streamlit run`

from cleaner.ui.map.component import map_chart  # noqa: E402
from cleaner.ui.map.payload import MapPayload, build_payload  # noqa: E402

SHOWN_ROWS = 5_000


def synthetic(n: int, dims: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Well separated clusters, one per class."""
    rng = np.random.default_rng(11)
    codes = np.arange(n) % n_classes
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    centres = np.zeros((n_classes, dims))
    centres[:, 0], centres[:, 1] = 6 * np.cos(angles), 6 * np.sin(angles)
    if dims == 3:
        centres[:, 2] = np.linspace(-3, 3, n_classes)
    coords = centres[codes] + rng.normal(0, 1.0, size=(n, dims))
    return coords.astype(np.float32), codes


def old_component(coords: np.ndarray, codes: np.ndarray) -> None:
    """Today's 3D map (streamlit-plotly-events, bench/plotly_events_map.py): the bench's reference."""
    from streamlit_plotly_events import plotly_events

    from cleaner.io.dataset_types import Dataset

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the old map lives on as a reference
    from plotly_events_map import map_3d

    labels = np.array([f"class {c}" for c in range(codes.max() + 1)])[codes]
    paths = np.array([f"/data/img_{i:06d}.png" for i in range(len(codes))])
    dataset = Dataset(embeddings=coords, labels=labels, image_paths=paths, digest="harness", embedding_digest="harness")
    plotly_events(
        map_3d(dataset, coords, np.empty(0, dtype=np.int64)), click_event=True, override_height=520, key="old-map"
    )


@st.cache_resource(max_entries=8)
def base_payload(n: int, dims: int, n_classes: int, use_score: bool, names: bool) -> MapPayload:
    """The points, built (and encoded) once per colouring, as the app's page should; marks are added per run."""
    coords, codes = synthetic(n, dims, n_classes)
    score = (np.arange(n) % 97 / 96.0) if use_score else None
    hover = [f"img_{i:05d}.png" for i in range(n)] if names else None
    return build_payload(coords, codes, [f"class {c}" for c in range(n_classes)], score=score, hover_names=hover)


def on_map_event(event, dims: int) -> None:
    """Runs before the script: the same run then draws the new selection highlighted."""
    ss = st.session_state
    ss.selected = event.apply(ss.selected)
    ss.last = {"kind": event.kind, "mode": event.mode, "rows": event.rows.tolist(), "describe": event.describe(dims)}


def main() -> None:
    q = st.query_params
    n, dims, n_classes = int(q.get("n", 300)), int(q.get("dims", 3)), int(q.get("classes", 3))
    if q.get("component") == "old":
        old_component(*synthetic(n, dims, n_classes))
        return
    ss = st.session_state
    ss.setdefault("selected", np.empty(0, dtype=np.int64))
    ss.setdefault("excluded", np.empty(0, dtype=np.int64))
    ss.setdefault("last", None)
    ss.setdefault("use_score", False)

    ss.setdefault("team_excluded", np.empty(0, dtype=np.int64))
    team = q.get("team") == "1"

    if st.button("Exclude the selection"):
        ss.excluded = np.union1d(ss.excluded, ss.selected)
        ss.team_excluded = np.setdiff1d(ss.team_excluded, ss.selected)
    if st.button("Clear the selection"):
        ss.selected = np.empty(0, dtype=np.int64)
    if team and st.button("A teammate excludes the selection"):
        ss.excluded = np.union1d(ss.excluded, ss.selected)
        ss.team_excluded = np.union1d(ss.team_excluded, ss.selected)
    if st.button("Colour by score"):
        ss.use_score = not ss.use_score
    base = base_payload(n, dims, n_classes, ss.use_score, q.get("names") == "1")
    payload = base.with_marks(
        selected_rows=ss.selected, excluded_rows=ss.excluded, team_excluded_rows=ss.team_excluded if team else None
    )
    if not st.checkbox("Hide the map"):  # unmounts the element, as switching between the app's maps does
        map_chart(payload, key=f"harness-map-{dims}d", height=520, on_event=lambda event: on_map_event(event, dims))
    state = {"selected": ss.selected.tolist(), "excluded": ss.excluded.tolist(), "last": ss.last}
    if team:
        state["team_excluded"] = ss.team_excluded.tolist()
    if len(ss.selected) + len(ss.excluded) > SHOWN_ROWS:  # the bench's big maps: a page of text, not megabytes
        state = {
            "selected": ss.selected[:SHOWN_ROWS].tolist(),
            "excluded": ss.excluded[:SHOWN_ROWS].tolist(),
            "last": {**ss.last, "rows": ss.last["rows"][:SHOWN_ROWS]} if ss.last else None,
            "truncated": True,
        }
    st.text("harness-state " + json.dumps(state, separators=(",", ":")))
    st.text(f"selected: {len(ss.selected)}")
    ss.runs = ss.get("runs", 0) + 1
    st.text(f"script runs: {ss.runs}")


if __name__ == "__main__":  # `streamlit run` runs it as __main__; the tests import synthetic()
    main()
