"""The plan: an ordered list of :class:`Change` objects, and its printed form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal

from engine.dsl.model import Workspace, frozen_map
from engine.runtime.schema.snapshot import DbState

Safety = Literal["safe", "destructive", "blocked"]

#: Change kinds in the order :func:`engine.runtime.schema.diff.plan` emits them.
KIND_ORDER: tuple[str, ...] = (
    "create_table",
    "unretire_entity",
    "drop_index",
    "rename_column",
    "unretire_column",
    "add_column",
    "add_json_field",
    "move_storage",
    "replace_options",
    "remove_option",
    "change_type",
    "widen_length",
    "narrow_length",
    "retire_column",
    "retire_entity",
    "purge_column",
    "add_index",
)

_MARKERS = {
    "create_table": "+", "add_column": "+", "add_json_field": "+", "add_index": "+",
    "unretire_entity": "+", "unretire_column": "+",
    "drop_index": "-", "purge_column": "-",
}


@dataclass(frozen=True, slots=True)
class Change:
    """One step of a plan.

    ``safety``: "safe" (applied by default), "destructive" (needs
    ``allow_destructive``) or "blocked" (never applied; ``reason`` says why and
    ``fix`` how to unblock).  ``rows`` counts the rows whose data the change
    touches (None when nothing was counted).  ``details`` holds the JSON-ready
    parameters the apply step needs (old column name, index name, mapping,
    export path, ...).
    """

    kind: str
    entity: str
    description: str
    field: str | None = None
    safety: Safety = "safe"
    rows: int | None = None
    note: str | None = None
    reason: str | None = None
    fix: str | None = None
    details: Mapping[str, Any] = dc_field(default_factory=frozen_map)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in ``crm_revisions.changes``)."""
        return {
            "kind": self.kind, "entity": self.entity, "field": self.field,
            "description": self.description, "safety": self.safety, "rows": self.rows,
            "note": self.note, "reason": self.reason, "fix": self.fix, "details": dict(self.details),
        }

    def line(self) -> str:
        """One printable line, e.g. ``+ add column lead.priority (safe)``."""
        if self.safety == "blocked":
            tail = f"blocked: {self.reason}" + (f"; {self.fix}" if self.fix else "")
            return f"! {self.description} ({tail})"
        marker = _MARKERS.get(self.kind, "~")
        extra = ", ".join(p for p in (self.note, self.reason) if p)
        return f"{marker} {self.description} ({self.safety}{', ' + extra if extra else ''})"


@dataclass(frozen=True, slots=True)
class Plan:
    """The ordered changes from ``old`` (None: empty database) to ``new``.

    ``result`` is the database state once the plan is applied: what the new
    revision records as its schema snapshot.
    """

    changes: tuple[Change, ...]
    old: DbState | None
    result: DbState
    new: Workspace
    dialect: str

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.safety == "blocked")

    @property
    def destructive(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.safety == "destructive")

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def to_list(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.changes]

    def fingerprint(self, base_revision: int | None) -> str:
        """What a user confirms when they say yes to this plan: the revision it starts from and each
        change's kind, target, description and safety (not row counts, which move under live writes)."""
        items = [base_revision, *([c.kind, c.entity, c.field, c.description, c.safety] for c in self.changes)]
        return hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()


def format_plan(plan: Plan) -> str:
    """The plan as text: one line per change, then a one-line summary."""
    if plan.is_empty:
        return "no changes: the database already matches the configuration"
    lines = [c.line() for c in plan.changes]
    counts = {s: sum(1 for c in plan.changes if c.safety == s) for s in ("safe", "destructive", "blocked")}
    lines.append(
        f"{len(plan.changes)} change(s): {counts['safe']} safe, {counts['destructive']} destructive "
        f"(need --allow-destructive), {counts['blocked']} blocked"
    )
    return "\n".join(lines)


def fmt_rows(n: int | None) -> str:
    """``10,000 rows`` / ``1 row``."""
    n = n or 0
    return f"{n:,} row" + ("" if n == 1 else "s")
