"""The user's decisions: which image paths to leave out of training (with a reason), and relabels."""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from typing import Iterable

MAX_LIST_BYTES = 64 * 1024 * 1024


def exclusion_file_name(today: dt.date | None = None) -> str:
    day = today or dt.date.today()
    return f"images_to_exclude_from_training_{day:%Y_%m_%d}.txt"


@dataclass
class ExclusionList:
    """Ordered set of excluded image paths, each with the reason it was excluded."""

    reasons: dict[str, str] = field(default_factory=dict)
    relabels: dict[str, str] = field(default_factory=dict)  # path -> suggested label the user accepted

    def __contains__(self, path: object) -> bool:
        return path in self.reasons

    def __len__(self) -> int:
        return len(self.reasons)

    def add(self, path: str, reason: str = "") -> None:
        if path not in self.reasons or reason:
            self.reasons[str(path)] = reason or self.reasons.get(path, "")

    def add_many(self, paths: Iterable[str], reason: str = "") -> None:
        for path in paths:
            self.add(path, reason)

    def remove(self, path: str) -> None:
        self.reasons.pop(path, None)

    def set(self, path: str, excluded: bool, reason: str = "") -> None:
        if excluded:
            self.add(path, reason)
        else:
            self.remove(path)

    def relabel(self, path: str, new_label: str) -> None:
        self.relabels[str(path)] = str(new_label)

    def paths(self) -> list[str]:
        return list(self.reasons)

    def to_text(self) -> str:
        """One path per line, no duplicates: the file a training script reads."""
        return "".join(f"{p}\n" for p in self.reasons)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["image_path", "decision", "reason", "new_label"])
        for path, reason in self.reasons.items():
            writer.writerow([path, "exclude", reason, ""])
        for path, label in self.relabels.items():
            if path not in self.reasons:
                writer.writerow([path, "relabel", "", label])
        return buf.getvalue()


@dataclass(frozen=True)
class ParsedList:
    paths: list[str]
    ignored_lines: int  # blank or comment lines


def parse_exclusion_text(data: bytes | str) -> ParsedList:
    """Read an exclusion list written by `to_text` (one path per line); CSV reports with an image_path column work too."""
    if isinstance(data, bytes):
        if len(data) > MAX_LIST_BYTES:
            raise ValueError(f"The list is larger than {MAX_LIST_BYTES // 1024 // 1024} MB.")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError("The exclusion list is not UTF-8 text.") from exc
    else:
        text = data
    if "\x00" in text:
        raise ValueError("The exclusion list is not a text file.")
    lines = text.splitlines()
    if lines and lines[0].startswith("image_path,"):
        rows = list(csv.DictReader(io.StringIO(text)))
        paths = [r["image_path"] for r in rows if r.get("image_path") and r.get("decision", "exclude") == "exclude"]
        return ParsedList(paths=list(dict.fromkeys(paths)), ignored_lines=len(rows) - len(paths))
    paths, ignored = [], 0
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            ignored += 1
            continue
        paths.append(stripped)
    return ParsedList(paths=list(dict.fromkeys(paths)), ignored_lines=ignored)
