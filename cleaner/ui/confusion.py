"""Class confusion: which given labels the neighbours contradict, and with what; a row picks those images."""

from __future__ import annotations

import streamlit as st

from cleaner.issues.label import class_confusion
from cleaner.issues.suspects import ScanResult
from cleaner.server.text import plural
from cleaner.ui.state import DatasetWork, widget_value


def confusion_panel(work: DatasetWork, result: ScanResult) -> bool:
    """The table of (given label, neighbours' label) pairs; picking a row selects its images. True if any."""
    pairs = class_confusion(result.labels)
    if not pairs:
        st.success("No flagged label issues: the neighbours agree with the given labels.")
        return False
    st.caption("Pick a row to see those images below.")
    names = work.dataset.class_names
    table = {
        "given label": [names[p.given] for p in pairs],
        "neighbours say": [names[p.suggested] for p in pairs],
        "images": [p.count for p in pairs],
    }
    digest = work.dataset.digest
    key = f"confusion_{digest[:12]}"
    st.dataframe(
        table,
        on_select=lambda: _pick(work, pairs, key),
        selection_mode="single-row",
        hide_index=True,
        key=key,
        width="stretch",
        height=min(400, 38 + 35 * len(pairs)),
    )
    return True


def _pick(work: DatasetWork, pairs: list, key: str) -> None:
    """A picked row selects its images; a callback, so the map (drawn first) already shows them."""
    state = widget_value(key)
    picked = state.selection.rows if state else []
    if picked:
        names, pair = work.dataset.class_names, pairs[picked[0]]
        work.select(
            tuple(pair.rows.tolist()),
            f"labelled {names[pair.given]!r}, neighbours say {names[pair.suggested]!r} ({plural(pair.count, 'image')})",
        )
