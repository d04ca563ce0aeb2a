"""A kind of issue is declared in one place: a toy kind added to the registry reaches the scan, the review queue,
the report and the map's colourings, with nothing else edited."""

import csv
import io

import numpy as np
import pytest

from cleaner.graph.distance import resolved_metric
from cleaner.graph.neighbours import neighbour_graph
from cleaner.issues import registry
from cleaner.issues.contract import IssueKind, IssueScores, fixed
from cleaner.issues.report import report_columns, report_csv
from cleaner.issues.review import pending_rows, reasons
from cleaner.issues.suspects import scores_from_graph
from cleaner.ui import cache

from .test_app import demo, start_app

TOY_FLAGGED = 7  # the rows with the largest first embedding value are the toy kind's suspects


def _toy_score(inputs) -> IssueScores:
    first = inputs.dataset.embeddings[:, 0].astype(np.float64)
    rank = np.argsort(np.argsort(-first))  # 0 for the largest
    score = np.clip(1.0 - rank / (2 * TOY_FLAGGED), 0, 1).astype(np.float32)
    flagged = rank < TOY_FLAGGED
    return IssueScores(name="toy", score=score, flagged=flagged, summary=f"{TOY_FLAGGED} samples are too toy-like")


TOY = IssueKind(
    name="toy",
    title="Toy issue",
    description="toy issues (the largest first embedding value)",
    score=_toy_score,
    reason=lambda dataset, s, row: (float(s.score[row]), f"toy {s.score[row]:.2f}") if s.flagged[row] else None,
    main_columns=("toy_score",),
    extra_columns=("toy",),
    column_values=lambda dataset, s: [fixed(s.score), s.flagged.astype(int).tolist()],
)


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setattr(registry, "ISSUE_KINDS", [*registry.ISSUE_KINDS, TOY])
    cache.suspects.clear()  # the page's scan results were computed with the registry as it was
    yield
    cache.suspects.clear()


def test_a_new_kind_reaches_the_scan_the_queue_the_reasons_and_the_report(toy_registered):
    data = demo()
    graph = neighbour_graph(data.embeddings, k=20, metric=resolved_metric("auto", data.embeddings))
    result = scores_from_graph(data, graph)
    expected = np.argsort(-data.embeddings[:, 0].astype(np.float64), kind="stable")[:TOY_FLAGGED]

    assert list(result.scores)[-1] == "toy"
    assert sorted(pending_rows(result, "toy", []).tolist()) == sorted(expected.tolist())
    assert f"toy {1.0:.2f}" in reasons(data, result, int(expected[0]))
    assert "toy" in registry.orders(result.scores)

    header = report_columns()
    assert "toy_score" in header and header.index("toy_score") < header.index("label_issue")  # a main column
    rows = list(csv.DictReader(io.StringIO(report_csv(data, result))))
    assert sorted(int(r["index"]) for r in rows if r["toy"] == "1") == sorted(expected.tolist())


def test_a_new_kind_is_offered_in_the_page_as_a_queue_order_and_a_map_colouring(toy_registered):
    at = start_app()
    assert "Toy issue" in at.selectbox(key="color_by").options
    at.selectbox(key="color_by").set_value("toy")
    at.run()
    assert not at.exception, at.exception
    at.radio(key="review_view").set_value("Review queue")
    at.run()
    assert not at.exception, at.exception
    assert "Toy issue" in at.selectbox(key="queue_order").options
