"""``crm`` commands that run the CRM: serve, demo, user, token, expr, worker.

Registered on :data:`engine.cli.main` when :mod:`engine.cli` is imported.
"""

from __future__ import annotations

import click

from engine.cli import friendly_errors, main


@main.command()
@friendly_errors
def demo() -> None:
    """Build the demo CRM (manufacturing workspace, SQLite) and show its plan and summary."""
    from engine.runtime.config_ops import run_demo

    run_demo(echo=click.echo)
