"""``rawsql.Query``: a prepared SELECT through the driver gives exactly what ``conn.execute`` gives."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import Boolean, Column, Engine, Integer, MetaData, String, Table, bindparam, insert, select

from engine.runtime import rawsql
from engine.runtime.types import DecimalType, JsonType, UtcDateTime

META = MetaData()
T = Table("q_things", META, Column("id", Integer, primary_key=True), Column("name", String(50)),
          Column("data", JsonType), Column("at", UtcDateTime), Column("amount", DecimalType(18, 4)),
          Column("active", Boolean), Column("n", Integer))
AT = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC)


@pytest.fixture
def filled(db_engine: Engine) -> Engine:
    META.create_all(db_engine)
    with db_engine.begin() as conn:
        conn.execute(insert(T), [
            {"name": "a", "data": {"k": [1, "二"]}, "at": AT, "amount": Decimal("12.3400"), "active": True, "n": 1},
            {"name": "b", "data": None, "at": None, "amount": None, "active": False, "n": 2},
            {"name": "c", "data": ["x"], "at": AT + dt.timedelta(days=1), "amount": Decimal("-1"), "active": True,
             "n": 3}])
    return db_engine


STATEMENTS = [
    (select(T).where(T.c.id == bindparam("b_id")), {"b_id": 1}),
    (select(T).where(T.c.id == bindparam("b_id")), {"b_id": 99}),
    (select(T.c.id, T.c.data).where(T.c.active.is_(True)).order_by(T.c.id), {}),
    (select(T).where(T.c.at >= bindparam("b_at"), T.c.name != "zz").order_by(T.c.id.desc()), {"b_at": AT}),
    (select(T.c.name.label("label"), T.c.amount).where(T.c.n <= 2).order_by(T.c.n), {}),
    (select(T).where(T.c.id == bindparam("b_id")).with_for_update(), {"b_id": 3}),
]


@pytest.mark.parametrize("index", range(len(STATEMENTS)))
def test_query_rows_equal_core_rows(filled: Engine, index: int) -> None:
    stmt, params = STATEMENTS[index]
    query = rawsql.Query(stmt)
    with filled.begin() as conn:
        core = [tuple(r) for r in conn.execute(stmt, params)]
        core_maps = [dict(r._mapping) for r in conn.execute(stmt, params)]
        for _ in range(2):  # the second run uses the compiled form and the processors of the first
            ours = query.all(conn, params)
            assert [tuple(r) for r in ours] == core
            assert [r._mapping for r in ours] == core_maps
            first = query.first(conn, params)
            assert (tuple(first) if first is not None else None) == (core[0] if core else None)


def test_query_rows_have_attributes(filled: Engine) -> None:
    with filled.connect() as conn:
        row = rawsql.Query(select(T).where(T.c.name == bindparam("b_name"))).first(conn, {"b_name": "a"})
    assert row is not None
    assert (row.id, row.name, row.data, row.at, row.amount) == (1, "a", {"k": [1, "二"]}, AT, Decimal("12.3400"))
    assert row.at.tzinfo is not None
    with filled.connect() as conn:  # a column named like a tuple method is still the column
        [got] = rawsql.Query(select(T.c.n.label("count"), T.c.name.label("index")).where(T.c.n == 3)).all(conn)
    assert (got.count, got.index, got._mapping) == (3, "c", {"count": 3, "index": "c"})


@pytest.mark.parametrize("where", [T.c.id.in_(bindparam("b_ids", expanding=True)), T.c.id.in_([1, 2])])
def test_query_refuses_in_lists(filled: Engine, where: object) -> None:
    query = rawsql.Query(select(T).where(where))  # type: ignore[arg-type]
    with filled.connect() as conn, pytest.raises(NotImplementedError, match="expanding"):
        query.all(conn, {"b_ids": [1]})


def test_query_raises_driver_errors_as_sqlalchemy_errors(filled: Engine) -> None:
    from sqlalchemy.exc import DBAPIError

    query = rawsql.Query(select(T).where(T.c.id == bindparam("b_id")))
    with filled.connect() as conn, pytest.raises(DBAPIError):
        query.first(conn, {"b_id": "x"} if conn.dialect.name == "postgresql" else {"b_id": []})
