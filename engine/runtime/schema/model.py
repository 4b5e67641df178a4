"""The plan: an ordered list of :class:`Change` objects, and its printed form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any, Literal

from engine.dsl.model import Workspace, frozen_map
from engine.runtime.schema.snapshot import DbState
from engine.wording import counted

Safety = Literal["safe", "destructive", "blocked"]

@dataclass(frozen=True, slots=True)
class ChangeKind:
    """One kind of change a plan can hold: its name, the mark a printed plan shows, what it does."""

    name: str
    marker: str
    description: str


#: Every change kind, in the order a plan runs them -- the one table: the planner sorts by it, a
#: printed plan takes its marks from it, and :mod:`engine.runtime.schema.executors` registers one
#: executor per kind against it (its import fails if one is missing).
CHANGE_KINDS: tuple[ChangeKind, ...] = (
    ChangeKind("create_table", "+", "create an entity's table"),
    ChangeKind("unretire_entity", "+", "bring back a retired entity (its table was kept)"),
    ChangeKind("drop_index", "-", "drop an index that went away or changed"),
    ChangeKind("rename_column", "~", "rename a field's column or JSON key (renamed_from)"),
    ChangeKind("unretire_column", "+", "bring back a retired field"),
    ChangeKind("add_column", "+", "add a field stored in a column"),
    ChangeKind("add_json_field", "+", "add a field stored in the JSON column (no DDL)"),
    ChangeKind("move_storage", "~", "move a field between a column and the JSON column"),
    ChangeKind("replace_options", "~", "rewrite rows of a removed picklist option (replace:)"),
    ChangeKind("remove_option", "~", "remove a picklist option no row uses"),
    ChangeKind("change_type", "~", "change a field's type"),
    ChangeKind("widen_length", "~", "widen a text length"),
    ChangeKind("narrow_length", "~", "narrow a text length"),
    ChangeKind("fill_default", "~", "fill the empty rows of a field that becomes required with its default"),
    ChangeKind("retire_column", "~", "retire a field (column and data kept, hidden)"),
    ChangeKind("retire_entity", "~", "retire an entity (table and data kept)"),
    ChangeKind("purge_column", "-", "drop a retired field after exporting it"),
    ChangeKind("add_index", "+", "create an index"),
    ChangeKind("feature_data", "~", "rewrite data a feature derives from the configuration (a plan step's "
                                    "change, e.g. rescoring every lead when scoring rules changed)"),
)
KINDS_BY_NAME = {k.name: k for k in CHANGE_KINDS}
#: Change kind names in the order a plan emits them.
KIND_ORDER: tuple[str, ...] = tuple(k.name for k in CHANGE_KINDS)


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
        marker = KINDS_BY_NAME[self.kind].marker
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


def format_plan(plan: Plan, *, verbose: bool = True) -> str:
    """The plan as text: one line per change, then a one-line summary.

    ``verbose`` False folds the indexes of a table the plan creates into its
    ``create table`` line (a first apply reads as one line per entity).
    """
    if plan.is_empty:
        return "no changes: the database already matches the configuration"
    lines = [c.line() for c in (plan.changes if verbose else _folded(plan.changes))]
    counts = {s: sum(1 for c in plan.changes if c.safety == s) for s in ("safe", "destructive", "blocked")}
    lines.append(
        f"{counted(len(plan.changes), 'change')}: {counts['safe']} safe, {counts['destructive']} destructive "
        f"(need --allow-destructive), {counts['blocked']} blocked"
    )
    return "\n".join(lines)


def _folded(changes: tuple[Change, ...]) -> list[Change]:
    created = {c.entity for c in changes if c.kind == "create_table"}
    indexes: dict[str, int] = {}
    then: dict[str, list[str]] = {}  # a feature's data step on a new table (its search index, ...)
    for c in changes:
        if c.kind == "add_index" and c.entity in created:
            indexes[c.entity] = indexes.get(c.entity, 0) + 1
        elif c.kind == "feature_data" and c.entity in created and c.safety == "safe":
            then.setdefault(c.entity, []).append(c.description)
    out = []
    for c in changes:
        if c.kind in ("add_index", "feature_data") and c.entity in created and (
                c.kind == "add_index" or c.description in then.get(c.entity, ())):
            continue
        if c.kind == "create_table" and indexes.get(c.entity):
            c = replace(c, note=f"{c.note}, {counted(indexes[c.entity], 'index', 'indexes')}")
        if c.kind == "create_table" and then.get(c.entity):
            c = replace(c, note=f"{c.note}; then {', '.join(then[c.entity])}")
        out.append(c)
    return out


def fmt_rows(n: int | None) -> str:
    """``10,000 rows`` / ``1 row``."""
    return counted(n, "row")
