"""The kinds of issue cleaner looks for, in the order the report and the page list them.

Adding a kind is one module with a `KIND` (see `cleaner.issues.contract.IssueKind`) and one line here: the scan,
the review queue's orders and reasons, the report's columns, the map's colourings and `cleaner scan --help`
follow from this list.
"""

from __future__ import annotations

from cleaner.issues import duplicate, label, outlier, unreadable
from cleaner.issues.contract import IssueKind

ISSUE_KINDS: list[IssueKind] = [label.KIND, outlier.KIND, duplicate.KIND, unreadable.KIND]
WORST = "worst"  # the order and colouring by the worst of all scores
WORST_TITLE = "Worst of all scores"


def issue_kinds() -> tuple[IssueKind, ...]:
    return tuple(ISSUE_KINDS)


def kind_named(name: str) -> IssueKind:
    for kind in ISSUE_KINDS:
        if kind.name == name:
            return kind
    raise KeyError(f"no kind of issue named {name!r}; have {[k.name for k in ISSUE_KINDS]}")


def orders(scored: object = None) -> dict[str, str]:
    """Review orders (and map colourings) by name -> title: the worst score, then each kind scored in `scored`
    (a collection of kind names; when None, every kind that is always scored)."""
    names = None if scored is None else set(scored)  # type: ignore[call-overload]
    return {
        WORST: WORST_TITLE,
        **{k.name: k.title for k in ISSUE_KINDS if (k.name in names if names is not None else not k.optional)},
    }
