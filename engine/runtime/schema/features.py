"""Feature data changes of a plan: the plumbing of the ``crm_plan_steps`` hook.

A plan step (scoring's rescoring, ...) is an object with ``name``, ``plan(pctx) -> list[Change]`` and
``apply(actx, change)``, and optionally ``fingerprints(workspace) -> {key: hash}``.  The planner asks
the steps of the *new* workspace's plugin host for their changes (kind ``feature_data``, with
``details["step"]`` naming the step) after the schema changes; the apply runs each through the step of
that name, in the apply's transaction, once the schema changes are made and the revision is recorded.

Fingerprints let a step tell cheaply whether what it watches changed: the planner stores every step's
fingerprints of the new workspace in the revision's schema snapshot (:class:`DbState.fingerprints`),
and hands the active revision's to the next plan (:attr:`FeaturePlanContext.old_fingerprints`) --
unchanged scoring rules cost no table scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Connection

from engine.dsl.model import STANDARD_COLUMNS, Workspace, frozen_map
from engine.runtime.schema.model import Change
from engine.runtime.schema.snapshot import DbState
from engine.runtime.storage import Schema, build_schema

#: the change kind every plan step's changes have
FEATURE_DATA = "feature_data"


@dataclass(frozen=True)
class FeaturePlanContext:
    """What a plan step's ``plan(pctx)`` may use: the connection (None: an empty database, nothing to
    count), the database state the active revision left (``old``, None: nothing applied yet) and the new
    workspace (its objects, and its SQL schema for counting with the new rules)."""

    conn: Connection | None
    dialect: str
    old: DbState | None
    new: Workspace

    @property
    def old_fingerprints(self) -> Mapping[str, str]:
        return self.old.fingerprints if self.old is not None else frozen_map()

    @cached_property
    def new_schema(self) -> Schema:
        """The new workspace bound to the dialect (its tables, the SQL of its expressions)."""
        return build_schema(self.new, self.dialect)

    def holds(self, entity: str, fields: Iterable[str] = ()) -> bool:
        """Whether the database already has ``entity``'s table with each of ``fields`` stored as the new
        workspace stores it (a column of the same name), so a count with the new rules can run now."""
        if self.conn is None or self.old is None:
            return False
        before = self.old.entities.get(entity)
        after = self.new.entities.get(entity)
        if before is None or after is None:
            return False
        for name in fields:
            if name in STANDARD_COLUMNS:
                continue
            old_f, new_f = before.fields.get(name), after.fields.get(name)
            if old_f is None or new_f is None or (old_f.storage, old_f.column_name, old_f.type) != (
                    new_f.storage, new_f.column_name, new_f.type):
                return False
        return True


def plan_steps(workspace: Workspace) -> list[Any]:
    """The plan steps of ``workspace``'s plugins (the built-in features' and the enabled plugins'), by name."""
    from engine.plugins import PluginHost

    return PluginHost(workspace.plugins).plan_steps(workspace)


def fingerprints_of(steps: Iterable[Any], workspace: Workspace) -> dict[str, str]:
    """Every step's fingerprints of ``workspace``."""
    out: dict[str, str] = {}
    for step in steps:
        get = getattr(step, "fingerprints", None)
        if get is not None:
            out.update(get(workspace))
    return out


def feature_changes(conn: Connection | None, dialect: str, old: DbState | None, new: Workspace
                    ) -> tuple[list[Change], Mapping[str, str]]:
    """The plan steps' changes from ``old`` to ``new`` and the fingerprints the new revision records."""
    steps = plan_steps(new)
    ctx = FeaturePlanContext(conn, dialect, old, new)
    changes: list[Change] = []
    for step in steps:
        for change in step.plan(ctx):
            if change.kind != FEATURE_DATA or change.details.get("step") != step.name:
                raise ValueError(f"plan step {step.name!r} returned a {change.kind} change not naming it "
                                 "(kind feature_data, details['step'] = its name)")
            changes.append(change)
    return changes, frozen_map(fingerprints_of(steps, new))


def find_step(workspace: Workspace, name: str) -> Any:
    """The plan step called ``name`` of ``workspace``'s plugins (KeyError when no plugin offers it)."""
    for step in plan_steps(workspace):
        if step.name == name:
            return step
    raise KeyError(name)


@dataclass
class FeatureApplyContext:
    """What a plan step's ``apply(actx, change)`` gets: the apply's connection, the new workspace and its
    schema, the revision being recorded (audit rows name it) and the apply's clock reading."""

    conn: Connection
    workspace: Workspace
    revision_id: int | None
    now: Any
    done: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def schema(self) -> Schema:
        return build_schema(self.workspace, self.conn.dialect.name)
