"""The review queue's page mode: a page of suspects that tell one story, its proposed actions, one batch of decisions
that exports as if decided one by one, one undo step, and one re-scoring of the queue per page."""

import csv
import io

import numpy as np

from cleaner.decisions.records import AuditVerdict
from cleaner.graph.distance import resolved_metric
from cleaner.graph.neighbours import neighbour_graph
from cleaner.io.dataset import dataset_from_arrays, npz_bytes
from cleaner.issues.label import rescore_label_issues
from cleaner.issues.review import (
    KEPT_REASON,
    next_page_rows,
    pending_rows,
    reasons,
    review_page,
    typical_rows,
)
from cleaner.issues.suspects import scan, scores_from_graph
from cleaner.ui.state import DatasetWork, UndoBatch, UndoStep

from .conftest import clustered_arrays
from .test_app import demo, start_app, work

FLIPS = {(0, 1): 6, (2, 0): 3}  # (true class, given class): how many images carry the wrong label


def _planted(dups: bool = False):
    """Three clusters of 60 with labels flipped per FLIPS (every 5th image from the 3rd), optionally two groups of
    exact copies; (dataset, planted rows by (given, true) class)."""
    emb, labels = clustered_arrays(n_per_class=60, n_classes=3, dims=8, seed=3)
    labels = labels.copy()
    planted = {}
    for (true, given), count in FLIPS.items():
        rows = np.flatnonzero(labels == true)[2 : 2 + 5 * count : 5]
        labels[rows] = given
        planted[(given, true)] = rows
    if dups:
        emb[[31, 33]] = emb[30]  # a group of three copies in class 0 (30 is not flipped: 2, 7, 12, ...)
        emb[131] = emb[130]  # and a pair in class 2
    paths = np.array([f"/img/{i:03d}.png" for i in range(len(labels))])
    return dataset_from_arrays(emb, labels, paths, "planted"), planted


def _card_mode_choice(dataset, result, row: int, kind: str, new_label: str = "") -> tuple:
    """What the card mode's button records for a row: the card's first reason (Keep: KEPT_REASON)."""
    reason = KEPT_REASON if kind == "keep" else reasons(dataset, result, row)[0]
    return row, kind, reason, new_label


# ---------------------------------------------------------------- the page: pure logic


def test_a_page_shows_one_label_story_with_the_relabel_proposed():
    dataset, planted = _planted()
    result = scan(dataset)
    pending = pending_rows(result, "worst", [])
    assert sorted(pending.tolist()) == sorted(np.concatenate(list(planted.values())).tolist())  # only the flips
    page = review_page(dataset, result, "worst", pending, size=24)
    head = int(pending[0])
    story = (int(dataset.label_codes[head]), int(result.labels.suggested_label[head]))
    assert (page.story.given, page.story.suggested) == story and story in planted
    assert page.rows == tuple(r for r in pending.tolist() if r in set(planted[story].tolist()))  # queue order
    assert page.story_total == len(planted[story])
    names = dataset.class_names
    for card in page.cards:
        assert (card.action, card.new_label, card.ticked) == ("relabel", names[story[1]], True)
        assert card.reason == reasons(dataset, result, card.row)[0] and card.reason.startswith("label issue")
    # the page after it: the other story, whose rows are what the first page prefetches
    left = pending[~np.isin(pending, page.rows)]
    second = review_page(dataset, result, "worst", left, size=24)
    other = next(s for s in planted if s != story)
    assert (second.story.given, second.story.suggested) == other
    assert set(second.rows) == set(planted[other].tolist())
    assert next_page_rows(result, "worst", pending, page).tolist() == list(second.rows)
    # a smaller page holds the story's first suspects; the next page starts again from the most suspect left
    small = review_page(dataset, result, "worst", pending, size=3)
    assert small.rows == page.rows[:3] and small.story_total == page.story_total
    after = review_page(dataset, result, "worst", pending[~np.isin(pending, small.rows)], size=3)
    assert next_page_rows(result, "worst", pending, small).tolist() == list(after.rows)


def test_a_page_of_near_duplicates_proposes_excluding_every_copy_but_one():
    dataset, _ = _planted(dups=True)
    result = scan(dataset)
    pending = pending_rows(result, "near_duplicate", [])
    assert sorted(pending.tolist()) == [30, 31, 33, 130, 131]
    page = review_page(dataset, result, "near_duplicate", pending, size=24)
    assert page.story.kind == "near_duplicate" and sorted(page.rows) == [30, 31, 33, 130, 131]
    groups = [c.group for c in page.cards]
    assert groups == sorted(groups, key=groups.index)  # group by group
    score = result.labels.score
    for g in set(groups):
        members = [c for c in page.cards if c.group == g]
        keeper = min((c.row for c in members), key=lambda r: (score[r], r))  # the label its neighbours back most
        assert [c.row for c in members if not c.ticked] == [keeper]
        assert all(c.action == "exclude" and c.reason.startswith("near-duplicate") for c in members)
    # once that copy is excluded, another one is kept
    first_keeper = next(c.row for c in page.cards if not c.ticked and c.group == page.cards[0].group)
    learned = result.with_scores(
        rescore_label_issues(
            neighbour_graph(dataset.embeddings, k=20, metric=resolved_metric("auto", dataset.embeddings)),
            dataset.label_codes,
            3,
            excluded=[first_keeper],
            previous=result.labels,
        )
    )
    left = pending[pending != first_keeper]
    again = review_page(dataset, learned, "near_duplicate", left, size=24)
    same_group = [c for c in again.cards if c.group == page.cards[0].group]
    assert len(same_group) == len([c for c in page.cards if c.group == page.cards[0].group]) - 1
    assert sum(not c.ticked for c in same_group) == 1
    # a page too small for the next group does not split it
    first_group = tuple(c.row for c in page.cards if c.group == page.cards[0].group)
    assert len(first_group) < 3 and review_page(dataset, result, "near_duplicate", pending, size=3).rows == first_group


def test_a_page_of_outliers_proposes_exclusion():
    dataset, _ = _planted()
    emb = np.vstack(
        [dataset.embeddings, np.random.default_rng(1).normal(0, 80, (3, 8)).astype(np.float32)]
    )  # far from all
    labels = np.append(dataset.labels, [0, 1, 2])
    paths = np.append(dataset.image_paths, ["/img/far_0.png", "/img/far_1.png", "/img/far_2.png"])
    far = dataset_from_arrays(emb, labels, paths, "far")
    result = scan(far)
    pending = pending_rows(result, "outlier", [])
    page = review_page(far, result, "outlier", pending)
    assert page.story.kind == "outlier" and page.rows == tuple(pending.tolist())
    assert all(c.action == "exclude" and c.ticked and c.reason.startswith("outlier") for c in page.cards)


def test_each_class_typical_images_are_its_most_central_by_the_graph():
    dataset, _ = _planted()
    graph = neighbour_graph(dataset.embeddings, k=20, metric=resolved_metric("auto", dataset.embeddings))
    codes = dataset.label_codes
    typical = typical_rows(graph.indices, graph.distances, codes, 3, per_class=5)
    # counted here the slow way: how many images of its own class list it among their neighbours
    pointed = np.zeros(len(codes), dtype=int)
    for row in range(len(codes)):
        for other in graph.indices[row]:
            pointed[other] += codes[other] == codes[row]
    for code, rows in enumerate(typical):
        assert len(rows) == 5 and (codes[rows] == code).all()
        members = np.flatnonzero(codes == code)
        assert pointed[rows].min() >= np.sort(pointed[members])[-5]  # none more central was left out
        assert list(pointed[rows]) == sorted(pointed[rows], reverse=True)


# ---------------------------------------------------------------- the batch in the session's work


def _page_and_work():
    dataset, _ = _planted()
    result = scan(dataset)
    pending = pending_rows(result, "worst", [])
    page = review_page(dataset, result, "worst", pending, size=24)
    return dataset, result, page, DatasetWork(dataset, user="ana@example.org")


def test_a_page_exports_exactly_as_its_cards_decided_one_by_one():
    dataset, result, page, paged = _page_and_work()
    shown = paged.show_page("worst", page)
    kept = {page.rows[1], page.rows[2]}
    for row in kept:
        paged.toggle_page_card(row)
    assert paged.show_page("worst", page).ticked == shown.ticked - kept  # the same page keeps its ticks
    paged.apply_page(page.rows)
    one_by_one = DatasetWork(dataset, user="ana@example.org")
    for card in page.cards:
        kind = "keep" if card.row in kept else "relabel"
        one_by_one.decide(*_card_mode_choice(dataset, result, card.row, kind, card.new_label if kind != "keep" else ""))
    assert paged.decisions.decisions_csv() == one_by_one.decisions.decisions_csv()
    assert paged.decisions.relabel_csv() == one_by_one.decisions.relabel_csv()
    rows = list(csv.DictReader(io.StringIO(paged.decisions.decisions_csv())))
    assert {r["source"] for r in rows} == {"queue"} and {r["decided_by"] for r in rows} == {"ana@example.org"}
    assert len(paged.undo_stack) == 1 and len(one_by_one.undo_stack) == len(page.cards)
    assert paged.queue_page is None


def test_a_page_is_one_undo_step_and_single_and_audit_steps_still_undo_one_by_one():
    dataset, result, page, w = _page_and_work()
    other = next(r for r in range(dataset.n) if r not in page.rows)
    audited = next(r for r in range(dataset.n) if r not in page.rows and r != other)
    w.decide(other, "exclude", "by hand")
    w.audit(audited, "keep")
    w.show_page("worst", page)
    w.toggle_page_card(page.rows[0])
    w.apply_page(page.rows)
    assert len(w.decisions) == 2 + len(page.cards)
    assert isinstance(w.undo_stack[-1], UndoBatch) and isinstance(w.undo_stack[0], UndoStep)
    w.undo()  # the whole page, nothing else
    assert len(w.decisions) == 2 and all(str(dataset.image_paths[r]) not in w.decisions for r in page.rows)
    assert w.decisions.audit == {str(dataset.image_paths[audited]): AuditVerdict("keep", dataset.label_text(audited))}
    w.undo()  # the audit's verdict
    assert w.decisions.audit == {} and len(w.decisions) == 1
    w.undo()  # the single card
    assert len(w.decisions) == 0 and not w.undo_stack


def test_a_page_decided_twice_or_replaced_is_not_applied_again():
    dataset, result, page, w = _page_and_work()
    w.show_page("worst", page)
    w.apply_page(page.rows[1:])  # not the page shown: nothing happens
    assert len(w.decisions) == 0
    w.apply_page(page.rows)
    version = w.decisions.version
    w.apply_page(page.rows)  # a second click that was on its way
    assert w.decisions.version == version and len(w.undo_stack) == 1
    w.decide_many([])  # an empty batch leaves no undo step
    assert len(w.undo_stack) == 1


# ---------------------------------------------------------------- the page in the app (AppTest)


def _flipped_demo() -> tuple[bytes, object]:
    """The demo's embeddings and image paths with 16 of the 4s labelled 9 and 6 of the 1s labelled 7."""
    data = demo()
    labels = data.labels.astype(str).copy()
    for true, given, count in (("4", "9", 16), ("1", "7", 6)):
        rows = np.flatnonzero(labels == true)[::9][:count]
        labels[rows] = given
    return npz_bytes(data.embeddings, labels, data.image_paths), dataset_from_arrays(
        data.embeddings, labels, data.image_paths, "flipped_demo.npz"
    )


def test_a_page_is_applied_in_one_rerun_re_scored_once_and_undone_in_one_step(monkeypatch):
    from cleaner.issues import label as scores

    passes: list[int] = []  # rows each re-scoring pass computed
    score_rows = scores.score_rows
    monkeypatch.setattr(
        scores, "score_rows", lambda indices, *args: passes.append(len(indices)) or score_rows(indices, *args)
    )
    data, dataset = _flipped_demo()
    at = start_app()
    at.radio(key="data_source").set_value("Upload an NPZ").run()
    at.file_uploader(key="npz_upload").set_value(("flipped_demo.npz", data, "application/octet-stream")).run()
    at.radio(key="review_view").set_value("Review queue").run()
    at.button_group(key="queue_mode").set_value("Page").run()
    assert not at.exception, at.exception
    # the page expected, from scores computed here
    graph = neighbour_graph(dataset.embeddings, k=20, metric=resolved_metric("auto", dataset.embeddings))
    result = scores_from_graph(dataset, graph)
    pending = pending_rows(result, "worst", [])
    page = review_page(dataset, result, "worst", pending, size=24)
    assert len(page.cards) >= 4
    w = work(at)
    assert w.queue_page.rows == page.rows
    assert {b.key for b in at.button if b.key and b.key.startswith("pg_")} == {f"pg_{r}" for r in page.rows}
    names = dataset.class_names
    assert any(
        m.value.startswith(f"**Labelled {names[page.story.given]}, the neighbours say {names[page.story.suggested]}**")
        for m in at.markdown
    )

    passes.clear()
    kept = [page.rows[1], page.rows[3]]
    for row in kept:
        at.button(key=f"pg_{row}").click().run()
    assert passes == []  # a toggle decides nothing: nothing to re-score
    assert at.button(key=f"pg_{kept[0]}").label == "Keep"
    version, undo_depth = w.decisions.version, len(w.undo_stack)
    at.button(key="btn_apply_page").click().run()
    assert not at.exception, at.exception
    assert len(passes) == 1  # the queue re-scored once for the whole page
    assert len(w.undo_stack) == undo_depth + 1 and w.decisions.version > version

    expected = [
        _card_mode_choice(
            dataset, result, c.row, "keep" if c.row in kept else c.action, "" if c.row in kept else c.new_label
        )
        for c in page.cards
    ]
    rows = list(csv.DictReader(io.StringIO(w.decision_files()[2])))  # what "All decisions" serves
    assert [
        (r["image_path"], r["decision"], r["reason"], r["new_label"], r["old_label"], r["source"]) for r in rows
    ] == [
        (str(dataset.image_paths[row]), kind, reason, new, dataset.label_text(row), "queue")
        for row, kind, reason, new in expected
    ]
    # the queue moved on to the next page, the learned scores being those after every card's decision
    assert not set(w.queue_page.rows) & set(page.rows)
    relabelled = {r: names.index(new) for r, kind, _, new in expected if kind == "relabel"}
    learned = rescore_label_issues(graph, dataset.label_codes, len(names), relabelled=relabelled)
    np.testing.assert_allclose(w.learned_labels.labels.score, learned.score, atol=1e-6)

    at.button(key="btn_undo").click().run()  # one click takes the whole page back
    assert len(w.decisions) == 0 and len(w.undo_stack) == undo_depth
    assert w.queue_page.rows == page.rows and w.queue_page.ticked == frozenset(page.rows)  # as proposed again
