"""``crm`` commands that run the CRM: serve, demo, user, token, expr, handover.

Registered on the ``crm`` group when :mod:`engine.cli` is imported.
Each command opens a :class:`engine.runtime.runtime.Runtime` on the
workspace's database (``--db`` / ``CRM_DATABASE_URL``, else the SQLite file in
the workspace) and works through the runtime services, never raw SQL.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import re
import shlex
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.cli.base import db_option, db_url_for, friendly_errors, main, workspace_dir
from engine.errors import BadRequest, NotFound
from engine.wording import counted

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
SERVER_THREADS = 8
#: Seconds of database work one request may take by default, and requests one user may run at once.
DEFAULT_TIMEOUT = 10.0
DEFAULT_PER_USER = 4
T = TypeVar("T")
TOKEN_LABEL = "admin API token (shown once; keep it secret):"


@contextmanager
def open_runtime(directory: str | None, db_url: str | None) -> Iterator[Any]:
    """The runtime of the workspace's database (closed on exit)."""
    from engine.runtime.runtime import Runtime

    folder = workspace_dir(directory)
    runtime = Runtime.open(db_url_for(folder, db_url))
    try:
        yield runtime
    finally:
        runtime.close()


def admin_mounts() -> list[Any]:
    """The admin UI's mount point: ``admin.mount(app, runtime)`` adds ``/admin`` to the API's app.

    Until the ``admin`` package provides ``mount``, the API is served alone.
    """
    if importlib.util.find_spec("admin") is None:
        return []
    module = importlib.import_module("admin")
    mount = getattr(module, "mount", None)
    return [mount] if callable(mount) else []


def serve_url(url: str, host: str, port: int, *, workers: int = 1, public_url: str | None = None,
              timeout: float | None = DEFAULT_TIMEOUT, per_user: int | None = DEFAULT_PER_USER) -> None:
    """Serve the API (and the admin UI when installed) of the database at ``url`` until interrupted.

    ``workers`` processes share one listening socket (1: this process);
    ``timeout``: seconds one request's database work may take (None or 0: no limit);
    ``per_user``: requests one user may have running at once, per process (0: no limit).
    """
    from engine.api import create_app
    from engine.cli.prefork import check_port, listening_socket, serve_forked
    from engine.runtime.runtime import Runtime

    def make_app() -> Any:
        runtime = Runtime.open(url, statement_timeout=timeout or None)
        return create_app(runtime, mounts=admin_mounts(), public_url=public_url,
                          max_requests_per_user=per_user or None)

    Runtime.open(url).close()  # a database that is not ready fails here, before any process starts
    if workers <= 1:
        import waitress

        sock = bind(host, port, lambda: listening_socket(host, port))
        app = make_app()
        _say_serving(host, port, workers)
        waitress.serve(app, sockets=[sock], threads=SERVER_THREADS, ident="crm", _quiet=True)
    else:
        bind(host, port, lambda: check_port(host, port))
        _say_serving(host, port, workers)
        serve_forked(make_app, host, port, workers, SERVER_THREADS)


def _say_serving(host: str, port: int, workers: int) -> None:
    click.echo(f"serving the CRM API on http://{host}:{port}/api/v1 (OpenAPI: /api/v1/openapi.json) with "
               f"{workers} process(es) of {SERVER_THREADS} threads; Ctrl+C stops")


def bind(host: str, port: int, open_socket: Callable[[], T]) -> T:
    """``open_socket()``, with a clear PortInUse when the address is taken or not allowed."""
    import errno

    from engine.errors import PortInUse

    try:
        return open_socket()
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(f"cannot listen on {host}:{port}: the port is already in use",
                            hint=f"stop the other server on port {port} (e.g. an earlier 'crm serve'), "
                                 "or choose another with --port") from e
        if e.errno in (errno.EACCES, errno.EPERM):
            raise PortInUse(f"cannot listen on {host}:{port}: not allowed ({e.strerror})",
                            hint="ports below 1024 need privileges; use --port 8000 or another free port") from e
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(e, socket.gaierror):
            raise PortInUse(f"cannot listen on {host}:{port}: this machine has no such address ({e.strerror})",
                            hint="use --host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from e
        raise


def server_options(fn: Any) -> Any:
    """``--workers``, ``--public-url``, ``--timeout`` and ``--max-per-user`` of the commands that serve."""
    fn = click.option("--workers", default=os.cpu_count() or 1, show_default="the number of cores", type=int,
                      help="Server processes sharing the port (each with 8 threads).")(fn)
    fn = click.option("--max-per-user", "per_user", default=DEFAULT_PER_USER, show_default=True, type=int,
                      help="Requests one user may have running at once; more get 429 (0: no limit).")(fn)
    fn = click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=float,
                      help="Seconds one request's database work may take; longer ones get 503 (0: no limit).")(fn)
    return click.option("--public-url", default=None, envvar="CRM_PUBLIC_URL", metavar="URL",
                        help="Where clients reach the server (e.g. https://crm.example.com): Location headers "
                             "are built on it, else relative. Env: CRM_PUBLIC_URL.")(fn)


@main.command()
@click.argument("directory", required=False)
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port to listen on.")
@server_options
@db_option
@friendly_errors
def serve(directory: str | None, host: str, port: int, workers: int, public_url: str | None, timeout: float,
          per_user: int, db_url: str | None) -> None:
    """Run the REST API (waitress: --workers processes of 8 threads) over the workspace's database."""
    url = db_url_for(workspace_dir(directory), db_url)
    serve_url(url, host, port, workers=workers, public_url=public_url, timeout=timeout, per_user=per_user)


@main.command()
@click.argument("directory", required=False, default="demo-crm")
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--seed", default=2026, show_default=True, type=int, help="Seed of the demo data.")
@click.option("--no-serve", is_flag=True, help="Build the demo and print the token, but do not serve.")
@server_options
@db_option
@friendly_errors
def demo(directory: str, host: str, port: int, seed: int, no_serve: bool, workers: int, public_url: str | None,
         timeout: float, per_user: int, db_url: str | None) -> None:
    """Build the manufacturing demo CRM (users, teams, records), print an admin token, serve it."""
    from engine.cli.text import plan_report, workspace_summary
    from engine.demo_data import ADMIN, populate
    from engine.dsl.scaffold import init_workspace
    from engine.runtime.context import Actor
    from engine.runtime.people import admin
    from engine.runtime.schema.operations import apply_workspace, compile_workspace

    folder = Path(directory).resolve()
    url = db_url_for(folder, db_url)
    if not (folder / "workspace.yaml").exists():
        init_workspace(folder, industry="manufacturing", name="demo", locale="zh", currency="CNY",
                       phone_region="CN")
        click.echo(f"created demo workspace in {folder}")
    ws = compile_workspace(folder)
    apply_workspace(ws, url, yes=True, allow_destructive=False, purge=False, message="demo", author="demo",
                    echo=click.echo, confirm=lambda _q: True, export_dir=folder / "exports", describe=plan_report)
    click.echo(workspace_summary(ws))
    with open_runtime(str(folder), url) as runtime:
        result = populate(runtime, seed=seed)
        if result.reused:
            click.echo("demo data already there: reusing it")
        else:
            click.echo("demo data: " + ", ".join(f"{n} {e}" for e, n in sorted(result.created.items())))
        with runtime.unit(Actor.system()) as uow:
            token, replaced = admin.rotate_token(uow, ADMIN, "demo")
        if replaced:
            click.echo(f"revoked the earlier demo admin {'token' if replaced == 1 else 'tokens'} "
                       "(one is valid at a time)")
        click.echo(TOKEN_LABEL)
        click.echo(token)
    if not no_serve:
        serve_url(url, host, port, workers=workers, public_url=public_url, timeout=timeout, per_user=per_user)


@main.group()
def user() -> None:
    """Manage users."""


@user.command("add")
@click.argument("name")
@click.option("--role", "roles", required=True, multiple=True, help="Role name (repeat for several).")
@click.option("--team", default=None, help="Team name (created when new).")
@click.option("--manager", default=None, help="Username of the user's manager.")
@click.option("--password", is_flag=True, help="Ask for a password (for the admin UI).")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def user_add(name: str, roles: tuple[str, ...], team: str | None, manager: str | None, password: bool,
             directory: str | None, db_url: str | None) -> None:
    """Add user NAME with role(s) R, optionally in team T under manager M."""
    from engine.runtime.context import Actor
    from engine.runtime.people import admin

    secret = click.prompt("password", hide_input=True, confirmation_prompt=True) if password else None
    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        if team is not None and not _team_exists(uow, team):
            admin.create_team(uow, team)
            click.echo(f"created team {team!r}")
        created = admin.create_user(uow, name, roles=list(roles), team=team, manager=manager,
                                    password=secret)["id"]
    click.echo(f"created user {name!r} (id {created}) with {'role' if len(roles) == 1 else 'roles'} "
               f"{', '.join(roles)}")


@user.command("list")
@click.option("--active", "active_only", is_flag=True, help="Only active users.")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def user_list(active_only: bool, directory: str | None, db_url: str | None) -> None:
    """List the users: name, roles, team, manager, active."""
    from engine.runtime import users

    with open_runtime(directory, db_url) as runtime, runtime.engine.connect() as conn:
        rows = users.list_users(conn, include_inactive=not active_only)
    if not rows:
        click.echo("no users yet: add one with 'crm user add NAME --role ROLE'")
        return
    click.echo(f"{'id':>5}  {'username':<20} {'roles':<24} {'team':<16} {'manager':<16} active")
    for r in rows:
        click.echo(f"{r.id:>5}  {r.username:<20} {','.join(r.roles):<24} {r.team or '-':<16} "
                   f"{r.manager or '-':<16} {'yes' if r.active else 'no'}")


def _team_exists(uow: Any, team: str) -> bool:
    from engine.errors import NotFound
    from engine.runtime import users

    try:
        users.team_id(uow.conn, team)
    except NotFound:
        return False
    return True


@main.group()
def token() -> None:
    """Manage API tokens."""


_DURATION = re.compile(r"(\d{1,6})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> dt.timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` as a timedelta (click.BadParameter otherwise)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration; write a number and a unit: 30m, 12h, 90d, 2w")
    if int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r} is zero; the duration must be more than zero: 30m, 12h, 90d, 2w")
    return dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@token.command("create")
@click.argument("name")
@click.option("--label", default="cli", show_default=True, help="A name for the token.")
@click.option("--expires", default=None, metavar="DURATION",
              help="The token stops working after this long: 30m, 12h, 90d, 2w (default: never).")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def token_create(name: str, label: str, expires: str | None, directory: str | None, db_url: str | None) -> None:
    """Create an API token for user NAME; the token is printed alone on the last line."""
    from engine.runtime.context import Actor
    from engine.runtime.people import admin

    lifetime = parse_duration(expires) if expires is not None else None
    try:
        with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
            until = runtime.clock.now() + lifetime if lifetime is not None else None
            plaintext, _row = admin.create_token(uow, name, label, expires_at=until)
    except BadRequest as e:
        if e.code == "inactive_user":  # the command to copy names the workspace, as the other hints do
            folder = shlex.quote(str(directory) if directory else str(workspace_dir(None)))
            e.hint = f"reactivate them first (crm user reactivate {shlex.quote(name)} {folder}), then create the token"
        raise
    when = f", valid until {until:%Y-%m-%d %H:%M} UTC" if until is not None else ""
    click.echo(f"API token {label!r} for {name!r}{when} (shown once; store it now):")
    click.echo(plaintext)


@token.command("revoke")
@click.argument("prefix")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def token_revoke(prefix: str, directory: str | None, db_url: str | None) -> None:
    """Revoke the tokens starting with PREFIX (8+ characters; 'crm token list' shows them); effective at once."""
    from engine.runtime.context import Actor
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        count = admin.revoke(uow, prefix)
    if not count:
        raise NotFound(f"no active token {'is' if len(prefix) > 12 else 'starts with'} {prefix[:60]!r}",
                       code="unknown_token", hint="'crm token list' shows the active tokens' prefixes")
    them = "it" if count == 1 else "them"
    click.echo(f"revoked {counted(count, 'token')}; running servers refuse {them} from their next request")


@main.command()
@click.argument("entity")
@click.argument("expression")
@click.option("--sql", "show_sql", is_flag=True, help="Also print the SQL it becomes (dialect of --db; SQLite "
                                                       "by default).")
@click.option("--record", "record_id", type=int, default=None,
              help="Evaluate on this record (needs the applied database; read as the system).")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def expr(entity: str, expression: str, show_sql: bool, record_id: int | None, directory: str | None,
         db_url: str | None) -> None:
    """Type-check EXPRESSION over ENTITY; print its type, its SQL and its value on a record.

    The type and the SQL come from the workspace folder alone (no database
    needed); --record reads the record from the database, with the
    configuration the database runs.
    """
    from sqlalchemy.engine import make_url

    from engine.runtime.db import normalize_url, sql_dialect
    from engine.runtime.schema.operations import compile_workspace
    from engine.runtime.storage import build_schema

    folder = workspace_dir(directory)
    if record_id is not None:
        with open_runtime(directory, db_url) as runtime:
            ws, schema = runtime.state.workspace, runtime.state.schema
            lines = explain_expression(ws, schema, runtime.engine.dialect, entity, expression, show_sql=show_sql)
            compiled = _compiled(ws, entity, expression)
            lines.append(f"value: {expression_value(runtime, entity, compiled, record_id)!r}")
    else:
        url = db_url_for(folder, db_url)
        dialect = sql_dialect(make_url(normalize_url(url)).get_backend_name())
        ws = compile_workspace(folder)
        lines = explain_expression(ws, build_schema(ws, dialect.name), dialect, entity, expression,
                                   show_sql=show_sql)
    for line in lines:
        click.echo(line)


def _compiled(ws: Any, entity: str, expression: str) -> Any:
    from engine.dsl.expressions import compile_expression

    if entity not in ws.entities:
        raise click.BadParameter(f"no entity {entity!r}; entities: {', '.join(sorted(ws.entities))}")
    return compile_expression(expression, ws.entities[entity], ws)


def explain_expression(ws: Any, schema: Any, dialect: Any, entity: str, expression: str, *,
                       show_sql: bool) -> list[str]:
    """Lines describing EXPRESSION over ENTITY: its type, optionally its SQL for ``dialect``."""
    compiled = _compiled(ws, entity, expression)
    lines = [f"type: {compiled.type}"]
    if show_sql:
        lines.append("sql: " + expression_sql(schema, dialect, entity, compiled))
    return lines


def expression_sql(schema: Any, dialect: Any, entity: str, compiled: Any) -> str:
    """The SQL of a compiled expression for ``dialect``, literals inlined."""
    import datetime as dt

    from sqlalchemy import select

    from engine.runtime.sqlexpr import to_sql

    now = dt.datetime.now(dt.UTC)
    clause = to_sql(compiled, schema, entity, user_id=None, today=now.date(), now=now)
    table = schema.table(entity)
    # shown inside the query it runs in, so reference hops print as correlated subqueries
    stmt = (select(table.c.id).where(clause) if compiled.type == "boolean"
            else select(table.c.id, clause.label("value")))
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def expression_value(runtime: Any, entity: str, compiled: Any, record_id: int) -> Any:
    """The value of a compiled expression on one record, read through the record service as the system."""
    from engine.dsl.expressions import EvalContext
    from engine.errors import NotFound
    from engine.runtime import exchange_rates, users
    from engine.runtime.context import Actor

    with runtime.unit(Actor.system(), readonly=True) as uow:
        record = uow.records.get(entity, record_id)

        def ref(target: str, target_id: int) -> Any:
            try:
                return uow.records.get(target, target_id)
            except NotFound:
                return None

        now = runtime.clock.now()
        ctx = EvalContext(user_id=None, now=now, today=now.date(), ref=ref,
                          users=lambda uid: users.directory_entry(uow.conn, uid),
                          rates=exchange_rates.resolver(uow.conn))
        return compiled.evaluate(record, ctx)


@main.command()
@click.argument("from_user")
@click.argument("to_user")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def handover(from_user: str, to_user: str, directory: str | None, db_url: str | None) -> None:
    """Reassign every record FROM_USER owns to TO_USER (history kept)."""
    from engine.runtime import users
    from engine.runtime.context import Actor

    with open_runtime(directory, db_url) as runtime, runtime.unit(Actor.system()) as uow:
        moved = users.handover(uow, from_user, to_user)
    click.echo(f"handed over {_count_text(moved)} from {from_user!r} to {to_user!r}")


def _count_text(moved: Any) -> str:
    if isinstance(moved, dict):
        return ", ".join(f"{n} {e}" for e, n in moved.items() if n) or "no records"
    return counted(moved, "record")


@main.command()
@click.argument("directory", required=False)
@click.option("--once", is_flag=True, help="Run what is due now, then exit (for cron, tests and CI).")
@click.option("--interval", default=1.0, show_default=True, type=float, help="Seconds to wait when idle.")
@click.option("--batch", default=10, show_default=True, type=int, help="Jobs claimed at a time.")
@click.option("--name", default=None, help="This worker's name in the job leases (default: host:pid).")
@db_option
@friendly_errors
def worker(directory: str | None, once: bool, interval: float, batch: int, name: str | None,
           db_url: str | None) -> None:
    """Deliver durable events and run due jobs until SIGTERM or Ctrl+C (the job in progress finishes)."""
    import signal

    from engine.runtime.jobs.worker import Worker

    with open_runtime(directory, db_url) as runtime:
        w = Worker(runtime, name, batch=batch)
        if once:
            done = w.run_once()
            click.echo(f"dispatched {counted(done.dispatched, 'event')}; ran {counted(done.ran, 'job')}: "
                       f"{done.done} done, "
                       f"{done.retried} to retry, {done.dead} dead")
            for line in done.errors:
                click.echo(f"  {line}", err=True)
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_a: w.stop())
        click.echo(f"worker {w.name} running; SIGTERM or Ctrl+C stops it after the job in progress")
        w.run_forever(interval)
        click.echo("worker stopped")


@main.command()
@click.argument("directory", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also list finished jobs.")
@click.option("--retry", "retry_id", type=int, default=None, metavar="ID",
              help="Put job ID (dead or waiting) back in the queue now, with a fresh set of attempts.")
@db_option
@friendly_errors
def jobs(directory: str | None, show_all: bool, retry_id: int | None, db_url: str | None) -> None:
    """List pending, retrying, running and dead jobs, with the last error of each."""
    from engine.runtime.context import Actor
    from engine.runtime.jobs import queue

    with open_runtime(directory, db_url) as runtime:
        if retry_id is not None:
            with runtime.unit(Actor.system()) as uow:
                queue.retry(uow.conn, retry_id, now=uow.clock.now())
            click.echo(f"job {retry_id} is queued again")
            return
        statuses = queue.STATUSES if show_all else ("pending", "running", "dead")
        with runtime.unit(Actor.system(), readonly=True) as uow:
            listed = queue.list_jobs(uow.conn, statuses)
            counts = queue.counts(uow.conn)
    click.echo("  ".join(f"{s}: {counts.get(s, 0)}" for s in queue.STATUSES))
    for job in listed:
        error = f"  {job.last_error.splitlines()[-1][:100]}" if job.last_error else ""
        click.echo(f"{job.id:>7}  {job.state:<8}  {job.kind:<24} attempts {job.attempts}  "
                   f"due {job.run_at:%Y-%m-%d %H:%M}{error}")
