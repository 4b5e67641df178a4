"""The approval tables: a version-1 database gains them in the upgrade (its rows kept: see
test_engine_upgrade), and one user's inbox is read from the inbox index, in id order, without a sort
(EXPLAIN on SQLite and PostgreSQL, 20,000 open tasks of 200 users)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, text

from engine.runtime import engine_tables
from engine.runtime.approvals import views
from engine.runtime.db import make_engine
from engine.runtime.engine_tables import (
    crm_approval_instances,
    crm_approval_specs,
    crm_approval_tasks,
    crm_users,
)
from engine.runtime.runtime import Runtime
from tests.runtime.approvals_world import ApprovalWorld, build
from tests.runtime.test_engine_upgrade import build_v1_database

TASKS = 20_000
USERS = 200


def test_a_version_1_database_gets_the_approval_tables(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        build_v1_database(engine)
        Runtime.open(db_url).close()
        with engine.connect() as conn:
            assert engine_tables.stored_version(conn) == engine_tables.ENGINE_SCHEMA_VERSION >= 5
            names = set(inspect(conn).get_table_names())
            assert {"crm_approval_specs", "crm_approval_instances", "crm_approval_tasks", "crm_approval_decisions",
                    "crm_delegations"} <= names
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("crm_approval_tasks")}
            assert "ix_crm_approval_tasks_inbox" in indexes
    finally:
        engine.dispose()


@pytest.fixture(name="full")
def full_fixture(db_url: str, tmp_path: Path) -> Iterator[ApprovalWorld]:
    aw = build(db_url, tmp_path / "ws")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with aw.rt.engine.begin() as conn:
        conn.execute(insert(crm_users), [{"username": f"u{i}", "display_name": "", "roles": [], "active": True,
                                          "created_at": now} for i in range(USERS)])
        first = conn.execute(text("SELECT min(id) FROM crm_users WHERE username LIKE 'u%'")).scalar_one()
        conn.execute(insert(crm_approval_specs).values(digest="d", flow="f", process="p", spec={}, created_at=now))
        conn.execute(insert(crm_approval_instances), [
            {"flow": "f", "spec_digest": "d", "entity": "quote", "record_id": i, "status": "pending", "state": {},
             "version": 1, "created_at": now, "updated_at": now} for i in range(TASKS // 10)])
        low = conn.execute(text("SELECT min(id) FROM crm_approval_instances")).scalar_one()
        conn.execute(insert(crm_approval_tasks), [
            {"instance_id": low + i // 10, "step": "s", "wf_task": f"t{i}/1", "assignee_id": first + i % USERS,
             "status": "ready" if i % 3 else "approved", "seq": 0, "reminders": 0, "escalated": False,
             "created_at": now} for i in range(TASKS)])
        conn.execute(text("ANALYZE"))
    aw.ids["u7"] = first + 7
    try:
        yield aw
    finally:
        aw.rt.close()


def test_the_inbox_reads_one_users_open_tasks_from_its_index(full: ApprovalWorld) -> None:
    with full.unit("admin", readonly=True) as uow:
        page = views.inbox(uow, user_id=full.ids["u7"], limit=20)
        # the first page of one user without delegations is the driver-level statement
        statement, params = views._INBOX_ONE.sql(uow.conn, {"b_owner": full.ids["u7"], "b_status": "ready",
                                                            "b_limit": 21})
    assert len(page["items"]) == 20 and page["next"] is not None
    ids = [t["id"] for t in page["items"]]
    assert ids == sorted(ids, reverse=True)
    sqlite = full.rt.engine.dialect.name == "sqlite"
    with full.rt.engine.connect() as conn:
        rows = conn.exec_driver_sql(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement, params).all()
    plan = "\n".join(str(r[-1]) for r in rows)
    assert "ix_crm_approval_tasks_inbox" in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan and "Seq Scan on crm_approval_tasks" not in plan, plan
