"""Beside the map: the gallery of the selection, the ranked review queue, the class-confusion table, or the audit."""

from __future__ import annotations

import streamlit as st

from cleaner.graph.neighbours import NeighbourGraph
from cleaner.io.images import ImageAccess
from cleaner.issues.suspects import ScanResult
from cleaner.server.config import Settings
from cleaner.ui.audit import audit_panel
from cleaner.ui.confusion import confusion_panel
from cleaner.ui.downloads import decision_files
from cleaner.ui.gallery import gallery, selection_tools
from cleaner.ui.review_queue import review_queue_panel
from cleaner.ui.state import DatasetWork, remembered
from cleaner.ui.team import conflicts_panel, is_team
from cleaner.ui.thumbs import thumbnail

REVIEW_VIEWS = ("Selected images", "Review queue", "Class confusion", "Audit")
CONFLICTS_VIEW = "Conflicts"  # team mode only: where teammates disagree


def review_area(
    work: DatasetWork, graph: NeighbourGraph | None, result: ScanResult | None, access: ImageAccess, cfg: Settings
) -> None:
    """The chosen view; before the neighbours are found (graph None) the selection's gallery only."""
    views = REVIEW_VIEWS + ((CONFLICTS_VIEW,) if is_team(work) else ())
    view = st.radio(
        "Review", views, horizontal=True, label_visibility="collapsed", **remembered("review_view", options=views)
    )
    if view == CONFLICTS_VIEW:
        conflicts_panel(work, lambda path: thumbnail(path, access)[0])
        return
    if graph is None or result is None:
        if view != REVIEW_VIEWS[0]:
            st.info(
                f"The {view.lower()} needs the nearest neighbours; they are being found (see under the map). "
                "Meanwhile, select images on the map or by class to look at them here."
            )
        selection_tools(work, None)
        gallery(work, access)
    elif view == REVIEW_VIEWS[0]:
        selection_tools(work, graph)
        gallery(work, access)
    elif view == REVIEW_VIEWS[1]:
        review_queue_panel(work, graph, result, access)
    elif view == REVIEW_VIEWS[3]:
        audit_panel(work, result, access, cfg, result.unreadable is not None, (graph.k, graph.metric))
    elif confusion_panel(work, result):
        gallery(work, access)
    else:
        decision_files(work)  # the gallery draws them when it is shown
