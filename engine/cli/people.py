"""``crm user show|deactivate|reactivate|set-password|set-role``, ``crm team add|list|set-manager|set-parent|
add-member|remove-member`` and ``crm token list``: the people administration of docs/users-and-teams.md.

Added to the ``user`` and ``token`` groups of :mod:`engine.cli.running` (``user add``, ``user list``,
``token create``, ``token revoke`` live there).  Every command works through
:mod:`engine.runtime.people.admin` as the system actor: the changes are audited and take effect on the
next request of every running server.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

import click

from engine.cli.base import db_option, friendly_errors, main, workspace_dir
from engine.cli.running import open_runtime, token, user
from engine.errors import NotFound
from engine.wording import counted


def _system() -> Any:
    from engine.runtime.context import Actor

    return Actor.system()


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


@user.command("show")
@click.argument("name")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def user_show(name: str, directory: str | None, db_url: str | None) -> None:
    """Show user NAME: roles, teams, manager, active, tokens, lockout."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.engine.connect() as conn:
        info = admin.show_user(conn, name, runtime.clock.now())
    for key in ("id", "username", "display_name", "email", "roles", "team", "teams", "manager", "active",
                "has_password", "locked_until", "tokens", "created_at"):
        value = info[key]
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif key in ("locked_until", "created_at"):
            value = _when(value)
        click.echo(f"{key + ':':<14}{value if value is not None else '-'}")


@user.command("deactivate")
@click.argument("name")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def user_deactivate(name: str, directory: str | None, db_url: str | None) -> None:
    """Deactivate user NAME (no login, no token works from the next request); lists their open records."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        result = admin.deactivate(uow, name)
    click.echo(f"deactivated {name!r}: no login and no token of theirs works from the next request of every server")
    if result["revoked_tokens"]:
        click.echo(f"revoked their {counted(result['revoked_tokens'], 'token')} for good: once reactivated they "
                   f"need a new one (crm token create {shlex.quote(name)} {_workspace(directory)})")
    records = result["open_records"]
    if not records:
        click.echo("they own no open records")
        return
    click.echo("open records to hand over:")
    for entity, found in records.items():
        more = "" if found["count"] <= len(found["ids"]) else ", ..."
        click.echo(f"  {entity}: {found['count']} (ids {', '.join(map(str, found['ids']))}{more})")
    click.echo(f"hand them over with: crm handover {shlex.quote(name)} OTHER_USER {_workspace(directory)}")


def _workspace(directory: str | None) -> str:
    """The workspace directory as a command to copy names it."""
    return shlex.quote(directory) if directory else shlex.quote(str(workspace_dir(None)))


@user.command("reactivate")
@click.argument("name")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def user_reactivate(name: str, directory: str | None, db_url: str | None) -> None:
    """Let user NAME sign in again; their old tokens stay revoked (create a new one)."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        admin.reactivate(uow, name)
    click.echo(f"reactivated {name!r}; their old tokens stay revoked: create a new one with "
               f"crm token create {shlex.quote(name)} {_workspace(directory)}")


@user.command("set-password")
@click.argument("name")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input (scripts).")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def user_set_password(name: str, from_stdin: bool, directory: str | None, db_url: str | None) -> None:
    """Set the password of user NAME (asked twice; 8+ characters mixing two kinds); ends a lockout."""
    from engine.runtime.people import admin

    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    else:
        secret = click.prompt("new password", hide_input=True, confirmation_prompt=True)
    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        admin.set_password(uow, name, secret)
    click.echo(f"password of {name!r} set")


@user.command("set-role")
@click.argument("name")
@click.option("--role", "roles", required=True, multiple=True, help="Role name (repeat for several).")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def user_set_role(name: str, roles: tuple[str, ...], directory: str | None, db_url: str | None) -> None:
    """Give user NAME exactly the role(s) R (effective on their next request)."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        admin.update_user(uow, name, roles=list(roles))
    click.echo(f"{name!r} now has {'role' if len(roles) == 1 else 'roles'} {', '.join(roles)}")


def _none_or_name(name: str | None, directory: str | None, clear: bool, what: str) -> tuple[str | None, str | None]:
    """The (name, workspace directory) of ``set-manager`` / ``set-parent``: with ``--none`` there is no name, so
    the one argument after the team is the workspace directory, as for every other command."""
    if not clear:
        if not name:
            raise click.UsageError(f"name the {what}, or pass --none")
        return name, directory
    if name is not None and directory is not None:
        raise click.UsageError(f"--none leaves the team without a {what}: give no {what} name "
                               f"(got {name!r} and the directory {directory!r})")
    return None, directory if name is None else name


@main.group()
def team() -> None:
    """Manage teams: nesting, managers, members."""


@team.command("add")
@click.argument("name")
@click.option("--manager", default=None, help="Username of the team's manager.")
@click.option("--parent", default=None, help="The team this one is part of (a director's team).")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def team_add(name: str, manager: str | None, parent: str | None, directory: str | None, db_url: str | None) -> None:
    """Add team NAME, optionally managed by M and inside team P."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        tid = admin.create_team(uow, name, manager=manager, parent=parent)
    inside = f" inside {parent!r}" if parent else ""
    click.echo(f"created team {name!r} (id {tid}){inside}")


@team.command("list")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def team_list(directory: str | None, db_url: str | None) -> None:
    """List the teams: manager, parent team, sub-teams, members."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.engine.connect() as conn:
        rows = admin.list_teams(conn)
    if not rows:
        click.echo("no teams yet: add one with 'crm team add NAME'")
        return
    click.echo(f"{'id':>5}  {'team':<18} {'manager':<14} {'parent':<16} {'sub-teams':<22} members")
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['name']:<18} {r['manager'] or '-':<14} {r['parent'] or '-':<16} "
                   f"{','.join(r['teams']) or '-':<22} {','.join(r['members']) or '-'}")


@team.command("set-manager")
@click.argument("team_name")
@click.argument("manager", required=False)
@click.option("--none", "clear", is_flag=True, help="Leave the team without a manager.")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def team_set_manager(team_name: str, manager: str | None, clear: bool, directory: str | None,
                     db_url: str | None) -> None:
    """Make user MANAGER the manager of team TEAM_NAME (``--none``: nobody, and the argument after TEAM_NAME is
    the workspace directory: ``crm team set-manager east --none acme``)."""
    from engine.runtime.people import admin

    manager, directory = _none_or_name(manager, directory, clear, "manager")
    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        admin.set_manager(uow, team_name, manager)
    click.echo(f"team {team_name!r} is managed by {manager!r}" if not clear else f"team {team_name!r} has no manager")


@team.command("set-parent")
@click.argument("team_name")
@click.argument("parent", required=False)
@click.option("--none", "clear", is_flag=True, help="Put the team at the top (inside no other).")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def team_set_parent(team_name: str, parent: str | None, clear: bool, directory: str | None,
                    db_url: str | None) -> None:
    """Put team TEAM_NAME inside team PARENT (``--none``: at the top, and the argument after TEAM_NAME is the
    workspace directory: ``crm team set-parent east --none acme``)."""
    from engine.runtime.people import admin

    parent, directory = _none_or_name(parent, directory, clear, "parent team")
    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        admin.set_parent(uow, team_name, parent)
    click.echo(f"team {team_name!r} is inside {parent!r}" if not clear else f"team {team_name!r} is at the top")


@team.command("add-member")
@click.argument("team_name")
@click.argument("name")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def team_add_member(team_name: str, name: str, directory: str | None, db_url: str | None) -> None:
    """Make user NAME a member of team TEAM_NAME too (besides their main team)."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        added = admin.add_member(uow, team_name, name)
    click.echo(f"{name!r} is now a member of {team_name!r}" if added else f"{name!r} is already in {team_name!r}")


@team.command("remove-member")
@click.argument("team_name")
@click.argument("name")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def team_remove_member(team_name: str, name: str, directory: str | None, db_url: str | None) -> None:
    """End user NAME's extra membership of team TEAM_NAME (their main team is set with the API)."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.unit(_system()) as uow:
        gone = admin.remove_member(uow, team_name, name)
    if not gone:
        raise NotFound(f"{name!r} is not an extra member of {team_name!r}",
                       hint=f"'crm team list' shows the members of {team_name!r}")
    click.echo(f"{name!r} is no longer a member of {team_name!r}")


@token.command("list")
@click.option("--user", "username", default=None, help="Only this user's tokens.")
@click.option("--all", "show_all", is_flag=True, help="Revoked tokens too.")
@click.argument("directory", required=False)
@db_option
@friendly_errors
def token_list(username: str | None, show_all: bool, directory: str | None, db_url: str | None) -> None:
    """List the API tokens (prefix, name, user, created, last used, expires, revoked) -- never the token."""
    from engine.runtime.people import admin

    with open_runtime(directory, db_url) as runtime, runtime.engine.connect() as conn:
        rows = admin.list_tokens(conn, user=username, include_revoked=show_all)
    if not rows:
        click.echo("no tokens" + ("" if show_all else " (--all shows revoked ones)"))
        return
    click.echo(f"{'prefix':<13} {'name':<14} {'user':<14} {'created':<17} {'last used':<17} {'expires':<17} revoked")
    for r in rows:
        click.echo(f"{r['prefix']:<13} {r['name'][:14]:<14} {r['user'][:14]:<14} {_when(r['created_at']):<17} "
                   f"{_when(r['last_used_at']):<17} {_when(r['expires_at']):<17} {_when(r['revoked_at'])}")
    click.echo(counted(len(rows), "token"))
