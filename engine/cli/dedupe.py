"""``crm dedupe rebuild [DIR] [--entity ENTITY]``: recompute the stored duplicate keys.

The dedupe write step keeps the keys of every record it writes; records written before a rule existed (or
loaded behind the record service) get theirs here, in batches, in one transaction.
"""

from __future__ import annotations

import click

from engine.cli.base import db_option, friendly_errors, main
from engine.cli.running import open_runtime


@main.group()
def dedupe() -> None:
    """Duplicate rules: keys of the records (see docs/dedupe.md)."""


@dedupe.command()
@click.argument("directory", required=False)
@click.option("--entity", default=None, help="Only this entity's records (default: every entity a rule reads).")
@db_option
@friendly_errors
def rebuild(directory: str | None, entity: str | None, db_url: str | None) -> None:
    """Recompute the duplicate keys of ENTITY's records (default: every entity a dedupe rule reads)."""
    from engine.errors import NotFound
    from engine.runtime.context import Actor
    from engine.runtime.sales.dedupe import rebuild as rebuild_keys
    from engine.runtime.sales.dedupe_keys import index

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        known = sorted(index(uow).sources)
        if entity is not None and entity not in known:
            raise NotFound(f"no dedupe rule reads {entity!r} records", code="not_found",
                           hint=f"entities with keys: {', '.join(known) or 'none (no dedupe: documents)'}")
        done = rebuild_keys(uow, entity)
    for name, count in done.items():
        click.echo(f"{name}: {count} keys")
