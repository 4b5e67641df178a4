"""The ``crm`` group and what every command shares: ``--db``, located errors, the workspace folder.

Every command takes its workspace from a DIR argument or the current folder,
and its database from ``--db URL`` or ``CRM_DATABASE_URL`` (default: a SQLite
file ``crm.db`` in the workspace).  Errors are printed as
``file:line:col: message`` with a hint, and exit with status 1; never a
Python traceback (``CRM_DEBUG=1`` shows one for engine bugs).
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.errors import EngineError

F = TypeVar("F", bound=Callable[..., Any])

db_option = click.option("--db", "db_url", envvar="CRM_DATABASE_URL", default=None,
                         help="Database URL (default: sqlite file crm.db in the workspace).")


def friendly_errors(fn: F) -> F:
    """Print engine errors as located messages and exit 1; engine bugs exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EngineError as e:
            click.echo(str(e), err=True)
            sys.exit(1)
        except click.exceptions.ClickException:
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # an engine bug: say so plainly, keep the details for a report
            if os.environ.get("CRM_DEBUG"):
                traceback.print_exc()
            click.echo(f"internal error: {type(e).__name__}: {e}\n  hint: this is a bug in the engine; "
                       "run again with CRM_DEBUG=1 and report the output", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def workspace_dir(path: str | None) -> Path:
    return Path(path or ".").resolve()


def db_url_for(folder: Path, db_url: str | None) -> str:
    from engine.runtime.db import default_url, normalize_url

    return normalize_url(db_url) if db_url else default_url(folder)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crm-engine")
def main() -> None:
    """A metadata-driven CRM engine: declare the CRM in YAML, run it over SQL."""
