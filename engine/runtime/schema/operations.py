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
from engine.dsl.layers import MANIFESTS
from engine.dsl.model import Workspace
from engine.errors import ConfirmationRequired, PlanError
from engine.runtime.db import make_engine, sqlite_path
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
    """A read connection to ``url``; the engine is disposed afterwards (one-shot CLI use)."""
    engine = open_engine(url)
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
    """What ``crm plan`` reports, as data: the plan, the folder's workspace, the active revision and
    how the folder differs from it (None when in sync or nothing was applied)."""

    plan: Plan
    workspace: Workspace
    active: revisions.Revision | None
    drift: revisions.Drift | None


def plan_folder(folder: Path, url: str) -> PlanReport:
    """The plan from the database's active revision to the folder, with drift."""
    ws = compile_workspace(folder)
    with connection(url) as conn:
        active = revisions.active_revision(conn)
        the_plan = plan_against_database(conn, ws)
    drift = revisions.detect_drift(active, ws) if active is not None and active.content_hash != ws.content_hash \
        else None
    return PlanReport(the_plan, ws, active, drift)


def apply_folder(folder: Path, url: str, *, yes: bool, allow_destructive: bool, purge: bool, message: str,
                 author: str, echo: Echo, confirm: Confirm) -> ApplyResult | None:
    """Plan, show, confirm and apply the folder's workspace."""
    ws = compile_workspace(folder)
    return apply_workspace(ws, url, yes=yes, allow_destructive=allow_destructive, purge=purge,
                           message=message, author=author, echo=echo, confirm=confirm,
                           export_dir=folder / "exports")


def apply_workspace(ws: Workspace, url: str, *, yes: bool, allow_destructive: bool, purge: bool, message: str,
                    author: str, echo: Echo, confirm: Confirm, export_dir: Path) -> ApplyResult | None:
    """Show the plan, ask (unless ``yes``), apply in one transaction; None when nothing changed."""
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            active = revisions.active_revision(conn)
            the_plan = plan_against_database(conn, ws, purge=purge, export_dir=export_dir)
        echo(planner.format_plan(the_plan))
        if the_plan.is_empty and active is not None and active.content_hash == ws.content_hash:
            return None
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


def list_revisions(url: str) -> list[revisions.Revision]:
    """Every revision of the database at ``url``, newest first."""
    with connection(url) as conn:
        return revisions.list_revisions(conn)


def rollback_to(url: str, revision_id: int, *, yes: bool, allow_destructive: bool, author: str, echo: Echo,
                confirm: Confirm, export_dir: Path) -> ApplyResult | None:
    """Apply an earlier revision's files through the normal plan/apply path (data is never dropped)."""
    with connection(url) as conn:
        target = revisions.rollback_target(conn, revision_id, compile_stored)
    return apply_workspace(target, url, yes=yes, allow_destructive=allow_destructive, purge=False,
                           message=f"rollback to revision {revision_id}", author=author, echo=echo,
                           confirm=confirm, export_dir=export_dir)


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
