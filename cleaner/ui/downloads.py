"""Sidebar: resume from a saved list, and the files that carry the decisions to training."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cleaner.decisions.records import (
    DecisionsError,
    cleaned_npz,
    exclusion_file_name,
    parse_decisions,
    relabel_file_name,
)
from cleaner.issues.report import report_csv
from cleaner.issues.suspects import ScanResult
from cleaner.server.text import plural
from cleaner.ui.state import DatasetWork, is_new_event
from cleaner.ui.text import literal


def resume_and_downloads(work: DatasetWork, result: ScanResult | None) -> None:
    """Sidebar: resume from an earlier list or decisions CSV; the scores report and the cleaned dataset."""
    side = st.sidebar
    side.subheader("Decisions")
    _resume(work)
    side.caption("The exclusion list and the decision files are above the images you review.")
    # Built on click: the report is large, and the cleaned NPZ is the whole dataset, too big to rebuild on every
    # run; built on click, it also holds the decisions made since the sidebar was last drawn.
    dataset, decisions = work.dataset, work.decisions
    side.download_button(
        "Download scores report (CSV)",
        data=lambda: report_csv(dataset, result),
        file_name="cleaner_report.csv",
        mime="text/csv",
        on_click="ignore",
        key="dl_report",
        width="stretch",
        disabled=result is None,
        help="One row per image: label-issue, outlier, duplicate and unreadable scores"
        if result is not None
        else "The scores follow once the nearest neighbours are found",
    )
    side.download_button(
        "Download cleaned NPZ",
        data=lambda: cleaned_npz(dataset, decisions),
        file_name=f"cleaned_{Path(dataset.name).stem or 'dataset'}.npz",
        mime="application/octet-stream",
        on_click="ignore",
        key="dl_npz",
        width="stretch",
        help="The dataset to train on: without the excluded images, with the new labels",
    )


def decision_files(work: DatasetWork) -> None:
    """The decisions so far and the three files a training script reads, drawn in the panel where decisions are made.

    Their data is built with the panel, not on click: a decision reruns only its panel, so the files are current
    once the panel has redrawn after it; and this session's page references them, so no other session's rerun
    removes them before the browser fetches them (Streamlit removes a file built on click once any session's run
    ends without referencing it, which ten busy sessions made happen between a click and its download). One gap
    is Streamlit's: a whole-page run drops the session's references when it starts and draws this row again only
    when it reaches it, so a click in that interval can still meet the old failure.
    """
    decisions = work.decisions
    exclusion_list, labels_to_fix, all_decisions = work.decision_files()
    st.caption(
        f"Your decisions: {plural(decisions.count('exclude'), 'image')} excluded, "
        f"{decisions.count('relabel'):,} relabelled, {decisions.count('keep'):,} kept. Download for training:"
    )
    cols = st.columns(3)
    cols[0].download_button(
        "Exclusion list",
        data=exclusion_list,
        file_name=exclusion_file_name(),
        mime="text/plain",
        on_click="ignore",
        key="dl_txt",
        width="stretch",
        help="A text file, one excluded image path per line: what training leaves out",
    )
    cols[1].download_button(
        "Labels to fix",
        data=labels_to_fix,
        file_name=relabel_file_name(),
        mime="text/csv",
        on_click="ignore",
        key="dl_relabels",
        width="stretch",
        help="A CSV of image_path, old_label, new_label for every relabel",
    )
    cols[2].download_button(
        "All decisions",
        data=all_decisions,
        file_name="cleaner_decisions.csv",
        mime="text/csv",
        on_click="ignore",
        key="dl_decisions",
        width="stretch",
        help="A CSV of every decision with its reason; upload it again to resume",
    )


def _resume(work: DatasetWork) -> None:
    upload = st.sidebar.file_uploader(
        "Resume from a saved list or decisions CSV", type=["txt", "csv"], key="decisions_upload"
    )
    if upload is None:
        work.forget_list_message()  # the message belongs to the file shown in the uploader
    elif is_new_event("decisions_upload", (work.dataset.digest, upload.file_id)):
        try:
            parsed = parse_decisions(upload.getvalue())
        except DecisionsError as exc:
            work.reject_list(upload.name, str(exc))
        else:
            work.resume(parsed, upload.name)
    if work.list_message:
        kind, text = work.list_message
        getattr(st.sidebar, kind)(literal(text))  # holds the uploaded file's name
