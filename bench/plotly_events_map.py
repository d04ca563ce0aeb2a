"""The map cleaner drew before its own component (streamlit-plotly-events, plotly.js 1.58, JSON lists): kept only
as the reference that bench/map_draw.py measures the new map against."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass

import numpy as np

# Imported whole before any figure is built: plotly's validators look pandas up in sys.modules without importing
# it, and on a server another session's thread can be halfway through importing it (seen at 100k rows:
# "partially initialized module 'pandas' has no attribute 'Series'").
import pandas  # noqa: F401
import plotly.graph_objects as go
from plotly.colors import qualitative

from cleaner.io.dataset_types import Dataset

PALETTE = qualitative.Dark24 + qualitative.Light24
MAX_CLASS_TRACES = 40  # more classes than this are drawn as one trace colored by class id
HOVER_MAX_POINTS = 20_000  # above this, per-point hover strings cost more bytes than they are worth
EXCLUDED_NAME = "excluded"


def plain_text(value: object) -> str:
    """Text for Plotly labels: its pseudo-HTML is escaped so a label shows literally and never runs."""
    return html.escape(str(value), quote=False)


@dataclass(frozen=True, eq=False)
class MapFigure:
    """A figure serialised once, plus the dataset rows behind each trace's points."""

    figure_json: str
    trace_rows: tuple[np.ndarray, ...]

    def to_json(self) -> str:  # streamlit_plotly_events calls this: reuse the cached string
        return self.figure_json

    def rows_for(self, curve: int, point: int) -> int | None:
        if 0 <= curve < len(self.trace_rows) and 0 <= point < len(self.trace_rows[curve]):
            return int(self.trace_rows[curve][point])
        return None

    @property
    def n_bytes(self) -> int:
        return len(self.figure_json.encode())


def _rounded(values: np.ndarray) -> list[float]:
    return np.round(values.astype(np.float64), 3).tolist()


def _groups(dataset: Dataset, scores: np.ndarray | None) -> list[tuple[str, np.ndarray, dict]]:
    """(trace name, rows, marker) for each trace of points."""
    n = dataset.n
    if scores is not None:
        rows = np.argsort(scores, kind="stable")  # most suspect drawn last, on top
        marker = dict(
            color=_rounded(scores[rows]),
            colorscale="YlOrRd",
            cmin=0.0,
            cmax=1.0,
            colorbar=dict(title="score", thickness=12),
        )
        return [("all samples", rows, marker)]
    n_classes = len(dataset.class_names)
    if n_classes > MAX_CLASS_TRACES:
        rows = np.arange(n)
        marker = dict(color=dataset.label_codes.tolist(), colorscale="Turbo")
        return [(f"{n_classes} classes", rows, marker)]
    return [
        (plain_text(name), np.flatnonzero(dataset.label_codes == code), dict(color=PALETTE[code % len(PALETTE)]))
        for code, name in enumerate(dataset.class_names)
    ]


def _hover(dataset: Dataset, rows: np.ndarray) -> list[str] | None:
    if dataset.n > HOVER_MAX_POINTS:
        return None
    return [f"{plain_text(dataset.label_text(r))} · {plain_text(dataset.file_name(r))}" for r in rows]


def map_3d(
    dataset: Dataset,
    coords: np.ndarray,
    excluded_rows: np.ndarray,
    scores: np.ndarray | None = None,
    title: str = "",
) -> MapFigure:
    """3D scatter as plain lists (streamlit-plotly-events bundles plotly.js 1.58, which cannot read typed arrays)."""
    marker_size = 3 if dataset.n <= 5_000 else 2
    traces, trace_rows = [], []
    for name, rows, marker in _groups(dataset, scores):
        hover = _hover(dataset, rows)
        traces.append(
            go.Scatter3d(
                x=_rounded(coords[rows, 0]),
                y=_rounded(coords[rows, 1]),
                z=_rounded(coords[rows, 2]),
                mode="markers",
                name=name,
                marker=dict(size=marker_size, **marker),
                hovertext=hover,
                hoverinfo="text+name" if hover else "name",
            )
        )
        trace_rows.append(rows)
    excluded_rows = np.asarray(excluded_rows, dtype=np.int64)
    traces.append(
        go.Scatter3d(
            x=_rounded(coords[excluded_rows, 0]),
            y=_rounded(coords[excluded_rows, 1]),
            z=_rounded(coords[excluded_rows, 2]),
            mode="markers",
            name=f"{EXCLUDED_NAME} ({len(excluded_rows)})",
            marker=dict(size=marker_size + 3, color="black", symbol="x"),
            hovertext=_hover(dataset, excluded_rows),
            hoverinfo="text+name",
        )
    )
    trace_rows.append(excluded_rows)
    fig = go.Figure(traces)
    fig.update_layout(
        title=plain_text(title) if title else None,
        margin=dict(l=0, r=0, t=30 if title else 0, b=0),
        height=600,
        legend=dict(itemsizing="constant"),
        uirevision="keep-camera",
        scene=dict(xaxis=dict(title=""), yaxis=dict(title=""), zaxis=dict(title="")),
    )
    return MapFigure(figure_json=json.dumps(fig.to_plotly_json(), separators=(",", ":")), trace_rows=tuple(trace_rows))


def map_2d(
    dataset: Dataset, coords: np.ndarray, excluded_rows: np.ndarray, scores: np.ndarray | None = None
) -> go.Figure:
    """2D WebGL scatter for box/lasso selection; each point carries its dataset row as customdata."""
    traces = []
    for name, rows, marker in _groups(dataset, scores):
        hover = _hover(dataset, rows)
        traces.append(
            go.Scattergl(
                x=coords[rows, 0],
                y=coords[rows, 1],
                mode="markers",
                name=name,
                customdata=rows,
                marker=dict(size=5 if dataset.n <= 5_000 else 3, **marker),
                hovertext=hover,
                hoverinfo="text+name" if hover else "name",
            )
        )
    excluded_rows = np.asarray(excluded_rows, dtype=np.int64)
    traces.append(
        go.Scattergl(
            x=coords[excluded_rows, 0],
            y=coords[excluded_rows, 1],
            mode="markers",
            customdata=excluded_rows,
            name=f"{EXCLUDED_NAME} ({len(excluded_rows)})",
            marker=dict(size=8, color="black", symbol="x"),
            hovertext=_hover(dataset, excluded_rows),
            hoverinfo="text+name",
        )
    )
    fig = go.Figure(traces)
    fig.update_layout(
        dragmode="lasso",
        height=600,
        margin=dict(l=0, r=0, t=0, b=0),
        uirevision="keep-view",
        legend=dict(itemsizing="constant"),
        xaxis=dict(title=""),
        yaxis=dict(title="", scaleanchor="x"),
    )
    return fig
