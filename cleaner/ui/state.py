"""Each browser session's work, one typed object per dataset: the only module that touches `st.session_state`.

Every change a user can make is a method of `DatasetWork`; widget callbacks call those methods and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from cleaner.decisions.effect import AUDIT_SIZE, audit_rows
from cleaner.decisions.records import (
    AuditVerdict,
    Decision,
    Decisions,
    Kind,
    ParsedDecisions,
    Source,
    label_codes_after,
    rows_of,
)
from cleaner.decisions.store import (
    Event,
    Ledger,
    StoreError,
    apply_events,
    audit_event,
    decision_event,
    merge_in,
)
from cleaner.io.dataset_types import Dataset
from cleaner.issues.label import LabelIssues
from cleaner.issues.review import PageCard, ReviewPage
from cleaner.issues.unreadable import UnreadableImages
from cleaner.server.text import plural

_WORK_KEY = "cleaner_work"
_SEEN_KEY = "cleaner_seen_events"
_UPLOADS_KEY = "cleaner_uploads"
_CHOICES_KEY = "cleaner_choices"
SMALL_DATA_ROWS = 20_000  # up to this many rows a decision also redraws the map's marks at once


@dataclass(frozen=True)
class Selection:
    """The rows shown in the gallery and how they were chosen."""

    rows: tuple[int, ...] = ()
    description: str = ""
    anchor: int | None = None  # the single point a neighbour search starts from


@dataclass(frozen=True)
class UndoStep:
    """What one decision replaced on one image: its earlier decision, and its earlier audit verdict when the
    decision was an audit's."""

    path: str
    decision: Decision | None
    audit: bool = False
    verdict: AuditVerdict | None = None


@dataclass(frozen=True)
class UndoBatch:
    """The decisions one action took on several images (a page of the queue): undone together, in one step."""

    steps: tuple[UndoStep, ...]


@dataclass(frozen=True)
class QueuePage:
    """The page of suspects shown in page mode for one queue order, and which cards are ticked (their proposed
    action applies; the others are kept)."""

    order: str
    cards: tuple[PageCard, ...]
    ticked: frozenset[int]

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(c.row for c in self.cards)


@dataclass(frozen=True)
class EffectJob:
    """The model before and after, computed beside the page for one version of the decisions and one trusted set."""

    key: tuple[int, str]  # (the decisions' version, the trusted rows' source)
    future: Future


@dataclass(frozen=True)
class LearnedLabels:
    """Label issues re-scored after the decisions of one version, starting from one scan's (`scan`)."""

    version: int
    scan: LabelIssues
    labels: LabelIssues


@dataclass
class DatasetWork:
    """One dataset's work in this browser session: decisions, selection, gallery page, checks and messages."""

    dataset: Dataset
    user: str = ""  # the signed-in user's e-mail, written into each decision
    decisions: Decisions = field(default_factory=Decisions)
    selection: Selection = field(default_factory=Selection)
    page: int = 0
    undo_stack: list[UndoStep | UndoBatch] = field(default_factory=list)
    audit_size: int = 0  # how many images of the seeded random audit sample are asked for (0: no audit started)
    effect_job: EffectJob | None = None  # the latest model comparison asked for
    trusted: tuple[str, Dataset] | None = None  # a validation NPZ (file name, dataset) whose labels are trusted
    trusted_message: str = ""  # why the last validation NPZ could not be used
    unreadable: UnreadableImages | None = None  # set once the image files were checked (by anyone, unchanged since)
    unreadable_access: str = ""  # the image access (folders, path remaps) that check used
    images_confirmed: set[str] = field(default_factory=set)  # accesses whose earlier check this session looked up
    map_marks_version: int = 0  # the decisions' version the map was last drawn with
    thorough: bool = False  # the label-issue ranking in use: the neighbours' votes, or with a linear probe too
    learned_labels: LearnedLabels | None = None  # the label issues after this session's decisions
    queue_slots: dict[str, list[int]] = field(default_factory=dict)  # per queue order: the rows on its cards
    # Per queue order: the image each empty card last showed, so the card can say who decided it.
    queue_emptied: dict[str, dict[int, str]] = field(default_factory=dict)
    last_decided: tuple[str, Kind, str] | None = None  # (path, kind, new label) of this session's latest decide()
    queue_page: QueuePage | None = None  # page mode: the page shown and its ticks
    list_message: tuple[str, str] | None = None  # ("success" | "warning" | "error", text) about an uploaded list
    # The decision store: every decision, undo and audit verdict is written through this link as it is made (team
    # mode, or "Keep my decisions on this server"); None: the decisions live in this session only.
    ledger: Ledger | None = field(default=None, repr=False)
    store_note: tuple[str, str] | None = None  # ("info" | "warning", text): what opening the store brought in
    _outgoing: list[Event] = field(default_factory=list, repr=False)  # events of the action under way
    _derived: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _files: tuple[int, tuple[str, str, str]] | None = field(default=None, repr=False)
    _relabels: tuple[int, int] | None = field(default=None, repr=False)  # (decisions version, relabels key)

    # ------------------------------------------------------------ what the user can do

    def select(self, rows: tuple[int, ...], description: str, anchor: int | None = None) -> None:
        self.selection = Selection(tuple(int(r) for r in rows), description, anchor)
        self.page = 0

    def clear_selection(self) -> None:
        self.select((), "")

    def go_to_page(self, page: int) -> None:
        self.page = max(0, int(page))

    def decide(self, row: int, kind: Kind, reason: str = "", new_label: str = "", source: Source = "queue") -> None:
        """Exclude, keep or relabel one image; the decision can be undone. The same decision again, from the same
        place, by the same person, changes nothing: it is one click whose callback ran twice (seen under load, two
        events a tenth of a second apart from one click), not a second decision for the history and the undo."""
        path = str(self.dataset.image_paths[row])
        new_label = new_label if kind == "relabel" else ""
        earlier = self.decisions.get(path)
        if earlier is None or (earlier.kind, earlier.new_label, earlier.decided_by, earlier.source) != (
            kind,
            new_label,
            self.user,
            source,
        ):
            self.undo_stack.append(self._put(row, kind, reason, new_label, source))
        self.last_decided = (path, kind, new_label)
        self._send()

    def settle(self, path: str, kind: Kind, new_label: str = "") -> None:
        """Team mode: settle a disagreement on one image with this decision (for everyone; it can be undone)."""
        rows = self.dataset.rows_with_paths([path])
        if len(rows):
            self.undo_stack.append(self._put(int(rows[0]), kind, "settled a disagreement", new_label, "", settles=True))
            self._send()

    def decide_many(self, choices: Sequence[tuple[int, Kind, str, str]], source: Source = "queue") -> None:
        """Several images decided in one action, each (row, kind, reason, new label) exactly as `decide` would
        record it: one undo step takes all of them back."""
        steps = tuple(self._put(row, kind, reason, new_label, source) for row, kind, reason, new_label in choices)
        if steps:
            self.undo_stack.append(UndoBatch(steps))
            self.last_decided = None
        self._send()

    def show_page(self, order: str, page: ReviewPage) -> QueuePage:
        """The page mode's page for a queue order: the same page keeps its ticks, a new one starts as proposed."""
        shown = self.queue_page
        if shown is None or shown.order != order or shown.rows != page.rows:
            shown = QueuePage(order, page.cards, frozenset(c.row for c in page.cards if c.ticked))
            self.queue_page = shown
        return shown

    def toggle_page_card(self, row: int) -> None:
        """A card of the page: ticked (its proposed action) <-> kept."""
        shown = self.queue_page
        if shown is not None and row in shown.rows:
            self.queue_page = QueuePage(shown.order, shown.cards, shown.ticked ^ {int(row)})

    def apply_page(self, rows: Sequence[int]) -> None:
        """Decide the page shown (`rows`, so that a click meant for a page already applied does nothing): ticked
        cards get their proposed action, the others are kept; one undo step."""
        shown = self.queue_page
        if shown is None or tuple(int(r) for r in rows) != shown.rows:
            return
        self.decide_many([c.decision(c.row in shown.ticked) for c in shown.cards])  # type: ignore[misc]
        self.queue_page = None

    def _put(
        self, row: int, kind: Kind, reason: str, new_label: str, source: Source, settles: bool = False
    ) -> UndoStep:
        path = str(self.dataset.image_paths[row])
        decision = Decision(
            kind,
            reason=reason,
            old_label=self.dataset.label_text(row),
            new_label=new_label if kind == "relabel" else "",
            decided_by=self.user,
            source=source,
        )
        self._outgoing.append(decision_event(path, decision, self._who(), settles=settles))
        return UndoStep(path, self.decisions.put(path, decision))

    def set_excluded(self, rows: list[int], excluded: bool, reason: str = "reviewed in gallery") -> None:
        """Gallery ticks: exclude the rows, or take back their exclusion (other decisions stay)."""
        for row in rows:
            path = str(self.dataset.image_paths[row])
            earlier = self.decisions.get(path)
            # An image the audit excluded and a selection covers counts as caught by the review: its decision
            # becomes the selection's (the audit's verdict stays).
            if excluded and (earlier is None or earlier.kind != "exclude" or earlier.source == "audit"):
                self.decide(row, "exclude", reason, source="selection")
            elif not excluded and self.decisions.is_excluded(path):
                self.undo_stack.append(UndoStep(path, self.decisions.put(path, None)))
                self._outgoing.append(decision_event(path, None, self._who()))
        self._send()

    def start_audit(self, size: int) -> None:
        """Ask for the first `size` images of the audit's seeded random order (never fewer than already asked)."""
        self.audit_size = min(self.dataset.n, max(self.audit_size, int(size)))

    def audit(self, row: int, kind: Kind, new_label: str = "") -> None:
        """The audit's verdict on one image (label correct, exclude, or relabel to the verified label): kept as the
        image's decision, which reaches the exports, and as its verdict, which the estimates read."""
        path = str(self.dataset.image_paths[row])
        new_label = new_label if kind == "relabel" else ""
        label = new_label if kind == "relabel" else ("" if kind == "exclude" else self.dataset.label_text(row))
        existing = self.decisions.get(path)
        previous_verdict = self.decisions.set_audit(path, AuditVerdict(kind, label))
        if (
            existing is not None
            and existing.source != "audit"
            and existing.kind == kind
            and existing.new_label == new_label
        ):
            decision = existing  # the review had already decided this image the same way: it stays the review's
        else:
            decision = Decision(
                kind,
                reason="random audit",
                old_label=self.dataset.label_text(row),
                new_label=new_label,
                decided_by=self.user,
                source="audit",
            )
            self._outgoing.append(decision_event(path, decision, self._who()))
        self._outgoing.append(audit_event(path, AuditVerdict(kind, label), self._who()))
        self.undo_stack.append(UndoStep(path, self.decisions.put(path, decision), audit=True, verdict=previous_verdict))
        self._send()

    def use_trusted(self, file_name: str, dataset: Dataset | None, error: str = "") -> None:
        """A validation NPZ for the model comparison (None with the reason it cannot be used)."""
        self.trusted = (file_name, dataset) if dataset is not None else None
        self.trusted_message = "" if dataset is not None else f"Could not use {file_name}: {error}"

    def compare_models(self, key: tuple[int, str], future: Future) -> None:
        self.effect_job = EffectJob(key, future)

    def undo(self) -> None:
        """Take back the last decision (or the last page of them), restoring what each image had before (and its
        audit verdict)."""
        if self.undo_stack:
            last = self.undo_stack.pop()
            self.last_decided = None
            for step in reversed(last.steps) if isinstance(last, UndoBatch) else (last,):
                self.decisions.put(step.path, step.decision)
                # Undo is an event; an earlier decision it restores is one more, this user's.
                self._outgoing.append(decision_event(step.path, None, self._who()))
                if step.decision is not None:
                    self._outgoing.append(decision_event(step.path, step.decision, self._who()))
                if step.audit:
                    self.decisions.set_audit(step.path, step.verdict)
                    self._outgoing.append(audit_event(step.path, step.verdict, self._who()))
            self._send()

    def check_images(self, unreadable: UnreadableImages, access: str) -> None:
        self.unreadable, self.unreadable_access = unreadable, access

    def resume(self, parsed: ParsedDecisions, file_name: str) -> None:
        """Restore decisions from an uploaded list; paths not in this dataset are skipped and counted."""
        known = set(self.dataset.image_paths.tolist())
        classes = set(self.dataset.class_names)
        restored = {
            p: d for p, d in parsed.decisions.items() if p in known and (d.kind != "relabel" or d.new_label in classes)
        }
        for path, decision in restored.items():
            self.decisions.put(path, decision)
            self._outgoing.append(decision_event(path, decision, self._who()))
        audited = {p: v for p, v in parsed.audit.items() if p in known and (v.kind == "exclude" or v.label in classes)}
        for path, verdict in audited.items():
            self.decisions.set_audit(path, verdict)
            self._outgoing.append(audit_event(path, verdict, self._who()))
        self._send()
        if audited:  # the audit goes on where it stopped: its sample is a prefix of one seeded order, asked in steps
            position = np.empty(self.dataset.n, dtype=np.int64)
            position[audit_rows(self.dataset.n, self.dataset.n)] = np.arange(self.dataset.n)
            reached = int(position[rows_of(self.dataset, audited)].max()) + 1
            self.start_audit(-(-reached // AUDIT_SIZE) * AUDIT_SIZE)
        counts = [
            plural(sum(d.kind == k for d in restored.values()), noun)
            for k, noun in (("exclude", "exclusion"), ("relabel", "relabel"), ("keep", "kept mark"))
        ]
        text = f"Restored {', '.join(counts)} from {file_name}."
        if audited:
            text += f" The random audit's {plural(len(audited), 'verdict')} came back too."
        skipped = len(parsed.decisions) - len(restored)
        if skipped:
            text += f" Skipped {plural(skipped, 'line')} whose path is not in this dataset or whose label is unknown."
        self.list_message = ("warning" if skipped else "success", text)

    def attach(self, ledger: Ledger) -> None:
        """Keep this work in the decision store from now on: bring in what the ledger's space holds for these images
        (this session's own decisions stand where both decided) and write this session's there."""
        self.ledger, self.store_note = ledger, None
        self._open_store()

    def detach(self) -> None:
        """From now on the decisions live in this session only."""
        self.ledger, self.store_note = None, None

    def sync(self) -> int:
        """Write what waits for the database and bring in what others decided since (on each page run, and every
        few seconds); returns how many of their decisions came in."""
        ledger = self.ledger
        if ledger is None or not ledger.due():
            return 0
        if not ledger.opened:
            version = self.decisions.version
            self._open_store()
            return int(self.decisions.version != version)
        ledger.flush()
        others = ledger.others()
        if not others:
            return 0
        rows = self.dataset.rows_with_paths({e.path for e in others})
        known = {str(p) for p in self.dataset.image_paths[rows].tolist()}
        return len(apply_events(self.decisions, others, known, ledger.waiting()))

    def _open_store(self) -> None:
        ledger = self.ledger
        if ledger is None:
            return
        try:
            applied = ledger.open(self.dataset.image_paths)
        except StoreError as exc:
            ledger.failed(exc)
            return
        brought, events = merge_in(self.decisions, applied, ledger.who, self.dataset.class_names)
        ledger.error = ""
        ledger.record(events)
        notes = []
        if applied.from_earlier:
            notes.append(
                f"{plural(applied.from_earlier, 'decision')} from an earlier version of this dataset "
                "applied"
                + (
                    f"; {plural(applied.left_out, 'image')} of that version "
                    f"{'is' if applied.left_out == 1 else 'are'} no longer in it (their decisions "
                    "are kept, not applied)"
                    if applied.left_out
                    else ""
                )
                + "."
            )
        if brought:
            notes.append(f"{plural(brought, 'decision')} kept on this server brought into this session.")
        self.store_note = ("info", " ".join(notes)) if notes else None

    def _who(self) -> str:
        """Who the store says made this session's decisions: the signed-in user, or the token's tag."""
        return self.ledger.who if self.ledger is not None else self.user

    def _send(self) -> None:
        """Write the events of the action just taken through to the store (when linked; they wait there if the
        database cannot take them now)."""
        events, self._outgoing = self._outgoing, []
        if self.ledger is not None and events:
            self.ledger.record(events)

    def reject_list(self, file_name: str, error: str) -> None:
        self.list_message = ("error", f"Could not read {file_name}: {error}")

    def forget_list_message(self) -> None:
        self.list_message = None

    def use_ranking(self, thorough: bool) -> None:
        if thorough != self.thorough:
            self.thorough, self.learned_labels = thorough, None

    def map_drawn(self) -> None:
        self.map_marks_version = self.decisions.version

    # ------------------------------------------------------------ what the page reads

    def queue_cards(self, order: str, pending: np.ndarray, n: int) -> list[int | None]:
        """The rows on the queue's n cards: a decided card's place goes to the next suspect (or stays empty when
        none is left), so the other cards never move."""
        slots = self.queue_slots.get(order, [])[:n]
        shown = np.asarray([r for r in slots if r is not None], dtype=np.int64)
        still = set(shown[np.isin(shown, pending)].tolist())
        fillers = (int(r) for r in pending[: n + len(still)].tolist() if int(r) not in still)
        cards = [row if row in still else next(fillers, None) for row in slots]
        cards += [row for row in fillers][: n - len(cards)]
        while cards and cards[-1] is None:
            cards.pop()  # empty places at the end move nothing
        emptied = self.queue_emptied.setdefault(order, {})
        for slot, before in enumerate(slots):
            if slot >= len(cards) or cards[slot] is not None:
                emptied.pop(slot, None)
            elif before is not None:
                emptied[slot] = str(self.dataset.image_paths[before])
        self.queue_slots[order] = cards
        return cards

    def emptied_card(self, order: str, slot: int) -> tuple[str, Decision | None]:
        """The image an empty queue card last showed (its path, "" if none) and the decision that took it away:
        a teammate's, in team mode, or this session's."""
        path = self.queue_emptied.get(order, {}).get(slot, "")
        return path, self.decisions.get(path) if path else None

    def excluded_rows(self) -> np.ndarray:
        return self._derive()[1]

    def decided_rows(self) -> np.ndarray:
        return self._derive()[2]

    def decision_files(self) -> tuple[str, str, str]:
        """The exclusion list, the labels to fix and all decisions as files, built once per change of the decisions
        (the panels that show them rerun on every tick and page turn)."""
        version = self.decisions.version
        if self._files is None or self._files[0] != version:
            d = self.decisions
            self._files = (version, (d.exclusion_text(), d.relabel_csv(), d.decisions_csv()))
        return self._files[1]

    def relabels_key(self) -> int:
        """Changes exactly when the relabels change: what the map's colours depend on. Worked out once per change of
        the decisions: the map asks on every run."""
        version = self.decisions.version
        if self._relabels is None or self._relabels[0] != version:
            relabels = tuple((p, d.new_label) for p, d in self.decisions.by_path.items() if d.kind == "relabel")
            self._relabels = (version, hash(relabels))
        return self._relabels[1]

    def label_codes(self) -> np.ndarray:
        """Class codes with the relabels applied."""
        return self._derive()[3]

    @property
    def map_is_behind(self) -> bool:
        """Whether decisions were made since the map was drawn (its marks and colours are out of date)."""
        return self.map_marks_version != self.decisions.version

    @property
    def map_redraw_due(self) -> bool:
        """Whether a panel that just took a decision should rerun the whole page so the map shows it at once: on
        small data only, where redrawing is cheap; large data keeps a decision cheap and offers a button."""
        return self.map_is_behind and self.dataset.n <= SMALL_DATA_ROWS

    def _derive(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        version = self.decisions.version
        if self._derived is None or self._derived[0] != version:
            self._derived = (
                version,
                rows_of(self.dataset, self.decisions.paths("exclude")),
                rows_of(self.dataset, self.decisions.by_path),
                label_codes_after(self.dataset, self.decisions),
            )
        return self._derived


def work_for(dataset: Dataset, user: str = "") -> DatasetWork:
    """This browser session's work on one dataset; switching datasets keeps each one's work."""
    per_dataset: dict[str, DatasetWork] = st.session_state.setdefault(_WORK_KEY, {})
    if dataset.digest not in per_dataset:
        per_dataset[dataset.digest] = DatasetWork(dataset, user=user)
    return per_dataset[dataset.digest]


def work_by_digest(digest: str) -> DatasetWork:
    """For fragments, which carry the digest rather than the dataset. Not for callbacks: they are handed the
    DatasetWork itself, because reading `st.session_state` in a callback is a point where Streamlit stops it for a
    rerun request that came in meanwhile, before it has recorded anything (the user's click then does nothing)."""
    return st.session_state[_WORK_KEY][digest]


def is_new_event(source: str, event: object) -> bool:
    """True the first time an event value is seen; components repeat their last value on every rerun."""
    seen: dict[str, str] = st.session_state.setdefault(_SEEN_KEY, {})
    marker = repr(event)
    if seen.get(source) == marker:
        return False
    seen[source] = marker
    return True


def uploaded_dataset(file_id: str, load: Callable[[], Any]) -> Any:
    """The dataset (or the error) from this session's current upload, loaded once; one upload kept at a time."""
    cache: dict[str, Any] = st.session_state.setdefault(_UPLOADS_KEY, {})
    if file_id not in cache:
        cache.clear()  # one upload at a time per session keeps memory bounded
        cache[file_id] = load()
    return cache[file_id]


def show_widget_value(key: str, value: Any) -> None:
    """Make a widget show a value the session's work holds (the work is the truth; widgets mirror it)."""
    st.session_state[key] = value


def widget_value(key: str) -> Any:
    return st.session_state.get(key)


def session_table(name: str) -> dict[str, Any]:
    """A named table of this session's own (e.g. the map component's drawn payloads and pending events)."""
    return st.session_state.setdefault(f"cleaner_{name}", {})


def remembered(key: str, options: Sequence[Any] | None = None, **default: Any) -> dict[str, Any]:
    """Keyword arguments for a choice widget whose value survives the runs that do not draw it and the browser
    drawing it afresh. Give the widget's `options` (a select box, radio) or its default (`value=`, `default=`).

    The widget's default is always the value it shows, or when a run did not draw it (Streamlit then forgets it,
    e.g. while the upload view shows no dataset) the session's own copy, kept on every change: a browser that draws
    a widget afresh starts it at its default and sends that back as a change, so with no default given it would
    reset the choice to the first option or the minimum.
    """
    choices: dict[str, Any] = st.session_state.setdefault(_CHOICES_KEY, {})
    kwargs: dict[str, Any] = {"key": key, "on_change": _remember, "args": (key,)}
    shown = st.session_state.get(key)
    if options is not None:
        options = list(options)
        # What the widget shows comes first: Streamlit moves it to the first option, without a change event, when
        # the chosen one leaves the list.
        current = shown if shown in options else choices.get(key)
        kwargs["index"] = options.index(current) if current in options else 0
    else:
        ((name, initial),) = default.items()
        kwargs[name] = shown if shown is not None else choices.get(key, initial)
    return kwargs


def choose(key: str, value: Any) -> None:
    """Set a choice widget (one drawn with `remembered`) from the page's own logic, as if the user had chosen it."""
    st.session_state[key] = value
    st.session_state.setdefault(_CHOICES_KEY, {})[key] = value


def _remember(key: str) -> None:
    st.session_state.setdefault(_CHOICES_KEY, {})[key] = st.session_state[key]
