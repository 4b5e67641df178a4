"""``crm keys generate`` and ``crm keys rotate``: the keys of encrypted fields (see docs/encrypted-fields.md)."""

from __future__ import annotations

import click

from engine.cli.base import db_option, friendly_errors, main
from engine.cli.running import open_runtime


@main.group()
def keys() -> None:
    """Keys of encrypted fields (CRM_ENCRYPTION_KEYS)."""


@keys.command()
@click.option("--id", "key_id", default=None, help="The key's id (default: k<YYYYMMDD>).")
@friendly_errors
def generate(key_id: str | None) -> None:
    """Print a new key entry ``id:base64key`` for CRM_ENCRYPTION_KEYS (alone on its line)."""
    import datetime as dt

    from engine.runtime import crypto

    click.echo(crypto.generate_key(key_id or dt.datetime.now(dt.UTC).strftime("k%Y%m%d")))


@keys.command()
@click.argument("directory", required=False)
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="Rows per transaction.")
@db_option
@friendly_errors
def rotate(directory: str | None, batch: int, db_url: str | None) -> None:
    """Seal every encrypted value again with the current (first) key of CRM_ENCRYPTION_KEYS.

    Resumable: run it again after an interruption; values already sealed with the current key are skipped.
    Afterwards the older keys can be removed from CRM_ENCRYPTION_KEYS."""
    from engine.runtime.encryption.rotate import rotate as rotate_all

    with open_runtime(directory, db_url) as runtime:
        report = rotate_all(runtime, page=batch, echo=click.echo)
    total = sum(report.values.values())
    click.echo(f"done: {total} values sealed with key {report.current!r}; older keys may now be removed")
