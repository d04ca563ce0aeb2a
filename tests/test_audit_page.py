"""The audit view through AppTest: a uniform random sample judged card by card, what it says about the dataset, and
the model compared before and after cleaning."""

import csv
import io
import math
import time

import numpy as np

from cleaner.decisions.effect import effect_report

from .test_app import demo, start_app, work


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float, float]:
    """The Wilson score interval, written out here from its formula."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


def open_audit(at):
    at.radio(key="review_view").set_value("Audit")
    at.run()
    assert not at.exception, at.exception
    at.button(key="btn_audit_start").click()
    at.run()
    assert not at.exception, at.exception


def sample_rows(n: int, size: int) -> list[int]:
    return np.random.default_rng(0).permutation(n)[:size].tolist()


def card_rows(at) -> set[int]:
    """The rows on the audit's cards (the grid's columns list them column by column)."""
    return {int(b.key.removeprefix("a_keep_")) for b in at.button if b.key and b.key.startswith("a_keep_")}


def test_the_audit_shows_a_seeded_uniform_sample_and_its_verdicts_reach_the_decisions_file():
    at = start_app()
    data = demo()
    open_audit(at)
    expected = sample_rows(data.n, 100)
    assert card_rows(at) == set(expected[:6])
    first, second, third = expected[:3]
    at.button(key=f"a_keep_{first}").click().run()
    at.button(key=f"a_excl_{second}").click().run()
    other = next(n for n in data.class_names if n != data.label_text(third))
    at.selectbox(key=f"a_label_{third}").set_value(other).run()
    at.button(key=f"a_relabel_{third}").click().run()
    assert not at.exception, at.exception
    assert card_rows(at) == set(expected[3:9])  # judged cards make way for the next sampled images

    rows = {r["image_path"]: r for r in csv.DictReader(io.StringIO(work(at).decisions.decisions_csv()))}
    path = lambda row: str(data.image_paths[row])  # noqa: E731
    assert rows[path(first)]["audit_verdict"] == "keep" and rows[path(first)]["audit_label"] == data.label_text(first)
    assert rows[path(second)]["decision"] == "exclude" and rows[path(second)]["source"] == "audit"
    assert rows[path(third)]["decision"] == "relabel" and rows[path(third)]["new_label"] == other
    assert rows[path(third)]["audit_verdict"] == "relabel" and rows[path(third)]["audit_label"] == other

    rate, low, high = wilson(2, 3)
    shown = "\n".join(m.value for m in at.markdown)
    assert f"about **{100 * rate:.1f}% bad** ({100 * low:.1f}%–{100 * high:.1f}%)" in shown
    left = round(data.n * rate)  # nothing but the audit decided anything: every audited bad image is left
    assert f"About **{left:,} bad images left**" in shown

    at.button(key="btn_audit_undo").click().run()  # the relabel's verdict goes with its decision
    assert path(third) not in work(at).decisions.audit and path(third) not in work(at).decisions


def test_a_resumed_session_keeps_its_audit():
    at = start_app()
    data = demo()
    open_audit(at)
    expected = sample_rows(data.n, 100)
    for row in expected[:4]:
        at.button(key=f"a_excl_{row}").click().run()
    saved = work(at).decisions.decisions_csv()

    again = start_app()
    again.file_uploader(key="decisions_upload").set_value(("cleaner_decisions.csv", saved.encode(), "text/csv"))
    again.radio(key="review_view").set_value("Audit")
    again.run()
    assert not again.exception, again.exception
    fresh = work(again)
    assert "verdicts came back too" in "\n".join(a.value for a in again.success)
    assert sorted(fresh.decisions.audit) == sorted(str(data.image_paths[r]) for r in expected[:4])
    assert fresh.audit_size >= 4
    assert card_rows(again) == set(expected[4:10])


def test_the_models_before_and_after_are_compared_on_the_audited_rows():
    at = start_app()
    data = demo()
    open_audit(at)
    expected = sample_rows(data.n, 100)
    for row in expected[:12]:
        at.button(key=f"a_keep_{row}").click().run()
    at.button(key="btn_compare").click().run()
    job = work(at).effect_job
    assert job is not None
    job.future.result(timeout=300)
    deadline = time.monotonic() + 60
    while not any(m.label == "Before cleaning" for m in at.metric) and time.monotonic() < deadline:
        at.run()
    assert not at.exception, at.exception
    report = effect_report(data, work(at).decisions, None)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Before cleaning"] == f"{report.probe.accuracy_before:.3f}"
    assert metrics["After cleaning"] == f"{report.probe.accuracy_after:.3f}"
    assert report.probe.trusted_rows == 12  # every audited image kept its label, so every one is a trusted row
