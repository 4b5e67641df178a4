"""The ``crm`` command.

Every command takes its workspace from a DIR argument or the current folder,
and its database from ``--db URL`` or ``CRM_DATABASE_URL`` (default: a SQLite
file ``crm.db`` in the workspace).  Errors are printed as
``file:line:col: message`` with a hint, and exit with status 1; never a
Python traceback (``CRM_DEBUG=1`` shows one for engine bugs).

The group lives in :mod:`engine.cli.base`; :mod:`engine.cli.config` (the
configuration lifecycle) and :mod:`engine.cli.running` (serve, demo, users,
tokens, worker, ...) add their commands to it, and installed plugins add
theirs (``crm_cli_commands``).  Imports run one way: base <- config,
running <- this package.
"""

from __future__ import annotations

import click

from engine.cli import (  # noqa: F401  (each adds its commands to the group)
    approvals,
    config,
    dedupe,
    flows,
    keys,
    people,
    pools,
    rates,
    recycle,
    running,
    scoring,
)
from engine.cli.base import db_option, db_url_for, friendly_errors, main, workspace_dir

__all__ = ["add_plugin_commands", "db_option", "db_url_for", "friendly_errors", "main", "workspace_dir"]


def add_plugin_commands(group: click.Group) -> None:
    """The ``crm_cli_commands`` of every installed plugin, added to ``group`` (a clash with a built-in
    command or a plugin that fails to load is a warning, never a broken ``crm``)."""
    from engine.plugins import PluginHost, installed_plugins

    try:
        commands = PluginHost(tuple(installed_plugins())).cli_commands()
    except Exception as e:  # a broken third-party plugin must not take the whole CLI down
        click.echo(f"warning: plugin commands not loaded: {type(e).__name__}: {e}", err=True)
        return
    for command in commands:
        if command.name in group.commands:
            click.echo(f"warning: a plugin's command {command.name!r} clashes with a built-in one; ignored",
                       err=True)
        else:
            group.add_command(command)


add_plugin_commands(main)
