"""``crm pools preview [POOL] [DIR]``: the recycle dry run -- which held records the next run would
return to their pool, and which rule fires for each, and whose holders it would warn.

Registered on the ``crm`` group when :mod:`engine.cli` is imported; reads through the pool service as the
system (every pool, every holder), never writing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import click

from engine.cli.base import db_option, friendly_errors, main
from engine.cli.running import open_runtime
from engine.wording import counted


@main.group()
def pools() -> None:
    """Lead pools (公海): the recycle dry run."""


@pools.command("preview")
@click.argument("pool", required=False)
@click.argument("directory", required=False)
@click.option("--at", "at_text", default=None, metavar="DATETIME",
              help="Preview a run at this moment (ISO 8601, UTC by default) instead of now.")
@db_option
@friendly_errors
def preview(pool: str | None, directory: str | None, at_text: str | None, db_url: str | None) -> None:
    """List what the next recycle run would return (and warn about), per pool, with the rule of each record.

    POOL: one pool (default: every pool with recycle rules).  A single argument that is a folder is
    the workspace.
    """
    from engine.runtime.context import Actor
    from engine.runtime.sales import pools as service

    if pool is not None and directory is None and (Path(pool).is_dir() or "/" in pool):
        pool, directory = None, pool
    at = _moment(at_text)
    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system(), readonly=True) as uow:
        found = service.preview(uow, pool, at)
        locale = uow.workspace.locale
        if not found:
            click.echo("no pool has recycle rules")
        for p in found:
            _print(p.to_dict(locale))


def _moment(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise click.BadParameter(f"{text!r} is not a date and time (e.g. 2026-03-01T09:00)", param_hint="--at") from e
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def _print(p: dict[str, Any]) -> None:
    at = p["at"].astimezone(dt.UTC)
    click.echo(f"{p['pool']} (a run at {at:%Y-%m-%d %H:%M} UTC): {counted(len(p['returns']), 'record')} to return, "
               f"{counted(len(p['warnings']), 'warning')}")
    for kind, items in (("return", p["returns"]), ("warn", p["warnings"])):
        for c in items:
            where = f" -> {c['to_pool']}" if kind == "return" and c.get("to_pool") != p["pool"] else ""
            click.echo(f"  {kind:<6} #{c['id']:<7} {c['title'][:40]:<40} holder {c['holder'] or c['holder_id']}"
                       f"{where}  rule {c['rule'] + 1}: {c['reason']}  [{c['when']}]")
