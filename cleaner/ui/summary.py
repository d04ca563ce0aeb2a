"""The compact header: what the dataset is, what the user decided so far, and what the scores found."""

from __future__ import annotations

import streamlit as st

from cleaner.issues.suspects import ScanResult
from cleaner.server.text import plural
from cleaner.ui.state import DatasetWork


def dataset_summary(work: DatasetWork) -> None:
    """One line: name, size, classes and the decisions so far (plain text: the name is user input)."""
    dataset, decisions = work.dataset, work.decisions
    st.text(
        f"{dataset.name} · {plural(dataset.n, 'image')} · {dataset.dims:,}-D embeddings · "
        f"{plural(len(dataset.class_names), 'class', 'classes')} · "
        f"{decisions.count('exclude'):,} excluded · {decisions.count('relabel'):,} relabelled · "
        f"{decisions.count('keep'):,} kept"
    )


# Room for the summary of every score at the review pane's usual width: the pane below keeps its place when the
# scores arrive (a longer summary, in a narrow window, scrolls within it).
SUMMARY_HEIGHT_PX = 132


def suspects_summary(result: ScanResult | None) -> None:
    box = st.container(height=SUMMARY_HEIGHT_PX, border=False)
    if result is None:
        box.text("Suspects: scored once the nearest neighbours are found (see under the map).")
        return
    lines = [s.summary for s in result.all()]
    if result.unreadable is None:
        lines.append("image files not checked yet (“Check image files” in the review queue)")
    box.text("Suspects: " + " · ".join(lines))  # plain text: summaries may quote labels
