"""The ``crm`` group and what every command shares: ``--db``, located errors, the workspace folder.

Every command takes its workspace from a DIR argument or the current folder,
and its database from ``--db URL`` or ``CRM_DATABASE_URL`` (default: a SQLite
file ``crm.db`` in the workspace).  Errors are printed as
``file:line:col: message`` with a hint; never a Python traceback
(``CRM_DEBUG=1`` shows one for engine bugs).

Exit statuses (docs/cli.md): 0 done; 1 an error the user can fix (configuration,
database, input, a blocked plan); 2 ``crm plan`` found changes to apply;
64 the command line itself is wrong (unknown option, missing argument);
70 an engine bug.
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

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_USAGE = 64
EXIT_BUG = 70
#: where db_url_for keeps the URL it resolved, for the error messages of friendly_errors
URL_KEY = "crm.db_url"

db_option = click.option("--db", "db_url", envvar="CRM_DATABASE_URL", default=None,
                         help="Database URL (default: sqlite file crm.db in the workspace).")


def friendly_errors(fn: F) -> F:
    """Print engine errors and operational problems as located messages and exit EXIT_ERROR; engine
    bugs exit EXIT_BUG."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EngineError as e:
            click.echo(error_text(e), err=True)
            sys.exit(EXIT_ERROR)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:  # the reader went away (``crm ... | head``): stop quietly, as other tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as e:
            known = _known_problem(e)
            if known is not None:
                click.echo(error_text(known), err=True)
                sys.exit(EXIT_ERROR)
            # an engine bug: say so plainly, keep the details for a report
            if os.environ.get("CRM_DEBUG"):
                traceback.print_exc()
            click.echo(f"internal error: {type(e).__name__}: {e}\n  hint: this is a bug in the engine; "
                       "run again with CRM_DEBUG=1 and report the output", err=True)
            sys.exit(EXIT_BUG)

    return wrapper  # type: ignore[return-value]


def error_text(error: EngineError) -> str:
    """The error as the CLI prints it: located message, the per-field details, the hint."""
    text = str(error)
    details = error.details
    # per-field messages ({"roles": ["unknown role ..."]}); other details repeat what the text says
    if isinstance(details, dict) and details and all(isinstance(m, list) for m in details.values()):
        lines = [f"  {key}: {message}" for key, messages in details.items() for message in messages]
        head, sep, hint = text.partition("\n  hint: ")
        text = "\n".join([head, *lines]) + (sep + hint if sep else "")
    return text


def _known_problem(error: Exception) -> EngineError | None:
    """An operational problem (database unreachable or read-only, port taken) as an EngineError, or None."""
    from engine.runtime.db import describe_error

    ctx = click.get_current_context(silent=True)
    url = ctx.meta.get(URL_KEY) if ctx is not None else None
    return describe_error(error, url or "sqlite://")


def workspace_dir(path: str | None) -> Path:
    return Path(path or ".").resolve()


def db_url_for(folder: Path, db_url: str | None) -> str:
    from engine.runtime.db import default_url, normalize_url

    url = normalize_url(db_url) if db_url else default_url(folder)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[URL_KEY] = url
    return url


class CrmGroup(click.Group):
    """The ``crm`` group: a wrong command line exits with EXIT_USAGE (click's default 2 is 'changes pending')."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.UsageError as e:
            e.show()
            sys.exit(EXIT_USAGE)
        except click.exceptions.ClickException as e:
            e.show()
            sys.exit(EXIT_ERROR)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(EXIT_ERROR)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)


@click.group(cls=CrmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crm-engine")
def main() -> None:
    """A metadata-driven CRM engine: declare the CRM in YAML, run it over SQL."""
