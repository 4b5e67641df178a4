"""``crm demo``'s data can run its shipped approvals to the end, and a step left without approvers after the
start goes to the admins instead of blocking the approver before it (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, update

from engine.demo_data import APPROVERS, populate
from engine.errors import NoAssignee
from engine.runtime import users
from engine.runtime.approvals import service, store, views
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_approval_decisions, crm_users
from engine.runtime.runtime import Runtime
from engine.runtime.schema.operations import apply_workspace, compile_workspace


@pytest.fixture(scope="module")
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    from engine.dsl.scaffold import init_workspace
    from tests.conftest import fresh_database

    backend = getattr(request, "param", "sqlite")
    folder = tmp_path_factory.mktemp("demo")
    with fresh_database(request, backend, folder, "demo") as url:
        init_workspace(folder / "ws", industry="manufacturing", name="demo", locale="zh", currency="CNY",
                       phone_region="CN")
        apply_workspace(compile_workspace(folder / "ws"), url, yes=True, allow_destructive=False, purge=False,
                        message="demo", author="demo", echo=lambda _s: None, confirm=lambda _q: True,
                        export_dir=folder / "exports")
        rt = Runtime.open(url)
        try:
            populate(rt)
            yield rt
        finally:
            rt.close()


pytestmark = pytest.mark.parametrize("demo", ["sqlite", "postgresql"], indirect=True)


def _actor(rt: Runtime, name: str) -> Actor:
    with rt.engine.connect() as conn:
        return users.actor_for(conn, rt.state.workspace, name)


def _quote_of(rt: Runtime, owner: str) -> dict[str, Any]:
    with rt.unit(_actor(rt, owner)) as uow:
        return uow.records.list("quote", limit=1).items[0]


def _approve_as(rt: Runtime, name: str, quote_id: int) -> None:
    who = _actor(rt, name)
    with rt.unit(who) as uow:
        [task] = [t for t in views.inbox(uow, user_id=who.user_id)["items"] if t["record_id"] == quote_id]
        service.complete(uow, task["id"], "approve")


def test_the_demo_has_a_user_for_every_approver_role(demo: Runtime) -> None:
    with demo.engine.connect() as conn:
        roles = {r.username: list(r.roles) for r in conn.execute(select(crm_users.c.username, crm_users.c.roles))}
        manager = users.directory_entry(conn, users.user_id(conn, "wang.manager"))
        director_id = users.user_id(conn, "zhao.director")
    assert {(name, role) for name, role, _ in APPROVERS} <= {(k, r) for k, v in roles.items() for r in v}
    assert manager is not None and manager["manager"] == director_id
    with demo.engine.connect() as conn:
        before = conn.execute(select(crm_users.c.username).order_by(crm_users.c.id)).scalars().all()
    populate(demo)  # again: no user added, none refused
    with demo.engine.connect() as conn:
        assert conn.execute(select(crm_users.c.username).order_by(crm_users.c.id)).scalars().all() == before


def test_a_40_percent_demo_quote_is_approved_by_the_manager_then_the_director(demo: Runtime) -> None:
    quote = _quote_of(demo, "li.sales")
    with demo.unit(_actor(demo, "li.sales")) as uow:
        written = uow.records.update("quote", quote["id"], {"discount_rate": 0.4}, expected_version=None)
    assert written["approval_status"] == "pending"
    _approve_as(demo, "wang.manager", quote["id"])
    _approve_as(demo, "zhao.director", quote["id"])
    with demo.unit(_actor(demo, "li.sales")) as uow:
        assert uow.records.get("quote", quote["id"])["approval_status"] == "approved"


def test_a_step_left_without_approvers_after_the_start_goes_to_the_admins(demo: Runtime) -> None:
    quote = _quote_of(demo, "zhang.sales")
    with demo.unit(_actor(demo, "zhang.sales")) as uow:
        uow.records.update("quote", quote["id"], {"discount_rate": 0.41}, expected_version=None)
    with demo.engine.begin() as conn:  # the director leaves while the manager's step waits
        conn.execute(update(crm_users).where(crm_users.c.username == "zhao.director").values(active=False))
    try:
        _approve_as(demo, "wang.manager", quote["id"])  # not blocked
        with demo.engine.connect() as conn:
            [inst] = store.pending_for(conn, "quote", quote["id"])
            notes = conn.execute(select(crm_approval_decisions.c.data).where(
                crm_approval_decisions.c.instance_id == inst.id,
                crm_approval_decisions.c.decision == "no_assignee")).scalars().all()
            admin_id = users.user_id(conn, "admin")
        assert [n["to"] for n in notes] == [[admin_id]]
        _approve_as(demo, "admin", quote["id"])
        with demo.unit(_actor(demo, "zhang.sales")) as uow:
            assert uow.records.get("quote", quote["id"])["approval_status"] == "approved"
    finally:
        with demo.engine.begin() as conn:
            conn.execute(update(crm_users).where(crm_users.c.username == "zhao.director").values(active=True))


def test_the_start_is_still_refused_when_its_first_step_has_no_approver(demo: Runtime) -> None:
    with demo.unit(Actor.system()) as uow:
        users.create_user(uow, "solo.rep", roles=["sales"])  # no manager, no team
    with demo.unit(_actor(demo, "solo.rep")) as uow:
        account = uow.records.create("account", {"name": "Solo Ltd"})["id"]
        quote = uow.records.create("quote", {"account": account, "discount_rate": 0.1})["id"]
    with demo.unit(_actor(demo, "solo.rep")) as uow, pytest.raises(NoAssignee):
        uow.records.update("quote", quote, {"discount_rate": 0.3}, expected_version=None)
