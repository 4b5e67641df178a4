"""When an approval step is decided, and which of its task rows are ready -- pure functions over rows.

A step's rows are its approvers (*main* rows, ``added_by`` None) and the signers added to a row by 加签
(``added_by`` = that row, ``position`` before/after, ``group_mode`` any/all).  Reassigned (转交) and
cancelled rows take no part.  A row's *effective* decision counts its added signers:

* rejected when the row rejected or one of its groups failed (``all``: one rejection; ``any``: every
  member rejected);
* approved when the row approved and each of its groups passed (``all``: every member; ``any``: one);
* otherwise undecided.

The step (``mode``): ``any`` (或签) -- the first effective approval approves it; ``all`` (会签) and
``sequential`` (依次) -- every main row; ``ratio`` -- ``ceil(ratio * n)`` approvals, rejected as soon as
that can no longer be reached.  In every mode but ``ratio`` one effective rejection rejects the step.

Readiness: in ``sequential`` mode only the first undecided main row (by ``seq``) is active, in the other
modes all of them; an active row with an undecided *before* group waits while that group is active; an
active row that approved with an undecided *after* group makes that group active.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Result = Literal["approved", "rejected"] | None
LIVE = frozenset({"waiting", "ready", "approved", "rejected"})
OPEN = frozenset({"waiting", "ready"})


@dataclass(frozen=True, slots=True)
class Row:
    """What the rules need of one task row."""

    id: int
    status: str
    seq: int = 0
    added_by: int | None = None
    position: str | None = None
    group_mode: str | None = None


class _Tree:
    def __init__(self, rows: Iterable[Row]) -> None:
        live = [r for r in rows if r.status in LIVE]
        self.main = sorted((r for r in live if r.added_by is None), key=lambda r: (r.seq, r.id))
        self.groups: dict[tuple[int, str], list[Row]] = {}
        for r in live:
            if r.added_by is not None:
                self.groups.setdefault((r.added_by, r.position or "after"), []).append(r)

    def group_result(self, members: Sequence[Row]) -> Result:
        if not members:
            return "approved"
        results = [self.effective(m) for m in members]
        if (members[0].group_mode or "all") == "any":
            if "approved" in results:
                return "approved"
            return "rejected" if all(x == "rejected" for x in results) else None
        if "rejected" in results:
            return "rejected"
        return "approved" if all(x == "approved" for x in results) else None

    def effective(self, row: Row) -> Result:
        before = self.group_result(self.groups.get((row.id, "before"), []))
        after = self.group_result(self.groups.get((row.id, "after"), []))
        if row.status == "rejected" or "rejected" in (before, after):
            return "rejected"
        if row.status == "approved" and before == "approved" and after == "approved":
            return "approved"
        return None

    def activate(self, row: Row, out: dict[int, str]) -> None:
        """Mark ``row`` and what it waits for as ready/waiting in ``out``."""
        before = self.groups.get((row.id, "before"), [])
        if before and self.group_result(before) is None:
            if row.status in OPEN:
                out[row.id] = "waiting"
            for m in before:
                self.activate(m, out)
            return
        if row.status in OPEN:
            out[row.id] = "ready"
            return
        after = self.groups.get((row.id, "after"), [])
        if row.status == "approved" and after and self.group_result(after) is None:
            for m in after:
                self.activate(m, out)


def step_result(mode: str, ratio: float | None, rows: Iterable[Row]) -> Result:
    """The step's decision from its rows, or None while it is undecided (see the module docstring)."""
    tree = _Tree(rows)
    results = [tree.effective(r) for r in tree.main]
    if not results:
        return None
    approvals, rejections = results.count("approved"), results.count("rejected")
    if mode == "ratio":
        need = needed(ratio, len(results))
        if approvals >= need:
            return "approved"
        return "rejected" if rejections > len(results) - need else None
    if rejections:
        return "rejected"
    if mode == "any":
        return "approved" if approvals else None
    return "approved" if approvals == len(results) else None


def needed(ratio: float | None, n: int) -> int:
    """Approvals a ratio step needs of ``n`` approvers: ``ceil(ratio * n)``, at least one."""
    return max(1, min(n, math.ceil(round((ratio if ratio is not None else 1.0) * n, 9))))


def readiness(mode: str, rows: Iterable[Row]) -> Mapping[int, str]:
    """Open row id -> the status it should have now (``ready`` or ``waiting``)."""
    all_rows = list(rows)
    tree = _Tree(all_rows)
    out: dict[int, str] = {r.id: "waiting" for r in all_rows if r.status in OPEN}
    active = tree.main
    if mode == "sequential":
        first = next((r for r in tree.main if tree.effective(r) is None), None)
        active = [first] if first is not None else []
    for row in active:
        tree.activate(row, out)
    return out
