"""``crm`` commands of the configuration lifecycle: init, industries, validate, schema, plan, apply,
revisions, rollback, config pull, bench."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from engine.cli.base import db_option, db_url_for, friendly_errors, main, workspace_dir
from engine.wording import counted

# --------------------------------------------------------------------------- config language


@main.command()
@click.argument("directory")
@click.option("--industry", default=None, help="Industry template to start from (see 'crm industries').")
@click.option("--name", default=None, help="Workspace name (default: the folder name).")
@click.option("--locale", default="en", show_default=True)
@click.option("--currency", default="USD", show_default=True)
@click.option("--phone-region", default=None,
              help="Region of phone numbers written without +country code, e.g. CN (default: none; they need one).")
@friendly_errors
def init(directory: str, industry: str | None, name: str | None, locale: str, currency: str,
         phone_region: str | None) -> None:
    """Create a customer workspace in DIRECTORY."""
    from engine.dsl.scaffold import init_workspace

    folder = init_workspace(Path(directory), industry=industry, name=name, locale=locale, currency=currency,
                            phone_region=phone_region)
    click.echo(f"created workspace {folder.name!r} in {folder}")
    click.echo(f"next: crm validate {directory} && crm apply {directory}")


@main.command()
@friendly_errors
def industries() -> None:
    """List the shipped industry templates."""
    from engine.dsl.layers import list_industries
    from engine.dsl.yamlsrc import load_text

    for name, folder in list_industries():
        data = load_text((folder / "industry.yaml").read_text("utf-8"), name)[0].data
        label = data.get("label") or {}
        text = label.get("en", name) if isinstance(label, dict) else label
        click.echo(f"{name:20} {text}")


@main.command()
@click.argument("directory", required=False)
@db_option
@friendly_errors
def validate(directory: str | None, db_url: str | None) -> None:
    """Check the workspace: YAML, schemas, layering, types, expressions, SQL binding; and, when the
    database exists, that renames name fields it has and that it holds this workspace."""
    from engine.cli.base import EXIT_ERROR, error_text
    from engine.errors import EngineError
    from engine.runtime.binding import bind_check
    from engine.runtime.db import describe_error
    from engine.runtime.schema.operations import compile_workspace, database_problems

    folder = workspace_dir(directory)
    ws = compile_workspace(folder)
    bind_check(ws)
    url = db_url_for(folder, db_url)
    try:
        problems = database_problems(ws, url)
    except Exception as e:  # validate works offline: a database it cannot read only skips those checks
        known = describe_error(e, url) if not isinstance(e, EngineError) else e
        if known is None:
            raise
        click.echo(f"warning: the checks against the database were skipped: {known.message}", err=True)
        problems = []
    for problem in problems:
        click.echo(error_text(problem), err=True)
    if problems:
        sys.exit(EXIT_ERROR)
    for w in ws.warnings:
        click.echo(f"warning: {w}", err=True)
    fields = sum(len(e.fields) for e in ws.entities.values())
    click.echo(f"ok: workspace {ws.name!r} ({' <- '.join(ws.layers)}): {counted(len(ws.entities), 'entity')}, "
               f"{counted(fields, 'field')}, {counted(len(ws.roles), 'role')}")


@main.command()
@click.option("--out", "out_dir", default=None, help="Write the JSON Schemas into this folder.")
@friendly_errors
def schema(out_dir: str | None) -> None:
    """Export the JSON Schemas of the configuration language (for editor autocompletion)."""
    from engine.dsl.schemacheck import load_schema, schema_names

    if out_dir is None:
        click.echo(json.dumps({n: load_schema(n) for n in schema_names()}, indent=2, ensure_ascii=False))
        return
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for n in schema_names():
        (out / n).write_text(json.dumps(load_schema(n), indent=2, ensure_ascii=False) + "\n", "utf-8")
    click.echo(f"wrote {len(schema_names())} schemas to {out}")


@main.command()
@click.argument("directory", required=False)
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (for CI and tools).")
@click.option("-v", "--verbose", is_flag=True, help="List every change (a new table's indexes too).")
@click.option("--force", is_flag=True, help="Plan even when the database holds another workspace.")
@friendly_errors
def plan(directory: str | None, db_url: str | None, as_json: bool, verbose: bool, force: bool) -> None:
    """Show what 'apply' would change in the database (and drift from the folder).

    Exit status: 0 nothing to apply, 2 changes to apply, 1 errors or blocked changes.
    """
    from engine.cli.base import EXIT_CHANGES, EXIT_ERROR
    from engine.cli.text import plan_report
    from engine.runtime.schema.operations import plan_folder

    folder = workspace_dir(directory)
    report = plan_folder(folder, db_url_for(folder, db_url), force=force)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        click.echo(plan_report(report, verbose=verbose))
    if report.status == "blocked":
        sys.exit(EXIT_ERROR)
    if report.status == "changes":
        sys.exit(EXIT_CHANGES)


def default_author() -> str:
    """``$USER``, else the operating system's name for this user, else ``cli``."""
    import getpass

    try:
        return os.environ.get("USER") or getpass.getuser() or "cli"
    except (OSError, KeyError, ImportError):  # no login name and no passwd entry (some containers)
        return "cli"


@main.command()
@click.argument("directory", required=False)
@db_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-destructive", is_flag=True, help="Allow changes marked 'needs --allow-destructive'.")
@click.option("--purge", is_flag=True, help="Drop retired columns (after exporting their data to DIR/exports).")
@click.option("-m", "--message", default="", help="Revision message.")
@click.option("--author", default=None, help="Revision author (default: $USER, else the OS user name).")
@click.option("-v", "--verbose", is_flag=True, help="List every change (a new table's indexes too).")
@click.option("--force", is_flag=True, help="Apply even when the database holds another workspace.")
@friendly_errors
def apply(directory: str | None, db_url: str | None, yes: bool, allow_destructive: bool, purge: bool,
          message: str, author: str | None, verbose: bool, force: bool) -> None:
    """Apply the workspace to the database in one transaction and record a revision."""
    from engine.cli.text import plan_report
    from engine.runtime.schema.operations import apply_folder

    folder = workspace_dir(directory)
    apply_folder(folder, db_url_for(folder, db_url), yes=yes, allow_destructive=allow_destructive,
                 purge=purge, message=message, author=author or default_author(),
                 echo=click.echo, confirm=_confirm, force=force,
                 describe=lambda report: plan_report(report, verbose=verbose))


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return click.confirm(question, default=False)


@main.command()
@click.argument("directory", required=False)
@db_option
@friendly_errors
def revisions(directory: str | None, db_url: str | None) -> None:
    """List the applied revisions, newest first."""
    from engine.cli.text import revision_lines
    from engine.runtime.schema.operations import list_revisions

    folder = workspace_dir(directory)
    click.echo(revision_lines(list_revisions(db_url_for(folder, db_url))))


@main.command()
@click.argument("revision", type=int)
@click.argument("directory", required=False)
@db_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--allow-destructive", is_flag=True, help="Allow changes marked 'needs --allow-destructive'.")
@click.option("-m", "--message", default=None, help="Revision message (default: 'rollback to revision N').")
@click.option("--author", default=None, help="Revision author (default: $USER, else the OS user name).")
@click.option("-v", "--verbose", is_flag=True, help="List every change.")
@friendly_errors
def rollback(revision: int, directory: str | None, db_url: str | None, yes: bool, allow_destructive: bool,
             message: str | None, author: str | None, verbose: bool) -> None:
    """Go back to REVISION's configuration (through the same plan/apply)."""
    from engine.cli.text import plan_report
    from engine.runtime.schema.operations import rollback_to

    folder = workspace_dir(directory)
    rollback_to(db_url_for(folder, db_url), revision, yes=yes, allow_destructive=allow_destructive,
                author=author or default_author(), echo=click.echo, confirm=_confirm,
                export_dir=folder / "exports", message=message,
                describe=lambda report: plan_report(report, verbose=verbose))


@main.group()
def config() -> None:
    """Move configuration between the database and a folder."""


@config.command("pull")
@click.argument("directory")
@db_option
@click.option("--workspace", "source", default=None, help="Workspace folder whose database to read.")
@friendly_errors
def config_pull(directory: str, db_url: str | None, source: str | None) -> None:
    """Write the active revision's workspace files into DIRECTORY."""
    from engine.runtime.schema.operations import pull_config

    src = workspace_dir(source)
    written = pull_config(db_url_for(src, db_url), Path(directory))
    click.echo(f"wrote {counted(written, 'file')} to {directory}")


@main.command()
@click.option("--quick", is_flag=True, help="Smaller data sets (for a smoke run).")
@click.option("--only", default=None, help="Run only the benchmarks whose module name contains this.")
@click.option("--pg", "pg_url", envvar="CRM_BENCH_PG_URL", default=None,
              help="Also measure on this (scratch!) PostgreSQL database.")
@friendly_errors
def bench(quick: bool, only: str | None, pg_url: str | None) -> None:
    """Run the benchmarks in bench/ and print a table of ratios against baselines."""
    from engine.benchrunner import run_benchmarks

    if pg_url:
        os.environ["CRM_BENCH_PG_URL"] = pg_url
    click.echo(run_benchmarks(quick=quick, only=only))
