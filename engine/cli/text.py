"""How the CLI prints what the services return (the services return data; the admin UI prints its own)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.dsl.model import Workspace, text_in
from engine.runtime.schema.model import format_plan
from engine.runtime.schema.operations import PlanReport
from engine.runtime.schema.revisions import Revision
from engine.wording import counted


def plan_report(report: PlanReport, *, verbose: bool = False) -> str:
    """``crm plan`` and ``crm apply``: where the database stands, the drift from the folder, the schema
    changes (a created table's indexes folded into its line unless ``verbose``), then the configuration
    changes that touch no table."""
    active, ws = report.active, report.workspace
    lines = []
    if report.missing_file is not None:
        lines.append(f"the database file {report.missing_file} does not exist yet: apply creates it")
    if active is None:
        lines.append(f"database has no revision yet: the plan creates workspace {ws.name!r}")
    else:
        state = "matches the folder" if active.content_hash == ws.content_hash else "differs from the folder"
        lines.append(f"database is at revision {active.id} ({active.content_hash[:12]}), which {state}")
    if report.drift is not None:
        lines.append(report.drift.describe())
    if not report.plan.is_empty:
        lines.append(format_plan(report.plan, verbose=verbose))
    elif report.config_changes:
        lines.append("no schema changes")
    elif not report.pending:
        lines.append(format_plan(report.plan))
    if report.config_changes:
        lines.append(f"{counted(len(report.config_changes), 'configuration change')} (no table is touched):")
        lines += [f"  ~ {c}" for c in report.config_changes]
    if report.plan.blocked:
        lines.append("blocked: nothing can be applied until every '!' line above is fixed")
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
