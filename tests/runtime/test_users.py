"""Users, teams, passwords, API tokens and owner handover."""

from __future__ import annotations

import pytest
from conftest import World

from engine.errors import AuthenticationRequired, PermissionDenied, ValidationFailed
from engine.runtime import users
from engine.runtime.engine_tables import crm_api_tokens, crm_users


def test_password_hash_and_verify() -> None:
    stored = users.hash_password("s3cret-pass")
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert users.verify_password("s3cret-pass", stored)
    assert not users.verify_password("wrong-pass", stored)
    assert not users.verify_password("x", "garbage") and not users.verify_password("x", None)
    assert users.hash_password("s3cret-pass") != stored  # salted
    with pytest.raises(ValidationFailed):
        users.hash_password("short")


def test_authenticate_password_and_actor_roles(world: World) -> None:
    with world.rt.engine.connect() as conn:
        admin = users.authenticate_password(conn, world.rt.state.workspace, "admin", "correct horse")
        assert admin.is_admin and admin.roles == ("admin",)
        with pytest.raises(AuthenticationRequired):
            users.authenticate_password(conn, world.rt.state.workspace, "admin", "nope")
        alice = users.actor_for(conn, world.rt.state.workspace, "alice")
    assert not alice.is_admin and alice.roles == ("sales",) and alice.team_id is not None


def test_tokens_hashed_and_authenticated(world: World) -> None:
    with world.unit("alice") as uow:
        token = users.create_token(uow, "alice", "laptop")
        with pytest.raises(PermissionDenied):
            users.create_token(uow, "bob", "sneaky")
    with world.rt.engine.connect() as conn:
        row = conn.execute(crm_api_tokens.select()).one()
    assert row.token_hash != token and token not in str(tuple(row)) and token.startswith(row.prefix)
    actor = users.authenticate_token(world.rt, token)
    assert actor.username == "alice" and actor.user_id == world.ids["alice"]
    for bad in ("", "crm_nope", token + "x", "Bearer " + token, None):
        with pytest.raises(AuthenticationRequired):
            users.authenticate_token(world.rt, bad)  # type: ignore[arg-type]
    with world.unit("alice") as uow:
        assert users.revoke_token(uow, token[:12]) == 1
    with pytest.raises(AuthenticationRequired):
        users.authenticate_token(world.rt, token)


def test_inactive_user_token_refused(world: World) -> None:
    with world.unit("admin") as uow:
        token = users.create_token(uow, "bob", "ci")
        users.deactivate_user(uow, "bob")
    with pytest.raises(AuthenticationRequired):
        users.authenticate_token(world.rt, token)


def test_only_admin_manages_users(world: World) -> None:
    with world.unit("alice") as uow, pytest.raises(PermissionDenied):
        users.create_user(uow, "eve", roles=["admin"])
    with world.unit("admin") as uow, pytest.raises(ValidationFailed) as ei:
        users.create_user(uow, "eve", roles=["wizard"])
    assert "roles" in ei.value.details
    with world.rt.engine.connect() as conn:
        assert conn.execute(crm_users.select().where(crm_users.c.username == "eve")).first() is None


def test_handover_moves_records_and_keeps_history(world: World) -> None:
    with world.unit("alice") as uow:
        ids = uow.records.create_many("deal", [{"name": f"a{i}"} for i in range(5)])
        uow.records.update("deal", ids[0], {"quantity": 4}, expected_version=1)
        acc = uow.records.create("account", {"name": "A"})
    with world.unit("admin") as uow:
        moved = users.handover(uow, "alice", "bob")
    assert moved == {"deal": 5, "account": 1}
    with world.unit("alice", readonly=True) as uow:
        assert uow.records.list("deal", count=True).total == 0
    with world.unit("bob", readonly=True) as uow:
        assert uow.records.list("deal", count=True).total == 5
        hist = uow.records.history("deal", ids[0])
        assert uow.records.get("account", acc["id"])["owner_id"] == world.ids["bob"]
    assert [(e.action, e.field) for e in hist] == [("create", None), ("update", "quantity"), ("handover", "owner_id")]
    assert hist[0].actor == "alice" and hist[-1].actor == "admin"
    assert (hist[-1].old, hist[-1].new) == (world.ids["alice"], world.ids["bob"])
    with world.unit("bob", readonly=True) as uow:
        assert uow.records.get("deal", ids[0])["version"] == 3
