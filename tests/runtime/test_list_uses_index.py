"""A filtered list in default order is read straight from an index: no sort step (EXPLAIN, both databases)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from engine.dsl.compiler import compile_folder
from engine.runtime.context import Actor
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply

ROWS = 20_000


@pytest.fixture
def runtime(tmp_path: Path, db_url: str) -> Any:
    (tmp_path / "workspace.yaml").write_text("workspace: t\n")
    (tmp_path / "lead.yaml").write_text(
        "entity: lead\nfields:\n  company: {type: string}\n"
        "  industry: {type: picklist, options: [a, b, c, d], index: true}\n"
        "  city: {type: string, storage: json, index: true}\n")
    engine = make_engine(db_url)
    ws = compile_folder(tmp_path)
    apply(engine, ws, author="t", message="m")
    rt = Runtime.open(db_url)
    table = rt.state.schema.table("lead")
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [{"version": 1, "created_at": start + dt.timedelta(seconds=i), "updated_at": start,
             "company": f"c{i}", "industry": "abcd"[i % 4], "ext": {"city": f"city{i % 50}"}}
            for i in range(ROWS)]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
        conn.execute(text("ANALYZE"))
    engine.dispose()
    yield rt
    rt.close()


def explain_list(rt: Runtime, flt: str) -> str:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM lead" in statement:
            seen.append((statement, params))

    event.listen(rt.engine, "before_cursor_execute", capture)
    try:
        with rt.unit(Actor.system(), readonly=True) as uow:
            page = uow.records.list("lead", filter=flt, limit=50)
    finally:
        event.remove(rt.engine, "before_cursor_execute", capture)
    assert len(page.items) == 50
    statement, params = seen[-1]
    prefix = "EXPLAIN QUERY PLAN " if rt.engine.dialect.name == "sqlite" else "EXPLAIN "
    with rt.engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, params).all()
    return "\n".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize(("flt", "index"), [("industry == 'b'", "ix_lead_industry"),
                                            ("city == 'city7'", "ix_lead_city")])
def test_filtered_default_order_list_reads_the_index_without_sorting(runtime: Runtime, flt: str, index: str):
    plan = explain_list(runtime, flt)
    assert index in plan, plan
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
