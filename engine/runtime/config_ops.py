"""Configuration operations behind the CLI: compile, plan, apply, revisions, rollback, pull.

Everything here goes through the same validate -> plan -> apply path; the
CLI (and later the admin UI) only formats and asks for confirmation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from engine.dsl.compiler import compile_bundle, compile_folder
from engine.dsl.model import Workspace
from engine.errors import ConfirmationRequired, PlanError
from engine.runtime.db import make_engine, sqlite_path

Echo = Callable[[str], None]
Confirm = Callable[[str], bool]


def compile_workspace(folder: Path) -> Workspace:
    """Compile the workspace folder (all layers, every check)."""
    return compile_folder(folder)


def compile_stored(bundle: dict[str, Any]) -> Workspace:
    """Compile a revision bundle read from the database."""
    return compile_bundle(bundle)


def open_engine(url: str) -> Engine:
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return make_engine(url)


@dataclass(frozen=True)
class PlanResult:
    plan: Any
    text: str


def plan_folder(folder: Path, url: str) -> PlanResult:
    """The plan from the database's active revision to the folder, with drift."""
    from engine.runtime import migrate, planner, revisions  # noqa: F401

    ws = compile_workspace(folder)
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            active = revisions.active_revision(conn)
            the_plan = planner.plan_against_database(conn, ws)
            lines = [_revision_line(active, ws)]
            if active is not None:
                lines.extend(revisions.drift_lines(active, ws))
            lines.append(planner.format_plan(the_plan))
            return PlanResult(the_plan, "\n".join(lines))
    finally:
        engine.dispose()


def _revision_line(active: Any, ws: Workspace) -> str:
    if active is None:
        return f"database is empty: the plan creates workspace {ws.name!r} from scratch"
    same = active.content_hash == ws.content_hash
    state = "matches the folder" if same else "differs from the folder"
    return f"database is at revision {active.id} ({active.content_hash[:12]}), which {state}"


def apply_folder(folder: Path, url: str, *, yes: bool, allow_destructive: bool, purge: bool, message: str,
                 author: str, echo: Echo, confirm: Confirm) -> Any:
    """Plan, show, confirm and apply the folder's workspace."""
    ws = compile_workspace(folder)
    return apply_workspace(ws, url, yes=yes, allow_destructive=allow_destructive, purge=purge, message=message,
                           author=author, echo=echo, confirm=confirm, export_dir=folder / "exports")


def apply_workspace(ws: Workspace, url: str, *, yes: bool, allow_destructive: bool, purge: bool, message: str,
                    author: str, echo: Echo, confirm: Confirm, export_dir: Path) -> Any:

    from engine.runtime import migrate, planner, revisions  # noqa: F401
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            the_plan = planner.plan_against_database(conn, ws, purge=purge)
        echo(planner.format_plan(the_plan))
        if not the_plan.changes:
            echo("nothing to change; the database already matches")
            return None
        if not yes and not confirm("apply these changes?"):
            raise ConfirmationRequired("not applied: confirm interactively or pass --yes",
                                       hint="review the plan above, then run again with --yes")
        result = migrate.apply(engine, ws, author=author, message=message, allow_destructive=allow_destructive,
                               purge=purge, export_dir=export_dir)
        echo(f"applied: revision {result.revision_id} ({len(the_plan.changes)} change(s))")
        for path in getattr(result, "exports", ()) or ():
            echo(f"exported retired data to {path}")
        return result
    finally:
        engine.dispose()


def list_revisions_text(url: str) -> str:

    from engine.runtime import migrate, planner, revisions  # noqa: F401
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            revs = revisions.list_revisions(conn)
    finally:
        engine.dispose()
    if not revs:
        return "no revisions yet: run 'crm apply'"
    lines = []
    for r in revs:
        mark = "*" if r.active else " "
        when = f"{r.created_at:%Y-%m-%d %H:%M}"
        lines.append(f"{mark} {r.id:>5}  {when}  {r.author:<12} {r.content_hash[:12]}  {r.message}")
    return "\n".join(lines)


def rollback_to(url: str, revision_id: int, *, yes: bool, allow_destructive: bool, author: str, echo: Echo,
                confirm: Confirm) -> Any:
    """Apply an earlier revision's bundle through the normal plan/apply path."""
    from engine.runtime import migrate, planner, revisions  # noqa: F401

    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            rev = revisions.get_revision(conn, revision_id)
    finally:
        engine.dispose()
    ws = compile_stored(rev.bundle)
    return apply_workspace(ws, url, yes=yes, allow_destructive=allow_destructive, purge=False,
                           message=f"rollback to revision {revision_id}", author=author, echo=echo,
                           confirm=confirm, export_dir=Path("exports"))


def pull_config(url: str, target: Path) -> int:
    """Write the active revision's workspace-layer files into ``target``; returns the file count."""
    from engine.runtime import migrate, planner, revisions  # noqa: F401

    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            rev = revisions.active_revision(conn)
    finally:
        engine.dispose()
    if rev is None:
        raise PlanError("the database has no applied revision yet", hint="run 'crm apply' first")
    return revisions.write_bundle(rev, target)


def run_demo(echo: Echo, folder: Path | None = None, url: str | None = None) -> Workspace:
    """Build the manufacturing demo workspace on SQLite, apply it, print plan and summary."""
    from engine.dsl.scaffold import init_workspace

    folder = (folder or Path("demo-crm")).resolve()
    if not (folder / "workspace.yaml").exists():
        init_workspace(folder, industry="manufacturing", name="demo", locale="zh", currency="CNY")
        echo(f"created demo workspace in {folder}")
    ws = compile_workspace(folder)
    url = url or f"sqlite:///{folder / 'crm.db'}"
    apply_workspace(ws, url, yes=True, allow_destructive=False, purge=False, message="demo", author="demo",
                    echo=echo, confirm=lambda _q: True, export_dir=folder / "exports")
    echo(summary(ws))
    return ws


def summary(ws: Workspace) -> str:
    """A table of the workspace's entities."""
    lines = [f"workspace {ws.name!r} ({' <- '.join(ws.layers)}), locale {ws.locale}, currency {ws.currency}"]
    for e in ws.entities.values():
        label = e.label.get(ws.locale) or e.label.get("en") or e.name
        kind = f"lines of {e.parent.entity}" if e.parent else ("core" if e.core else "custom")
        lines.append(f"  {e.name:<24} {label:<16} {len(e.fields):>3} fields  ({kind})")
    lines.append(f"  roles: {', '.join(ws.roles)}")
    return "\n".join(lines)
