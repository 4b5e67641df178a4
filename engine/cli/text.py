"""How the CLI prints what the services return (the services return data; the admin UI prints its own)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.dsl.model import Workspace, text_in
from engine.runtime.schema.diff import format_plan
from engine.runtime.schema.operations import PlanReport
from engine.runtime.schema.revisions import Revision


def plan_report(report: PlanReport) -> str:
    """``crm plan``: where the database stands, the drift from the folder, then the plan."""
    active, ws = report.active, report.workspace
    if active is None:
        lines = [f"database has no revision yet: the plan creates workspace {ws.name!r}"]
    else:
        state = "matches the folder" if active.content_hash == ws.content_hash else "differs from the folder"
        lines = [f"database is at revision {active.id} ({active.content_hash[:12]}), which {state}"]
    if report.drift is not None:
        lines.append(report.drift.describe())
    lines.append(format_plan(report.plan))
    return "\n".join(lines)


def revision_lines(revs: Sequence[Revision]) -> str:
    """``crm revisions``: one line per revision, newest first, ``*`` marks the active one."""
    if not revs:
        return "no revisions yet: run 'crm apply'"
    lines = []
    for r in revs:
        mark = "*" if r.active else " "
        lines.append(f"{mark} {r.id:>5}  {r.created_at:%Y-%m-%d %H:%M}  {r.author:<12} {r.content_hash[:12]}  "
                     f"{r.message}")
    return "\n".join(lines)


def workspace_summary(ws: Workspace) -> str:
    """A table of the workspace's entities and its roles."""
    lines = [f"workspace {ws.name!r} ({' <- '.join(ws.layers)}), locale {ws.locale}, currency {ws.currency}"]
    for e in ws.entities.values():
        label = text_in(e.label, ws.locale, e.name)
        kind = f"lines of {e.parent.entity}" if e.parent else ("core" if e.core else "custom")
        fields = "field " if len(e.fields) == 1 else "fields"
        lines.append(f"  {e.name:<24} {label:<16} {len(e.fields):>3} {fields}  ({kind})")
    lines.append(f"  roles: {', '.join(ws.roles)}")
    return "\n".join(lines)
