"""Pool membership lists are index-served: the recycle run's statement and a pool's record list read the
``pool`` index, not the whole table (EXPLAIN, both databases, 20,000 leads of which few are pooled)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from engine.runtime.sales import pool_recycle, pool_rules, pools
from tests.runtime.conftest import World, build_world
from tests.runtime.pool_world import FILES

ROWS = 20_000


@pytest.fixture(name="world")
def big_world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build_world(db_url, tmp_path / "ws", FILES)
    table = w.rt.state.schema.table("lead")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    alice = w.ids["alice"]

    def row(i: int) -> dict[str, Any]:
        pooled = i % 500 == 0
        held = pooled and i % 1000 == 0
        return {"version": 1, "created_at": start, "updated_at": start, "company": f"c{i}", "status": "new",
                "pool": ("bulk_pool" if held else "east_pool") if pooled else None,
                "claimed_at": start if held else None, "owner_id": alice if held or not pooled else None}

    with w.rt.engine.begin() as conn:
        conn.execute(insert(table), [row(i) for i in range(ROWS)])
        conn.execute(text("ANALYZE"))
    try:
        yield w
    finally:
        w.rt.close()


def explained(world: World, user: str, run: Callable[[Any], Any]) -> str:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM lead" in statement:
            seen.append((statement, params))

    event.listen(world.rt.engine, "before_cursor_execute", capture)
    try:
        with world.unit(user, readonly=True) as uow:
            run(uow)
    finally:
        event.remove(world.rt.engine, "before_cursor_execute", capture)
    statement, params = seen[-1]
    prefix = "EXPLAIN QUERY PLAN " if world.rt.engine.dialect.name == "sqlite" else "EXPLAIN "
    with world.rt.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, params).all()
    return "\n".join(str(r[-1]) for r in rows)


def _uses_pool_index(plan: str) -> bool:
    return ("ix_lead_pool" in plan or "ix_lead_claimed_at" in plan) and "Seq Scan on lead" not in plan \
        and "SCAN lead\n" not in plan + "\n"


def test_the_recycle_statement_reads_the_pool_index(world: World) -> None:
    def run(uow: Any) -> None:
        pool = pool_rules.get_pool(uow, "bulk_pool")
        assert len(pool_recycle.candidates(uow, pool, world.clock.now(), limit=50)) == ROWS // 1000

    plan = explained(world, "system", run)
    assert _uses_pool_index(plan), plan


def test_a_pool_record_list_reads_the_pool_index(world: World) -> None:
    def run(uow: Any) -> None:
        assert len(pools.records(uow, "east_pool", limit=50).items) == ROWS // 1000

    plan = explained(world, "alice", run)
    assert _uses_pool_index(plan), plan
