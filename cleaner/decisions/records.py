"""What the user decided about each image (exclude, keep, relabel) and the files that carry it to training."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cleaner.io.dataset import npz_bytes
from cleaner.io.dataset_types import Dataset
from cleaner.server.errors import CleanerError
from cleaner.server.limits import MAX_LIST_BYTES, MB

Kind = Literal["exclude", "keep", "relabel"]
KINDS: tuple[Kind, ...] = ("exclude", "keep", "relabel")
DECISIONS_COLUMNS = (
    "image_path",
    "decision",
    "reason",
    "old_label",
    "new_label",
    "decided_by",
    "source",
    "audit_verdict",
    "audit_label",
)
# Where a decision was made: the review queue, a selection (map or gallery), the random audit, or "" for a
# decision restored from a file that did not say.
Source = Literal["queue", "selection", "audit", ""]
SOURCES: tuple[Source, ...] = ("queue", "selection", "audit", "")


class DecisionsError(CleanerError, ValueError):
    """An uploaded decisions list that cannot be read."""


def exclusion_file_name(today: dt.date | None = None) -> str:
    return f"images_to_exclude_from_training_{(today or dt.date.today()):%Y_%m_%d}.txt"


def relabel_file_name(today: dt.date | None = None) -> str:
    return f"labels_to_fix_{(today or dt.date.today()):%Y_%m_%d}.csv"


@dataclass(frozen=True)
class Decision:
    """One image's decision. `new_label` is a class name, set only for a relabel."""

    kind: Kind
    reason: str = ""
    old_label: str = ""
    new_label: str = ""
    decided_by: str = ""
    source: Source = ""


@dataclass(frozen=True)
class AuditVerdict:
    """What the random audit found for one image: its decision and the label it verified ("" when excluded)."""

    kind: Kind
    label: str = ""

    @property
    def bad(self) -> bool:
        return self.kind != "keep"


@dataclass
class Decisions:
    """The latest decision per image path, in the order they were made (a new decision replaces the old one)."""

    by_path: dict[str, Decision] = field(default_factory=dict)
    # The audit's verdicts, kept apart: a later decision on an audited image replaces its decision, not its verdict.
    audit: dict[str, AuditVerdict] = field(default_factory=dict)
    version: int = 0  # grows with every change: a cheap cache key for what is derived from the decisions

    def __contains__(self, path: object) -> bool:
        return path in self.by_path

    def __len__(self) -> int:
        return len(self.by_path)

    def get(self, path: str) -> Decision | None:
        return self.by_path.get(path)

    def put(self, path: str, decision: Decision | None) -> Decision | None:
        """Set (or with None, clear) one path's decision; returns the one it replaced."""
        old = self.by_path.pop(str(path), None)
        if decision is not None:
            self.by_path[str(path)] = decision
        self.version += 1
        return old

    def snapshot(self) -> Decisions:
        """A copy that later decisions leave as it is (for a computation running beside the page)."""
        return Decisions(by_path=dict(self.by_path), audit=dict(self.audit), version=self.version)

    def set_audit(self, path: str, verdict: AuditVerdict | None) -> AuditVerdict | None:
        """Set (or with None, clear) one path's audit verdict; returns the one it replaced."""
        old = self.audit.pop(str(path), None)
        if verdict is not None:
            self.audit[str(path)] = verdict
        self.version += 1
        return old

    def paths(self, kind: Kind) -> list[str]:
        return [p for p, d in self.by_path.items() if d.kind == kind]

    def count(self, kind: Kind) -> int:
        return sum(1 for d in self.by_path.values() if d.kind == kind)

    def is_excluded(self, path: str) -> bool:
        found = self.by_path.get(path)
        return found is not None and found.kind == "exclude"

    def exclusion_text(self) -> str:
        """One excluded path per line, no duplicates: the file a training script reads."""
        return "".join(f"{p}\n" for p in self.paths("exclude"))

    def relabel_csv(self) -> str:
        """`image_path,old_label,new_label` for every relabel: the labels a training script must change."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["image_path", "old_label", "new_label"])
        writer.writerows([p, d.old_label, d.new_label] for p, d in self.by_path.items() if d.kind == "relabel")
        return buf.getvalue()

    def decisions_csv(self) -> str:
        """Every decision with its reason, who made it, where, and the audit's verdict; uploading it again restores
        all of them. An audited image whose decision was taken back has a row with an empty decision."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(DECISIONS_COLUMNS)
        none = Decision("keep")
        for p in list(self.by_path) + [p for p in self.audit if p not in self.by_path]:
            d, verdict = self.by_path.get(p), self.audit.get(p)
            shown = d or none
            writer.writerow(
                [
                    p,
                    d.kind if d else "",
                    shown.reason,
                    shown.old_label,
                    shown.new_label,
                    shown.decided_by,
                    shown.source,
                    verdict.kind if verdict else "",
                    verdict.label if verdict else "",
                ]
            )
        return buf.getvalue()


def rows_of(dataset: Dataset, paths: Iterable[str]) -> np.ndarray:
    """The dataset rows whose image path is one of `paths` (a path listed twice in the dataset gives both rows)."""
    return dataset.rows_with_paths(paths)


def label_codes_after(dataset: Dataset, decisions: Decisions) -> np.ndarray:
    """Each row's class code with the user's relabels applied (what the map colours and the training labels use)."""
    codes = dataset.label_codes.copy()
    index = {name: i for i, name in enumerate(dataset.class_names)}
    new_code = {
        p: index[d.new_label] for p, d in decisions.by_path.items() if d.kind == "relabel" and d.new_label in index
    }
    for row in rows_of(dataset, new_code).tolist():
        codes[row] = new_code[str(dataset.image_paths[row])]
    return codes


def cleaned_npz(dataset: Dataset, decisions: Decisions) -> bytes:
    """The dataset to train on: excluded rows left out, relabelled rows carrying their new label."""
    codes = label_codes_after(dataset, decisions)
    # One original label value per class code, so a relabel keeps the label's type (int ids stay ints).
    first_row = np.unique(dataset.label_codes, return_index=True)[1]
    labels = dataset.labels[first_row][codes]
    keep = np.ones(dataset.n, dtype=bool)
    keep[rows_of(dataset, decisions.paths("exclude"))] = False
    return npz_bytes(dataset.embeddings[keep], labels[keep], dataset.image_paths[keep])


@dataclass(frozen=True)
class ParsedDecisions:
    """What an uploaded list holds: decisions per path, and how many lines were skipped."""

    decisions: dict[str, Decision]
    ignored_lines: int  # blank, comment or unreadable lines
    audit: dict[str, AuditVerdict] = field(default_factory=dict)

    def as_decisions(self) -> Decisions:
        """The decisions and audit verdicts read, as the working set (no check against a dataset)."""
        return Decisions(by_path=dict(self.decisions), audit=dict(self.audit))


def _text_of(data: bytes | str) -> str:
    if isinstance(data, bytes):
        if len(data) > MAX_LIST_BYTES:
            raise DecisionsError(f"The list is larger than {MAX_LIST_BYTES // MB} MB.")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DecisionsError("The list is not UTF-8 text.") from exc
    if "\x00" in data:
        raise DecisionsError("The list is not a text file.")
    return data


def _from_csv(text: str) -> ParsedDecisions:
    """A decisions CSV (or any CSV with an image_path column: its rows count as exclusions)."""
    found: dict[str, Decision] = {}
    audit: dict[str, AuditVerdict] = {}
    ignored = 0
    for row in csv.DictReader(io.StringIO(text)):
        path = (row.get("image_path") or "").strip()
        verdict = _audit_verdict(row)
        if path and verdict is not None:
            audit[path] = verdict
        kind = (row.get("decision") or "").strip()
        if path and not kind and verdict is not None:
            continue  # an audited image whose decision was taken back: its verdict alone
        kind = {"excluded": "exclude", "kept": "keep", "relabelled": "relabel", "": "exclude"}.get(kind, kind)
        new_label = (row.get("new_label") or "").strip()
        if not path or kind not in KINDS or (kind == "relabel" and not new_label):
            ignored += 1
            continue
        source = (row.get("source") or "").strip()
        found[path] = Decision(
            kind,
            reason=row.get("reason") or "",
            old_label=row.get("old_label") or "",
            new_label=new_label if kind == "relabel" else "",
            decided_by=row.get("decided_by") or "",
            source=source if source in SOURCES else "",
        )
    return ParsedDecisions(found, ignored, audit)


def _audit_verdict(row: dict[str, str | None]) -> AuditVerdict | None:
    kind = (row.get("audit_verdict") or "").strip()
    label = (row.get("audit_label") or "").strip()
    if kind not in KINDS or (kind != "exclude" and not label):
        return None
    return AuditVerdict(kind, label if kind != "exclude" else "")


def parse_decisions(data: bytes | str) -> ParsedDecisions:
    """Read an exclusion list (one path per line) or a decisions CSV written by `Decisions.decisions_csv`."""
    text = _text_of(data)
    lines = text.splitlines()
    if lines and lines[0].startswith("image_path,"):
        return _from_csv(text)
    found: dict[str, Decision] = {}
    ignored = 0
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            ignored += 1
        else:
            found[stripped] = Decision("exclude")
    return ParsedDecisions(found, ignored)
