"""Sidebar: resume from a saved list, and the files that carry the decisions to training."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from ..decisions import cleaned_npz, exclusion_file_name, parse_decisions, relabel_file_name
from ..report import report_csv
from ..scores import plural
from ..suspects import ScanResult
from .state import DatasetWork, is_new_event
from .text import literal


def resume_and_downloads(work: DatasetWork, result: ScanResult | None) -> None:
    """Resume from an earlier list or decisions CSV, and download the current decisions."""
    side = st.sidebar
    side.subheader("Decisions")
    _resume(work)
    decisions = work.decisions
    side.text(f"{plural(decisions.count('exclude'), 'image')} excluded, {decisions.count('relabel'):,} relabelled, "
              f"{decisions.count('keep'):,} kept")
    # Files are built when clicked, from the live decisions: current even after a panel-only rerun.
    side.download_button("Download exclusion list", data=decisions.exclusion_text, file_name=exclusion_file_name(),
                         mime="text/plain", on_click="ignore", key="dl_txt", width="stretch")
    side.download_button("Download labels to fix (CSV)", data=decisions.relabel_csv, file_name=relabel_file_name(),
                         mime="text/csv", on_click="ignore", key="dl_relabels", width="stretch",
                         help="image_path, old_label, new_label for every relabel")
    side.download_button("Download decisions (CSV)", data=decisions.decisions_csv, file_name="cleaner_decisions.csv",
                         mime="text/csv", on_click="ignore", key="dl_decisions", width="stretch",
                         help="Every decision with its reason; upload it again to resume")
    dataset = work.dataset
    side.download_button("Download scores report (CSV)", data=lambda: report_csv(dataset, result),
                         file_name="cleaner_report.csv", mime="text/csv", on_click="ignore", key="dl_report",
                         width="stretch", disabled=result is None,
                         help="One row per image: label-issue, outlier, duplicate and unreadable scores"
                         if result is not None else "The scores follow once the nearest neighbours are found")
    side.download_button("Download cleaned NPZ", data=lambda: cleaned_npz(dataset, decisions),
                         file_name=f"cleaned_{Path(dataset.name).stem or 'dataset'}.npz",
                         mime="application/octet-stream", on_click="ignore", key="dl_npz", width="stretch",
                         help="The dataset to train on: without the excluded images, with the new labels")


def _resume(work: DatasetWork) -> None:
    upload = st.sidebar.file_uploader("Resume from a saved list or decisions CSV", type=["txt", "csv"],
                                      key="decisions_upload")
    if upload is None:
        work.forget_list_message()  # the message belongs to the file shown in the uploader
    elif is_new_event("decisions_upload", (work.dataset.digest, upload.file_id)):
        try:
            parsed = parse_decisions(upload.getvalue())
        except ValueError as exc:
            work.reject_list(upload.name, str(exc))
        else:
            work.resume(parsed, upload.name)
    if work.list_message:
        kind, text = work.list_message
        getattr(st.sidebar, kind)(literal(text))  # holds the uploaded file's name
