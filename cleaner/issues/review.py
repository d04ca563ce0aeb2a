"""The review queue's logic: all scores from the shared graph, a reason a person can read, and what is left to review."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cleaner.io.dataset_types import Dataset
from cleaner.issues.ranking import review_queue
from cleaner.issues.registry import WORST, kind_named
from cleaner.issues.suspects import ScanResult


def reasons(dataset: Dataset, result: ScanResult, row: int) -> list[str]:
    """Why a sample is flagged, strongest first, in words (empty when nothing is flagged).

    Only flagged issues are named, so a card never contradicts the summary's counts."""
    found = [kind_named(name).reason(dataset, scores, row) for name, scores in result.scores.items()]
    return [text for _, text in sorted((f for f in found if f is not None), key=lambda item: -item[0])]


def neighbour_summary(names: list[str], distances: list[float]) -> str:
    """The neighbours' labels with their counts, the commonest first, and their distances' range, in one line."""
    counts = Counter(names)
    labels = " · ".join(f"{name} ×{count}" for name, count in counts.most_common())
    if not distances:
        return labels
    low, high = min(distances), max(distances)
    spread = f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}–{high:.2f}"
    return f"{labels} · distance {spread}"


def pending_rows(result: ScanResult, by: str, done_rows: Iterable[int], flagged_only: bool = True) -> np.ndarray:
    """The queue ordered most suspect first, without the samples already decided."""
    scores = result.all()
    if by not in {s.name for s in scores} | {WORST}:
        return np.array([], dtype=np.int64)
    order = review_queue(*scores, by=by, flagged_only=flagged_only)
    done = np.fromiter(done_rows, dtype=np.int64)
    return order[~np.isin(order, done)] if done.size else order


# ---------------------------------------------------------------- page mode: a page of suspects that tell one story

KEPT_REASON = "kept after review"  # the reason of a Keep, in card mode and page mode alike
PAGE_SIZES = (12, 24, 36, 48)
PAGE_SIZE = 24


@dataclass(frozen=True)
class Story:
    """What every suspect on a page has in common: its kind of issue and, for a label issue, the given label and
    the label its neighbours suggest (class codes; -1 for other kinds)."""

    kind: str
    given: int = -1
    suggested: int = -1


@dataclass(frozen=True)
class PageCard:
    """One suspect on a page and what applying the page does to it: ticked, its proposed `action` ("exclude", or
    "relabel" to `new_label`) with `reason`; unticked, it is kept. A near-duplicate group's copy to keep is
    proposed unticked."""

    row: int
    action: str  # "exclude" or "relabel" (a decision kind; decisions/ imports issues/, not the other way)
    reason: str
    new_label: str = ""  # a class name, for a relabel
    ticked: bool = True
    group: int = -1  # its near-duplicate group, for a page of near-duplicates

    def decision(self, ticked: bool) -> tuple[int, str, str, str]:
        """(row, kind, reason, new label) as the card mode's buttons would decide it."""
        if ticked:
            return self.row, self.action, self.reason, self.new_label
        return self.row, "keep", KEPT_REASON, ""


@dataclass(frozen=True)
class ReviewPage:
    """The first `size` pending suspects that tell the queue head's story, in queue order (near-duplicates group
    by group), and how many pending suspects tell that story in all."""

    story: Story
    cards: tuple[PageCard, ...]
    story_total: int

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(c.row for c in self.cards)


def top_kinds(result: ScanResult, by: str, rows: np.ndarray) -> np.ndarray:
    """For each row, the kind of issue its card names first: the strongest of the kinds that flag it (what
    `reasons` lists first) when ordered by the worst score, else the order's own kind."""
    names = list(result.scores)
    if by != WORST:
        return np.full(len(rows), by, dtype=object)
    stack = np.stack([np.where(s.flagged[rows], s.score[rows], -1.0) for s in result.scores.values()])
    return np.asarray(names, dtype=object)[stack.argmax(axis=0)] if len(rows) else np.array([], dtype=object)


def review_page(
    dataset: Dataset, result: ScanResult, by: str, pending: np.ndarray, size: int = PAGE_SIZE, fallback_reason: str = ""
) -> ReviewPage | None:
    """The next page of the queue: the pending suspects (most suspect first) that tell the same story as the first
    one. Label issues group by (given label -> suggested label) and propose the relabel; near-duplicates group by
    their group and propose excluding every copy but the one whose label its neighbours support most; any other
    kind (outliers, unreadable files) groups by kind and proposes exclusion. None when nothing is pending."""
    pending = np.asarray(pending, dtype=np.int64)
    if not len(pending):
        return None
    story, rows = _story_rows(result, by, pending)
    labels, kind, names = result.labels, story.kind, dataset.class_names

    def reason(row: int) -> str:
        why = reasons(dataset, result, row)
        return why[0] if why else fallback_reason

    if kind == labels.name:
        cards = [PageCard(r, "relabel", reason(r), names[story.suggested]) for r in rows[:size].tolist()]
    elif kind == result.duplicates.name:
        cards = _duplicate_cards(result, rows, size, reason)
    else:
        cards = [PageCard(r, "exclude", reason(r)) for r in rows[:size].tolist()]
    return ReviewPage(story, tuple(cards), int(len(rows)))


def next_page_rows(result: ScanResult, by: str, pending: np.ndarray, page: ReviewPage) -> np.ndarray:
    """The rows the page after `page` will most likely show (its story's next suspects, else the next story's):
    their thumbnails can be read before it is asked for."""
    pending = np.asarray(pending, dtype=np.int64)
    size = max(1, len(page.cards))
    left = pending[~np.isin(pending, np.asarray(page.rows, dtype=np.int64))]
    if not len(left):
        return left
    return _story_rows(result, by, left)[1][:size]


def _story_rows(result: ScanResult, by: str, pending: np.ndarray) -> tuple[Story, np.ndarray]:
    """The story of the first pending row, and every pending row that tells it, in queue order."""
    labels = result.labels
    kinds = top_kinds(result, by, pending)
    kind = str(kinds[0])
    same = kinds == kind
    story = Story(kind)
    if kind == labels.name:
        given, suggested = labels.given_label[pending], labels.suggested_label[pending]
        story = Story(kind, int(given[0]), int(suggested[0]))
        same &= (given == story.given) & (suggested == story.suggested)
    return story, pending[same]


def _duplicate_cards(result: ScanResult, rows: np.ndarray, size: int, reason) -> list[PageCard]:
    """Whole groups in the order their first pending member comes in the queue, until the page is full; in each
    group every copy is proposed for exclusion but one: the copy not excluded already whose label its neighbours
    support most (the lowest label-issue score, then the lowest row), which is proposed to be kept."""
    dups, labels = result.duplicates, result.labels
    group = dups.group
    excluded = labels.excluded if labels.excluded is not None else np.zeros(len(group), dtype=bool)
    groups = list(dict.fromkeys(group[rows].tolist()))  # in queue order of their first pending member
    by_group = {g: rows[group[rows] == g] for g in groups} if len(groups) < 2 * size else None
    cards: list[PageCard] = []
    for g in groups:
        members = by_group[g] if by_group is not None else rows[group[rows] == g]
        if cards and len(cards) + len(members) > size:
            break
        everyone = np.flatnonzero(group == g)
        candidates = everyone[~excluded[everyone]]
        keeper = int(candidates[np.lexsort((candidates, labels.score[candidates]))][0]) if len(candidates) else -1
        for r in sorted(members.tolist()):
            cards.append(PageCard(r, "exclude", reason(r), ticked=r != keeper, group=int(g)))
    return cards[:size]


def typical_rows(
    indices: np.ndarray, distances: np.ndarray, label_codes: np.ndarray, n_classes: int, per_class: int = 6
) -> list[np.ndarray]:
    """Each class's most central images by the graph: the ones its own class's images most often count among
    their nearest neighbours, ties to the closest neighbourhood. One pass over the graph for every class."""
    codes = np.asarray(label_codes, dtype=np.int64)
    n = len(codes)
    same = codes[indices] == codes[:, None]
    pointed_to = np.bincount(indices[same].astype(np.int64), minlength=n)
    spread = distances.astype(np.float64).mean(axis=1)
    order = np.lexsort((np.arange(n), spread, -pointed_to, codes))  # by class, most central first
    starts = np.searchsorted(codes[order], np.arange(n_classes))
    ends = np.searchsorted(codes[order], np.arange(n_classes), side="right")
    return [order[s : min(e, s + per_class)] for s, e in zip(starts.tolist(), ends.tolist())]
