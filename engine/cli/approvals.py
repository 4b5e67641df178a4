"""``crm approvals list [DIR]`` and ``crm approvals show ID [DIR]``: the approvals in the database, as
the system reads them -- which instances are pending (on which flow version) and who they wait for, and
one instance's tasks and history.  Read only; acting on approvals is the API's (docs/approvals.md).

Registered on the ``crm`` group when :mod:`engine.cli` is imported.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import select

from engine.cli.base import db_option, friendly_errors, main
from engine.cli.running import open_runtime
from engine.wording import counted

STATUSES = ("pending", "approved", "rejected", "withdrawn", "returned", "all")


@main.group()
def approvals() -> None:
    """Approval flows (审批): running instances and their history."""


@approvals.command("list")
@click.argument("directory", required=False)
@click.option("--status", default="pending", show_default=True, type=click.Choice(STATUSES))
@click.option("--flow", default=None, help="Only this flow's instances.")
@db_option
@friendly_errors
def list_instances(directory: str | None, status: str, flow: str | None, db_url: str | None) -> None:
    """One line per approval instance: id, flow and version, record, status, who it waits for."""
    from engine.runtime.approvals import views
    from engine.runtime.context import Actor
    from engine.runtime.engine_tables import crm_approval_instances as i

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system(), readonly=True) as uow:
        stmt = select(i.c.id).order_by(i.c.id)
        if status != "all":
            stmt = stmt.where(i.c.status == status)
        if flow is not None:
            stmt = stmt.where(i.c.flow == flow)
        ids = [r[0] for r in uow.conn.execute(stmt)]
        click.echo(f"{counted(len(ids), 'approval')} ({status})")
        for iid in ids:
            v = views.instance(uow, iid)
            waiting = ", ".join(v["waiting_for"]) or "-"
            click.echo(f"  #{v['id']:<6} {v['flow']} @{v['spec_digest'][:8]}  {v['entity']} {v['record_id']}  "
                       f"{v['status']:<9} waiting for: {waiting}")


@approvals.command("show")
@click.argument("instance_id", type=int)
@click.argument("directory", required=False)
@db_option
@friendly_errors
def show(instance_id: int, directory: str | None, db_url: str | None) -> None:
    """One approval: its tasks (step, assignee, status) and its history (who did what, when, the comment)."""
    from engine.runtime.approvals import views
    from engine.runtime.context import Actor

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system(), readonly=True) as uow:
        v = views.instance(uow, instance_id)
    click.echo(f"approval #{v['id']}: {v['flow']} on {v['entity']} {v['record_id']} -- {v['status']} "
               f"(submitted by {v['submitter'] or 'the system'})")
    click.echo("tasks:")
    for t in v["tasks"]:
        click.echo(f"  #{t['id']:<6} {t['step']:<20} {t['assignee'] or t['assignee_id']:<16} {t['status']}")
    click.echo("history:")
    for h in v["history"]:
        click.echo(f"  {_when(h['at'])}  {h['decision']:<12} {_who(h)}{(': ' + h['comment']) if h['comment'] else ''}")


def _when(at: Any) -> str:
    return f"{at:%Y-%m-%d %H:%M}"


def _who(h: dict[str, Any]) -> str:
    who = h["actor"] or "system"
    return f"{who} for {h['on_behalf_of']}" if h["on_behalf_of"] else who
