"""Wide entities (1,000 fields), JSON expression indexes, storage moves, SQL-keyword entity names."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select, text

from engine.runtime.schema.apply import apply
from engine.runtime.storage import build_schema
from tests.conftest import ent, fld, insert_rows, read_rows, wsp

TYPES = ["string", "integer", "decimal", "boolean", "date", "datetime", "picklist", "text"]


def _wide_fields(n: int = 1000, columns: int = 100) -> list:
    out = []
    for i in range(n):
        t = TYPES[i % len(TYPES)]
        kw: dict[str, Any] = {"options": ["a", "b"]} if t == "picklist" else {}
        out.append(fld(f"f{i:04d}", t, storage="column" if i < columns else "json", **kw))
    return out


def _value(t: str, i: int) -> Any:
    return {
        "string": f"value {i}", "integer": i * 1000, "decimal": Decimal(f"{i}.25"), "boolean": i % 2 == 0,
        "date": dt.date(2026, 1, 1) + dt.timedelta(days=i),
        "datetime": dt.datetime(2026, 1, 1, 8, 30, tzinfo=dt.UTC) + dt.timedelta(hours=i),
        "picklist": "b", "text": f"long text {i} " * 3,
    }[t]


def test_thousand_fields_round_trip(db_engine: Engine) -> None:
    fields = _wide_fields()
    ws = wsp(ent("wide", *fields))
    result = apply(db_engine, ws, author="t", message="wide")
    assert result.applied
    record = {f.name: _value(f.type, i) for i, f in enumerate(fields)}
    insert_rows(db_engine, ws, "wide", [record, {}])
    rows = read_rows(db_engine, ws, "wide")
    assert rows[1] == record
    assert set(rows[2].values()) == {None}


def _explain(engine: Engine, stmt: Any) -> str:
    """The query plan of ``stmt`` run with bound parameters, as the application runs it."""
    compiled = stmt.compile(engine)
    params = compiled.params
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            positional = tuple(params[k] for k in compiled.positiontup or ())
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), positional)
            return "\n".join(str(r) for r in rows)
        conn.execute(text("SET enable_seqscan = off"))
        rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), params)
        return "\n".join(r[0] for r in rows)


def test_json_field_filter_and_sort_use_the_index(db_engine: Engine) -> None:
    ws = wsp(ent("lead", fld("city", storage="json", index=True), fld("size", "integer", storage="json",
                                                                      index=True)))
    apply(db_engine, ws, author="t", message="v1")
    insert_rows(db_engine, ws, "lead", [{"city": f"city{i % 50}", "size": i} for i in range(2000)])
    with db_engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    schema = build_schema(ws, db_engine.dialect.name)
    table, city, size = schema.tables["lead"], schema.field_expr("lead", "city"), schema.field_expr("lead", "size")
    filtered = select(table.c.id).where(city == "city7").order_by(table.c.created_at)
    assert "ix_lead_city" in _explain(db_engine, filtered)
    ranged = select(table.c.id).where(size > 1990)
    assert "ix_lead_size" in _explain(db_engine, ranged)
    sorted_ = select(table.c.id).order_by(city).limit(10)
    assert "ix_lead_city" in _explain(db_engine, sorted_)
    with db_engine.connect() as conn:
        assert conn.execute(select(table.c.id).where(city == "city7")).all().__len__() == 40


def test_move_filled_field_json_to_column_and_back(db_engine: Engine) -> None:
    def ws_for(storage: str):
        return wsp(ent("lead", fld("name"), fld("amount", "decimal", storage=storage, index=True),
                       fld("seen", "datetime", storage=storage), fld("tags", "multi_picklist",
                                                                       options=["a", "b"], storage=storage)))
    in_json = ws_for("json")
    apply(db_engine, in_json, author="t", message="json")
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    insert_rows(db_engine, in_json, "lead", [
        {"name": f"n{i}", "amount": Decimal(i) / 4, "seen": start + dt.timedelta(minutes=i),
         "tags": ["a", "b"] if i % 2 else None} for i in range(3000)])
    expected = read_rows(db_engine, in_json, "lead")
    as_column = ws_for("column")
    moved = apply(db_engine, as_column, author="t", message="to column")
    assert [c.kind for c in moved.plan.changes].count("move_storage") == 3
    assert read_rows(db_engine, as_column, "lead") == expected
    with db_engine.connect() as conn:
        exts = conn.execute(text("SELECT ext FROM lead WHERE ext IS NOT NULL")).all()
    assert all(not r[0] or r[0] in ("{}",) for r in exts)
    apply(db_engine, in_json, author="t", message="back to json")
    assert read_rows(db_engine, in_json, "lead") == expected


def test_entity_named_order(db_engine: Engine) -> None:
    v1 = wsp(ent("order", fld("select", index=True), fld("group", "integer", storage="json", index=True)))
    apply(db_engine, v1, author="t", message="v1")
    insert_rows(db_engine, v1, "order", [{"select": f"s{i}", "group": i} for i in range(100)])
    v2 = wsp(ent("order", fld("where", renamed_from="select", index=True),
                 fld("group", "integer", storage="column", index=True), fld("from", "date")))
    apply(db_engine, v2, author="t", message="v2")
    rows = read_rows(db_engine, v2, "order")
    assert rows[5] == {"where": "s4", "group": 4, "from": None}
