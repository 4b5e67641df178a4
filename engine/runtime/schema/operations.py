"""Configuration operations behind the CLI: compile, plan, apply, revisions, rollback, pull.

Everything here goes through the same validate -> plan -> apply path; the
CLI (and later the admin UI) only formats and asks for confirmation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from engine import plugins
from engine.dsl.compare import config_changes
from engine.dsl.layers import MANIFESTS
from engine.dsl.model import Workspace
from engine.errors import ConfirmationRequired, EngineError, PlanError, SchemaViolation
from engine.runtime import crypto
from engine.runtime.db import make_engine, require_file, sqlite_path
from engine.runtime.schema import apply as migrate
from engine.runtime.schema import diff as planner
from engine.runtime.schema import revisions
from engine.runtime.schema.apply import ApplyResult
from engine.runtime.schema.model import Plan

Echo = Callable[[str], None]
Confirm = Callable[[str], bool]


def compile_workspace(folder: Path) -> Workspace:
    """Compile the workspace folder (all layers, every check) with the plugins it enables."""
    return plugins.compile_folder(folder)[0]


def compile_stored(bundle: Mapping[str, Any]) -> Workspace:
    """Compile a revision bundle read from the database, with the plugins it enables."""
    return plugins.compile_bundle(bundle)[0]


def open_engine(url: str) -> Engine:
    """An engine for ``url``; creates the SQLite file's folder if needed."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return make_engine(url)


@contextmanager
def connection(url: str) -> Iterator[Connection]:
    """A read connection to the existing database at ``url``; disposed afterwards (one-shot CLI use)."""
    require_file(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def plan_against_database(conn: Connection, ws: Workspace, *, purge: bool = False,
                          export_dir: Path | None = None) -> Plan:
    """The plan from the database's active revision (or an empty database) to ``ws``."""
    active = revisions.active_revision(conn)
    state = revisions.revision_state(active, compile_stored) if active is not None else None
    return planner.plan_from_state(state, ws, conn, purge=purge, export_dir=export_dir)


@dataclass(frozen=True)
class PlanReport:
    """What ``crm plan`` (and ``crm apply`` before it asks) reports, as data: the plan, the folder's
    workspace, the active revision, how the folder's files differ from it (None when in sync or
    nothing was applied) and the configuration changes that touch no table (labels, rules, roles)."""

    plan: Plan
    workspace: Workspace
    active: revisions.Revision | None
    drift: revisions.Drift | None
    #: the SQLite file the URL names when it does not exist yet (the plan is against an empty database)
    missing_file: Path | None = None
    config_changes: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        """Whether an apply would do anything (schema changes, or a new revision of the configuration)."""
        return (not self.plan.is_empty or self.active is None
                or self.active.content_hash != self.workspace.content_hash)

    @property
    def status(self) -> str:
        """``blocked`` / ``changes`` / ``none``."""
        return "blocked" if self.plan.blocked else "changes" if self.pending else "none"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``crm plan --json`` prints."""
        active = self.active
        counts = {s: sum(1 for c in self.plan.changes if c.safety == s) for s in ("safe", "destructive", "blocked")}
        return {
            "status": self.status,
            "workspace": self.workspace.name,
            "content_hash": self.workspace.content_hash,
            "database": {
                "revision": active.id if active else None,
                "content_hash": active.content_hash if active else None,
                "missing_file": str(self.missing_file) if self.missing_file else None,
            },
            "drift": None if self.drift is None else {
                "added": list(self.drift.added), "removed": list(self.drift.removed),
                "changed": list(self.drift.changed)},
            "changes": self.plan.to_list(),
            "configuration_changes": list(self.config_changes),
            "counts": counts,
        }


def check_same_workspace(active: revisions.Revision | None, ws: Workspace, *, force: bool) -> None:
    """PlanError when the database holds another workspace than ``ws`` (unless ``force``)."""
    theirs = active.bundle.get("workspace") if active is not None else None
    if theirs is None or theirs == ws.name or force:
        return
    raise PlanError(
        f"the database holds workspace {theirs!r} (revision {active.id if active else '?'}), not {ws.name!r}",
        code="other_workspace",
        hint="check --db / CRM_DATABASE_URL and the folder; to put this workspace in its place anyway, run "
             f"again with --force (the fields of {theirs!r} that {ws.name!r} lacks are retired, their data kept)",
    )


def report_for(conn: Connection, ws: Workspace, *, force: bool = False, purge: bool = False,
               export_dir: Path | None = None, missing_file: Path | None = None) -> PlanReport:
    """The plan from the database behind ``conn`` to ``ws``, with drift and configuration changes."""
    active = revisions.active_revision(conn)
    check_same_workspace(active, ws, force=force)
    the_plan = plan_against_database(conn, ws, purge=purge, export_dir=export_dir)
    drift = None
    changes: tuple[str, ...] = ()
    if active is not None and active.content_hash != ws.content_hash:
        drift = revisions.detect_drift(active, ws)
        changes = _config_changes(active, ws)
    return PlanReport(the_plan, ws, active, drift, missing_file, changes)


def _config_changes(active: revisions.Revision, ws: Workspace) -> tuple[str, ...]:
    try:
        before = compile_stored(active.bundle)
    except EngineError as e:
        return (f"(the active revision's files no longer compile here, so its changes cannot be listed: "
                f"{e.message})",)
    return config_changes(before, ws)


def plan_folder(folder: Path, url: str, *, force: bool = False) -> PlanReport:
    """The plan from the database's active revision to the folder.

    A SQLite file that does not exist yet is planned as an empty database and
    is not created (planning never writes).
    """
    ws = compile_workspace(folder)
    path = sqlite_path(url)
    missing = path if path is not None and not path.exists() else None
    with connection("sqlite://" if missing else url) as conn:
        return report_for(conn, ws, force=force, missing_file=missing)


Describe = Callable[[PlanReport], str]


def apply_folder(folder: Path, url: str, *, yes: bool, allow_destructive: bool, purge: bool, message: str,
                 author: str, echo: Echo, confirm: Confirm, describe: Describe, force: bool = False
                 ) -> ApplyResult | None:
    """Plan, show, confirm and apply the folder's workspace."""
    ws = compile_workspace(folder)
    return apply_workspace(ws, url, yes=yes, allow_destructive=allow_destructive, purge=purge,
                           message=message, author=author, echo=echo, confirm=confirm, describe=describe,
                           export_dir=folder / "exports", force=force)


def apply_workspace(ws: Workspace, url: str, *, yes: bool, allow_destructive: bool, purge: bool, message: str,
                    author: str, echo: Echo, confirm: Confirm, export_dir: Path,
                    describe: Describe | None = None, force: bool = False) -> ApplyResult | None:
    """Show the plan (``describe``), ask (unless ``yes``), apply in one transaction; None when nothing
    changed."""
    crypto.require_keys(ws)  # before anything is planned or shown: a missing key is a startup error
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            report = report_for(conn, ws, force=force, purge=purge, export_dir=export_dir)
        echo(describe(report) if describe is not None else planner.format_plan(report.plan))
        if not report.pending:
            return None
        the_plan, active = report.plan, report.active
        migrate.check_allowed(the_plan, allow_destructive=allow_destructive)
        if not yes and not confirm("apply these changes?"):
            raise ConfirmationRequired("not applied: confirm interactively or pass --yes",
                                       hint="review the plan above, then run again with --yes")
        result = migrate.apply(engine, ws, author=author, message=message, allow_destructive=allow_destructive,
                               purge=purge, export_dir=export_dir, compile_bundle=compile_stored,
                               expect_plan=the_plan.fingerprint(active.id if active else None))
        for path in result.exported:
            echo(f"exported retired data to {path}")
        echo(f"applied: revision {result.revision_id}")
        return result
    finally:
        engine.dispose()


def database_problems(ws: Workspace, url: str) -> list[EngineError]:
    """What ``crm validate`` can only see with the database: a ``renamed_from`` that names no field the
    database has, and a workspace other than the database's.  Nothing when there is no database yet."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return []
    with connection(url) as conn:
        active = revisions.active_revision(conn)
        if active is None:
            return []
        problems: list[EngineError] = []
        try:
            check_same_workspace(active, ws, force=False)
        except PlanError as e:
            problems.append(e)
        state = revisions.revision_state(active, compile_stored)
    for entity in ws.entities.values():
        before = state.entities.get(entity.name) or state.retired_entities.get(entity.name)
        if before is None:
            continue
        for f in entity.fields.values():
            source = f.renamed_from
            if source and f.name in before.fields and source in before.fields and source not in entity.fields:
                problems.append(SchemaViolation(
                    f"field {entity.name}.{f.name} is renamed_from {source!r}, but the database has both fields "
                    f"(revision {active.id}): renaming would merge their data", location=f.location,
                    hint=f"rename to a name no field uses, or drop renamed_from ({source} is then retired, "
                         "keeping its data)"))
                continue
            if not source or f.name in before.fields or source in before.fields or source in before.retired:
                continue
            known = sorted(n for n in before.fields if n not in entity.fields)
            problems.append(SchemaViolation(
                f"field {entity.name}.{f.name} is renamed_from {source!r}, but the database's {entity.name} has "
                f"no field {source!r} (revision {active.id})", location=f.location,
                hint=(f"fields the database has that the folder no longer lists: {', '.join(known)}"
                      if known else "remove renamed_from to add a new, empty field")))
    return problems


def list_revisions(url: str) -> list[revisions.Revision]:
    """Every revision of the database at ``url``, newest first."""
    with connection(url) as conn:
        return revisions.list_revisions(conn)


def rollback_to(url: str, revision_id: int, *, yes: bool, allow_destructive: bool, author: str, echo: Echo,
                confirm: Confirm, export_dir: Path, message: str | None = None,
                describe: Describe | None = None) -> ApplyResult | None:
    """Apply an earlier revision's files through the normal plan/apply path (data is never dropped)."""
    with connection(url) as conn:
        target = revisions.rollback_target(conn, revision_id, compile_stored)
    return apply_workspace(target, url, yes=yes, allow_destructive=allow_destructive, purge=False,
                           message=message or f"rollback to revision {revision_id}", author=author, echo=echo,
                           confirm=confirm, export_dir=export_dir, describe=describe, force=True)


def pull_config(url: str, target: Path) -> int:
    """Write the active revision's own layer (the workspace folder) into ``target``; the file count.

    Shipped layers (base, industry templates) are not written: the folder
    extends them again, exactly like the one the revision was applied from.
    """
    with connection(url) as conn:
        rev = revisions.active_revision(conn)
    if rev is None:
        raise PlanError("the database has no applied revision yet", hint="run 'crm apply' first")
    top = rev.bundle["layers"][-1]
    count = len(revisions.write_bundle(rev, target, layer=top))
    if not any((target / m).exists() for m in MANIFESTS):
        raise PlanError(f"revision {rev.id} has no workspace.yaml in its top layer {top!r}",
                        hint="the revision was applied from a template folder; pull is for workspaces")
    return count
