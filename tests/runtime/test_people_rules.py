"""Password rules, the lockout after repeated failures, the transfer rule's resolution, team trees, token
rotation for ``crm demo`` (SQLite and PostgreSQL where a database is involved)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from engine.dsl.model import Role, Workspace, frozen_map
from engine.errors import AccountLocked, AuthenticationRequired, ValidationFailed
from engine.runtime import passwords, teams, users
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_api_tokens
from engine.runtime.people import admin, transfer
from tests.conftest import TEST_LOCATION
from tests.runtime.conftest import World


@pytest.mark.parametrize(("password", "problem"), [
    ("short1", "at least 8"), ("aaaaaaaaaa", "two kinds"), ("1234567890", "two kinds"),
    ("password1", "most common"), ("alice-2026", None), ("correct horse", None), ("x" * 201, "at most 200"),
])
def test_password_rules(password: str, problem: str | None) -> None:
    found = passwords.problems(password, "someone")
    assert (problem is None and not found) or any(problem in p for p in found), found
    assert passwords.problems("Someone 1", "someone 1") == ["must not be the username"]


def test_lockout_after_five_failures_then_it_expires(world: World) -> None:
    ws, now = world.rt.state.workspace, dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    with world.rt.engine.connect() as conn:
        for _ in range(passwords.MAX_FAILURES - 1):
            with pytest.raises(AuthenticationRequired) as e:
                users.authenticate_password(conn, ws, "admin", "wrong one 1", now=now)
            assert not isinstance(e.value, AccountLocked)
        with pytest.raises(AccountLocked, match="locked until 2026-12-01 09:15 UTC"):
            users.authenticate_password(conn, ws, "admin", "wrong one 1", now=now)
        with pytest.raises(AccountLocked):  # the right password is refused while locked
            users.authenticate_password(conn, ws, "admin", "correct horse", now=now + dt.timedelta(minutes=14))
        later = now + passwords.LOCK_FOR + dt.timedelta(seconds=1)
        assert users.authenticate_password(conn, ws, "admin", "correct horse", now=later).is_admin
        # the success cleared the count: four more failures do not lock
        for _ in range(passwords.MAX_FAILURES - 1):
            with pytest.raises(AuthenticationRequired) as e:
                users.authenticate_password(conn, ws, "admin", "wrong one 1", now=later)
            assert not isinstance(e.value, AccountLocked)


def test_an_admin_sets_a_password_and_ends_a_lockout(world: World) -> None:
    ws, now = world.rt.state.workspace, dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    with world.rt.engine.connect() as conn:
        for _ in range(passwords.MAX_FAILURES):
            with pytest.raises(AuthenticationRequired):
                users.authenticate_password(conn, ws, "admin", "wrong one 1", now=now)
    with world.unit("system") as uow:
        with pytest.raises(ValidationFailed, match="most common"):
            admin.set_password(uow, "admin", "password123")
        admin.set_password(uow, "admin", "a new one 2")
    with world.rt.engine.connect() as conn:
        assert users.authenticate_password(conn, ws, "admin", "a new one 2", now=now).is_admin


def _ws(**rules: str) -> Workspace:
    roles = {name: Role(name, TEST_LOCATION, transfer=rule) for name, rule in rules.items()}
    return Workspace(name="t", roles=frozen_map(roles))


def test_the_widest_transfer_rule_wins_and_admins_pass() -> None:
    ws = _ws(a="none", b="own_team", c="all")
    rep = Actor(user_id=1, username="r", roles=("a",))
    assert transfer.rule_of(ws, rep) == "none"
    assert transfer.rule_of(ws, Actor(user_id=1, username="r", roles=("a", "b"))) == "own_team"
    assert transfer.rule_of(ws, Actor(user_id=1, username="r", roles=("b", "c"))) == "all"
    assert transfer.rule_of(ws, Actor.system()) == "all"
    assert transfer.write_steps(_ws(c="all")) == []  # no rule, no step: bulk updates stay set-based
    assert len(transfer.write_steps(ws)) == 1


def test_team_tree_and_memberships(world: World) -> None:
    with world.unit("system") as uow:
        admin.create_team(uow, "dept", manager="admin")
        admin.set_parent(uow, "east", "dept")
        admin.set_parent(uow, "west", "east")
        with pytest.raises(ValidationFailed, match="loop"):
            admin.set_parent(uow, "dept", "west")
        assert admin.add_member(uow, "west", "alice") and not admin.add_member(uow, "west", "alice")
        assert not admin.add_member(uow, "east", "alice")  # her main team already
    with world.rt.engine.connect() as conn:
        nodes = teams.tree(conn)
        names = {n.name: n.id for n in nodes.values()}
        assert teams.teams_of(conn, world.ids["admin"], None) == {names["dept"], names["east"], names["west"]}
        assert teams.teams_of(conn, world.ids["dave"], names["west"]) == {names["west"]}
        assert world.ids["alice"] in teams.member_ids(conn, [names["west"]])
        assert [u for _, u in teams.direct_members(conn, "west")] == ["alice", "dave"]


def test_demo_token_rotation_keeps_one_valid(world: World) -> None:
    with world.unit("system") as uow:
        first, replaced = admin.rotate_token(uow, "admin", "demo")
        assert replaced == 0
        second, replaced = admin.rotate_token(uow, "admin", "demo")
        assert replaced == 1 and second != first
    with world.rt.engine.connect() as conn:
        live = conn.execute(select(crm_api_tokens.c.prefix).where(crm_api_tokens.c.revoked_at.is_(None))).scalars()
        assert list(live) == [second[:12]]
    with pytest.raises(AuthenticationRequired):
        users.authenticate_token(world.rt, first)
    assert users.authenticate_token(world.rt, second).username == "admin"
