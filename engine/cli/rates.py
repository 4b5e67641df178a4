"""``crm rates set|list|import`` (dated exchange rates) and ``crm forecast PIPELINE`` (the pipeline's totals
in one currency at the rates of one day).  Docs: docs/currencies.md.

Registered on the ``crm`` group when :mod:`engine.cli` is imported; rates are written as the system in one
transaction (an import is all or nothing).
"""

from __future__ import annotations

from pathlib import Path

import click

from engine.cli.base import db_option, friendly_errors, main
from engine.cli.running import open_runtime


@main.group()
def rates() -> None:
    """Exchange rates (汇率): 1 FROM is worth RATE TO from a day on."""


@rates.command("set")
@click.argument("from_currency")
@click.argument("to_currency")
@click.argument("rate")
@click.argument("directory", required=False)
@click.option("--date", "day", required=True, metavar="YYYY-MM-DD", help="The day the rate applies from.")
@db_option
@friendly_errors
def set_rate(from_currency: str, to_currency: str, rate: str, directory: str | None, day: str,
             db_url: str | None) -> None:
    """Set the rate of FROM_CURRENCY in TO_CURRENCY from a day on (replaces that day's rate)."""
    from engine.runtime import exchange_rates
    from engine.runtime.context import Actor

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        r = exchange_rates.set_rate(uow.conn, from_currency, to_currency, rate, day, now=runtime.clock.now(),
                                    source="cli")
    click.echo(f"1 {r.from_currency} = {r.rate.normalize():f} {r.to_currency} from {r.rate_date.isoformat()}")


@rates.command("list")
@click.argument("directory", required=False)
@click.option("--currency", default=None, help="Only pairs with this currency.")
@db_option
@friendly_errors
def list_rates(directory: str | None, currency: str | None, db_url: str | None) -> None:
    """List the stored rates by pair and day."""
    from engine.runtime import exchange_rates
    from engine.runtime.context import Actor

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system(), readonly=True) as uow:
        found = exchange_rates.list_rates(uow.conn, currency=currency)
    if not found:
        click.echo("no exchange rates (set one: crm rates set USD CNY 7.1 --date 2026-12-01)")
    for r in found:
        click.echo(f"{r.rate_date.isoformat()}  {r.from_currency} -> {r.to_currency}  {r.rate.normalize():f}"
                   + (f"  ({r.source})" if r.source else ""))


@rates.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("directory", required=False)
@db_option
@friendly_errors
def import_rates(file: Path, directory: str | None, db_url: str | None) -> None:
    """Import rates from a CSV file with the columns from,to,rate,date (all rows or none)."""
    from engine.runtime import exchange_rates
    from engine.runtime.context import Actor

    rows = exchange_rates.parse_csv(file.read_text(encoding="utf-8"))
    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        count = exchange_rates.import_rates(uow.conn, rows, now=runtime.clock.now(), source=f"import:{file.name}")
    click.echo(f"imported {count} exchange rate{'s' if count != 1 else ''} from {file.name}")


@main.command()
@click.argument("pipeline")
@click.argument("directory", required=False)
@click.option("--as-of", "as_of", default=None, metavar="YYYY-MM-DD", help="Use the rates of this day "
              "(default: today).")
@click.option("--currency", default=None, help="Sum in this currency (default: the workspace's).")
@click.option("--field", default="amount", show_default=True, help="The money field to sum.")
@db_option
@friendly_errors
def forecast(pipeline: str, directory: str | None, as_of: str | None, currency: str | None, field: str,
             db_url: str | None) -> None:
    """The PIPELINE's records, total and probability-weighted total per stage, in one currency."""
    from engine.runtime.context import Actor
    from engine.runtime.currency import totals

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system(), readonly=True) as uow:
        fc = totals.forecast(uow, pipeline, field=field, currency=currency, as_of=as_of)
    click.echo(f"{fc['pipeline']} ({fc['entity']}.{fc['field']}) in {fc['currency']} at the rates of {fc['as_of']}")
    for s in fc["stages"]:
        click.echo(f"  {s['stage']:<20} {s['count']:>6}  {s['amount']:>16}  {s['weighted']:>16}")
    click.echo(f"  {'total':<20} {'':>6}  {fc['total']:>16}  {fc['weighted']:>16}")
