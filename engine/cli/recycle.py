"""``crm purge-deleted [DIR] --older-than 90d [--entity ENTITY]``: empty the recycle bin for good.

Records soft-deleted longer ago than the given age are first written to ``DIR/exports/<entity>.deleted.
<stamp>.jsonl`` (one JSON record a line, lines included), then deleted, each with a ``purge`` audit row
(:func:`engine.runtime.records.recycle.purge_deleted`); records that other rows still refer to are kept and
named.  ``--dry-run`` counts and writes nothing.  Runs as the system, in one transaction.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from engine.cli.base import db_option, friendly_errors, main, workspace_dir
from engine.cli.running import open_runtime, parse_duration


@main.command("purge-deleted")
@click.argument("directory", required=False)
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Purge records deleted longer ago than this: 30d, 12w, 90d...")
@click.option("--entity", default=None, help="Only this entity's records (default: every entity).")
@click.option("--export-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the export files go (default: DIR/exports).")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; write nothing.")
@db_option
@friendly_errors
def purge_deleted(directory: str | None, older_than: str, entity: str | None, export_dir: Path | None,
                  dry_run: bool, db_url: str | None) -> None:
    """Delete for good the records deleted more than AGE ago, after exporting them (see docs/recycle-bin.md)."""
    from engine.runtime.context import Actor

    age = parse_duration(older_than)
    folder = workspace_dir(directory)
    target = export_dir if export_dir is not None else folder / "exports"
    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        now = runtime.clock.now()
        found = uow.records.purge_deleted(before=now - age, entity=entity, export_dir=target,
                                          stamp=now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ"), dry_run=dry_run)
    shown = [o for o in found if o.purged or o.kept]
    if not shown:
        what = f"no {entity} record" if entity else "no record"
        click.echo(f"{what} was deleted before {now - age:%Y-%m-%d %H:%M} UTC: nothing to purge")
    for outcome in shown:
        click.echo(("would purge: " if dry_run else "") + outcome.describe())
    if dry_run:
        click.echo("dry run: nothing was written")
