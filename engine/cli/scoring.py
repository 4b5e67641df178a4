"""``crm rescore ENTITY``: rescore every record of an entity, set-based (after a data import that bypassed
scoring, or to refresh time-based rules now rather than at the nightly job)."""

from __future__ import annotations

import click

from engine.cli.base import db_option, friendly_errors, main
from engine.wording import counted


@main.command()
@click.argument("entity")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def rescore(entity: str, directory: str | None, db_url: str | None) -> None:
    """Rescore every ENTITY record under each of its scorings; prints how many scores and grades changed."""
    from engine.cli.running import open_runtime
    from engine.runtime.context import Actor
    from engine.runtime.sales.scoring import rescore_entity

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        results = rescore_entity(uow, entity)
    for r in results:
        click.echo(f"rescored {r.entity} (scoring {r.scoring}): {counted(r.scores_changed, 'score')} and "
                   f"{counted(r.grades_changed, 'grade')} changed")
