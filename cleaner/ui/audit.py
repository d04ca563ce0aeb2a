"""Did the cleaning help? A random audit, the bad images left with an interval, and a model before and after."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

from cleaner.decisions.effect import (
    AUDIT_SIZE,
    BAD_LEFT,
    AuditEstimate,
    EffectReport,
    QueueYield,
    audit_rows,
    audit_summary,
    effect_report,
    queue_yield,
)
from cleaner.io.dataset import load_npz
from cleaner.io.dataset_types import DatasetError
from cleaner.io.images import ImageAccess
from cleaner.issues.suspects import ScanResult
from cleaner.server.config import Settings
from cleaner.server.text import plural
from cleaner.ui import cache
from cleaner.ui.downloads import decision_files
from cleaner.ui.keys import keys_work_at_once
from cleaner.ui.state import DatasetWork, remembered, widget_value, work_by_digest
from cleaner.ui.text import literal
from cleaner.ui.thumbs import thumbnail

AUDIT_SHOWN = 6
AUDIT_STEP = 100
SHORTCUTS = {"exclude": "X", "keep": "K", "relabel": "L", "undo": "U"}  # as in the review queue
TRUSTED_SOURCES = ("Audited images", "A validation NPZ")
CAUGHT_RULE = (
    "An audited image counts as caught when a queue or selection decision excluded or relabelled it, "
    "or when the review queue has been worked past its place in the scan's order."
)
PROBE_NOTE = (
    "The probe is a logistic regression on these embeddings: a linear read-out that stands in for your own "
    "model, not your model. It is trained once on the original labels and once on the cleaned data "
    "(exclusions left out, relabels applied), and both are scored on the same trusted rows, which neither "
    "training saw: scoring on the cleaned data itself would reward removing hard images."
)


def _verdict(work: DatasetWork, row: int, kind: str, label_key: str | None = None) -> None:
    new_label = str(widget_value(label_key) or "") if label_key else ""  # a relabel's label: read before anything
    work.audit(row, kind, new_label)  # type: ignore[arg-type]


@st.fragment
def audit_panel(
    work: DatasetWork,
    result: ScanResult,
    access: ImageAccess,
    cfg: Settings,
    images_checked: bool,
    graph_key: tuple[int, str],
) -> None:
    """The audit's images to judge, what they say about the whole dataset, and the model comparison."""
    dataset = work.dataset
    if work.map_redraw_due:
        st.rerun()
    keys_work_at_once()
    decision_files(work)
    st.markdown("**Audit a random sample: how much bad data is there, and how much is left?**")
    st.caption(
        "A uniform random sample of the dataset (seeded), kept apart from the review queue: the queue picks "
        "suspects on purpose, so only a random sample says how common bad images are. Your verdicts are "
        "decisions like any other: they reach the downloads and the decisions file keeps them as audited."
    )
    if work.audit_size == 0:
        st.button(
            f"Start an audit of {min(AUDIT_SIZE, dataset.n)} random images",
            key="btn_audit_start",
            type="primary",
            on_click=work.start_audit,
            args=(AUDIT_SIZE,),
        )
        return
    order = cache.review_order(dataset.digest, graph_key[0], graph_key[1], work.thorough, images_checked, result)
    estimate = audit_summary(dataset, work.decisions, order)
    _estimates(work, estimate)
    _cards(work, result, access)
    _model_comparison(work, result, cfg)


def _estimates(work: DatasetWork, estimate: AuditEstimate | None) -> None:
    """The bad images at the start and left, in words and as a chart, and whether the queue has run dry."""
    decisions = work.decisions
    found = queue_yield(decisions, estimate.bad.estimate if estimate is not None else None)
    if estimate is None:
        st.info("Judge the images below (is the label right?). The estimates appear with the first verdict.")
        return
    text, chart = estimate_text(estimate), _chart(estimate)
    cols = st.columns([3, 2], vertical_alignment="center")
    cols[0].markdown(text)
    cols[1].plotly_chart(chart, key="audit_chart", config={"displayModeBar": False})
    halve = (
        f" Auditing about {estimate.more_to_halve:,} more images would halve the bad rate's interval."
        if estimate.more_to_halve
        else ""
    )
    st.caption(
        f"95% Wilson score intervals.{' Small audits give wide intervals.' if estimate.audited < 400 else ''}"
        f"{halve} Bad left: {BAD_LEFT}. {CAUGHT_RULE}"
    )
    if found is not None:
        st.markdown(queue_text(found))


def estimate_text(a: AuditEstimate) -> str:
    """'About 5.1% bad (4.2-6.2%) at the start; your decisions caught about 78% of them; about 230 left (150-320).'"""
    start, left = a.bad_at_start, a.bad_left
    text = (
        f"Of **{plural(a.audited, 'audited image')}**, {a.bad.k:,} are bad: about **{_pct(a.bad.estimate)} bad** "
        f"({_pct(a.bad.low)}–{_pct(a.bad.high)}) at the start, about {_count(start[0])} images "
        f"({_count(start[1])}–{_count(start[2])})."
    )
    if a.recall.n:
        text += (
            f" Your other decisions caught about **{_pct(a.recall.estimate, 0)}** of the audited bad images "
            f"({a.recall.k} of {a.recall.n}; {_pct(a.recall.low, 0)}–{_pct(a.recall.high, 0)})."
        )
    text += f" About **{_count(left[0])} bad images left** ({_count(left[1])}–{_count(left[2])})."
    return text


def queue_text(q: QueueYield) -> str:
    """The queue's recent yield beside the audit's base rate: has it run dry?"""
    text = (
        f"Review queue: {q.found.k} of its last {q.found.n} decisions were bad images "
        f"({_pct(q.found.estimate, 0)}, {_pct(q.found.low, 0)}–{_pct(q.found.high, 0)})"
    )
    if q.run_dry is None:
        return text + "."
    if q.run_dry:
        return (
            text + f", no more than a random draw finds ({_pct(q.base_rate or 0.0)}): **the queue has run dry**; "
            "stop reviewing it, or look elsewhere on the map."
        )
    return text + f", against {_pct(q.base_rate or 0.0)} for a random draw: it still finds bad images faster."


def _chart(a: AuditEstimate) -> go.Figure:
    start, left = a.bad_at_start, a.bad_left
    values = [start[0], left[0]]
    fig = go.Figure(
        go.Bar(
            x=["At the start", "Left now"],
            y=[0 if math.isnan(v) else v for v in values],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [start[2] - start[0], left[2] - left[0]],
                "arrayminus": [start[0] - start[1], left[0] - left[1]],
            },
            marker_color=["#d62728", "#ff9896"],
            hovertemplate="%{y:,.0f} bad images<extra></extra>",
        )
    )
    fig.update_layout(
        height=200,
        margin={"l": 10, "r": 10, "t": 24, "b": 10},
        showlegend=False,
        title={"text": "Bad images (95% interval)", "font": {"size": 13}},
    )
    return fig


def _cards(work: DatasetWork, result: ScanResult, access: ImageAccess) -> None:
    dataset = work.dataset
    sample = audit_rows(dataset.n, work.audit_size)
    audited = work.decisions.audit
    pending = [int(r) for r in sample.tolist() if str(dataset.image_paths[r]) not in audited]
    done = len(sample) - len(pending)
    top = st.columns([3, 1.4, 1.4], vertical_alignment="bottom")
    top[0].markdown(f"**{done:,} of {len(sample):,} sampled images audited**")
    top[1].button(
        f"+{min(AUDIT_STEP, dataset.n - len(sample))} images",
        key="btn_audit_more",
        help="Audit more images of the same random sample: the intervals narrow",
        on_click=work.start_audit,
        args=(work.audit_size + AUDIT_STEP,),
        disabled=len(sample) >= dataset.n,
        width="stretch",
    )
    top[2].button(
        "Undo",
        key="btn_audit_undo",
        help="Take back the last decision",
        on_click=work.undo,
        disabled=not work.undo_stack,
        width="stretch",
        shortcut=SHORTCUTS["undo"],
    )
    if not pending:
        st.success("Every sampled image is audited. Audit more to narrow the intervals.")
        return
    st.caption("Keys for the first card: K correct · X exclude · L relabel · U undo")
    grid = st.columns(2)
    for slot, row in enumerate(pending[:AUDIT_SHOWN]):
        with grid[slot % 2].container(border=True, key=f"audit_slot_{slot}"):
            _card(work, result, row, access, first=slot == 0)


def _card(work: DatasetWork, result: ScanResult, row: int, access: ImageAccess, first: bool) -> None:
    dataset = work.dataset
    url, thumb = thumbnail(str(dataset.image_paths[row]), access)
    st.image(url, width=150)
    given = dataset.class_names[int(dataset.label_codes[row])]
    st.text(f"label: {given}")
    st.text(dataset.file_name(row))
    if not thumb.ok:
        st.text(f"⚠ {thumb.reason}")
    keys = SHORTCUTS if first else {}
    b = st.columns(2)
    b[0].button(
        "Correct",
        key=f"a_keep_{row}",
        on_click=_verdict,
        shortcut=keys.get("keep"),
        args=(work, row, "keep"),
        width="stretch",
    )
    b[1].button(
        "Exclude",
        key=f"a_excl_{row}",
        on_click=_verdict,
        type="primary",
        shortcut=keys.get("exclude"),
        args=(work, row, "exclude"),
        width="stretch",
    )
    others = [n for n in dataset.class_names if n != given]
    if others:
        suggested = dataset.class_names[int(result.labels.suggested_label[row])]
        label_key = f"a_label_{row}"
        r = st.columns([1.3, 1], vertical_alignment="bottom")
        r[0].selectbox(
            "Right label",
            others,
            key=label_key,
            label_visibility="collapsed",
            index=others.index(suggested) if suggested in others else 0,
            format_func=lambda name: f"→ {literal(name)}",
        )
        r[1].button(
            "Relabel",
            key=f"a_relabel_{row}",
            on_click=_verdict,
            shortcut=keys.get("relabel"),
            args=(work, row, "relabel", label_key),
            width="stretch",
        )


def _model_comparison(work: DatasetWork, result: ScanResult, cfg: Settings) -> None:
    """A linear probe trained before and after cleaning, scored on trusted rows, computed beside the page."""
    dataset = work.dataset
    st.divider()
    st.markdown("**Did it help? A model trained before and after cleaning**")
    st.caption(PROBE_NOTE)
    source = st.radio(
        "Trusted rows", TRUSTED_SOURCES, horizontal=True, **remembered("trusted_source", options=TRUSTED_SOURCES)
    )
    trusted = None
    if source == TRUSTED_SOURCES[1]:
        upload = st.file_uploader(
            "Validation NPZ (same format, embeddings from the same model, labels you trust)",
            type=["npz"],
            key="trusted_upload",
        )
        if upload is not None and (work.trusted is None or work.trusted[0] != upload.name):
            try:
                work.use_trusted(
                    upload.name, load_npz(upload.getvalue(), name=upload.name, max_bytes=cfg.max_npz_bytes)
                )
            except DatasetError as exc:
                work.use_trusted(upload.name, None, str(exc))
        if work.trusted_message:
            st.error(work.trusted_message)
        if work.trusted is None:
            return
        trusted = work.trusted[1]
    label = "file:" + work.trusted[0] if trusted is not None and work.trusted else "audit"
    key = (work.decisions.version, label)
    job = work.effect_job
    if st.button(
        "Compare the models" if job is None else "Compare again with the decisions as they are now",
        key="btn_compare",
        disabled=job is not None and (job.key == key or not job.future.done()),
    ):
        snapshot = work.decisions.snapshot()
        work.compare_models(key, cache.comparisons().submit(effect_report, dataset, snapshot, result, trusted))
        job = work.effect_job
    if job is not None:
        _comparison_result(work, key)


def _comparison_result(work: DatasetWork, key: tuple[int, str]) -> None:
    job = work.effect_job
    assert job is not None
    if not job.future.done():
        st.info("Training the probe twice and scoring it on the trusted rows…")
        _poll(work.dataset.digest)
        return
    error = job.future.exception()
    if error is not None:
        st.error(str(error) if isinstance(error, DatasetError) else f"The comparison failed: {error!r}")
        return
    report: EffectReport = job.future.result()
    p = report.probe
    if job.key != key:
        st.caption(f"Computed before your last {plural(key[0] - job.key[0], 'change')} to the decisions.")
    m = st.columns(3)
    m[0].metric("Before cleaning", f"{p.accuracy_before:.3f}", help="The probe's accuracy on the trusted rows")
    m[1].metric("After cleaning", f"{p.accuracy_after:.3f}", delta=f"{p.gain:+.3f}")
    m[2].metric("Gain", f"{p.gain:+.3f}", help=f"95% interval {p.gain_low:+.3f} to {p.gain_high:+.3f}")
    pv = f"{p.p_value:.3f}" if p.p_value >= 0.001 else f"{p.p_value:.1e}"
    where = "audited images with their verified labels" if report.trusted_source == "audit" else "the validation NPZ"
    st.caption(
        f"On {p.trusted_rows:,} trusted rows ({where}); trained on {p.training_rows_before:,} rows before and "
        f"{p.training_rows_after:,} after. Gain {p.gain:+.3f}, 95% interval {p.gain_low:+.3f} to {p.gain_high:+.3f} "
        f"({p.interval_method}). {p.better} rows went from wrong to "
        f"right and {p.worse} from right to wrong ({p.test_method}: p = {pv})."
    )
    st.dataframe(
        {
            "class": [c.name for c in p.per_class],
            "trusted rows": [c.n for c in p.per_class],
            "before": [round(c.before, 3) for c in p.per_class],
            "after": [round(c.after, 3) for c in p.per_class],
        },
        hide_index=True,
        height=200,
    )


@st.fragment(run_every=1.5)
def _poll(digest: str) -> None:
    """While the comparison runs: look again every 1.5 s, and show the result once it is there."""
    job = work_by_digest(digest).effect_job
    if job is None or job.future.done():
        st.rerun()


def _pct(value: float, digits: int = 1) -> str:
    return "?" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.{digits}f}%"


def _count(value: float) -> str:
    return "?" if math.isnan(value) else f"{round(value):,}"
