"""SQL back end specifics: filters, plugin functions, old. refused, the PostgreSQL collation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st
from sqlalchemy import func, insert, literal, select
from sqlalchemy.dialects import postgresql

from engine.dsl.expressions import FunctionDef, compile_expression, default_registry
from engine.dsl.model import Entity, Field, Option, Workspace, frozen_map
from engine.errors import ExpressionError, SourceLocation
from engine.runtime.db import ensure_pg_functions, make_engine
from engine.runtime.sqlexpr import to_sql
from engine.runtime.storage import build_schema

LOC = SourceLocation("t.yaml", 1, 1)
NOW = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
LEAD = Entity("lead", LOC, fields=frozen_map({f.name: f for f in [
    Field("name", "string", LOC), Field("score", "integer", LOC),
    Field("stage", "picklist", LOC, options=(Option("new"), Option("won")))]}))
WS = Workspace("t", entities=frozen_map({"lead": LEAD}))


@pytest.fixture
def db(db_url: str) -> Any:
    engine = make_engine(db_url)
    schema = build_schema(WS, engine.dialect.name)
    with engine.begin() as conn:
        ensure_pg_functions(conn)
        schema.metadata.create_all(conn)
        conn.execute(insert(schema.table("lead")), [
            {"id": i, "name": n, "score": s, "stage": st, "owner_id": None, "created_at": NOW, "updated_at": NOW}
            for i, n, s, st in [(1, "a", 5, "new"), (2, "B", None, "won"), (3, None, 50, None)]])
    yield engine, schema
    engine.dispose()


def ids(db: Any, text: str, **kw: Any) -> list[int]:
    engine, schema = db
    table = schema.table("lead")
    clause = to_sql(compile_expression(text, LEAD, WS, **kw), schema, "lead", now=NOW, for_filter=True)
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(table.c.id).where(clause).order_by(table.c.id))]


@pytest.mark.parametrize(("text", "expected"), [
    ('stage != "won"', [1, 3]), ("score > 10", [3]), ("not (score > 10)", [1, 2]), ('name < "a"', [2]),
    ("score is null or score < 10", [1, 2]), ('stage in ["new", null]', [1, 3]), ("isblank(name)", [3]),
])
def test_filters(db: Any, text: str, expected: list[int]) -> None:
    assert ids(db, text) == expected


def test_plugin_function_with_sql(db: Any) -> None:
    registry = default_registry().copy()
    registry.register(FunctionDef("double", ("number",), "integer", lambda x: None if x is None else 2 * x,
                                  sql={"*": lambda ctx, args: args[0] * literal(2)}))
    engine, schema = db
    compiled = compile_expression("double(score) > 20", LEAD, WS, registry=registry)
    clause = to_sql(compiled, schema, "lead", registry=registry)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).where(clause)).scalar() == 1


def test_python_only_function_has_no_sql(db: Any) -> None:
    registry = default_registry().copy()
    registry.register(FunctionDef("shout", ("string",), "string", lambda s: s))
    compiled = compile_expression('shout(name) == "A"', LEAD, WS, registry=registry)
    with pytest.raises(ExpressionError) as info:
        to_sql(compiled, db[1], "lead", registry=registry)
    assert info.value.code == "expression_no_sql_function"


def test_old_has_no_sql_form() -> None:
    schema = build_schema(WS, "sqlite")
    text = 'stage == "won" and old.stage != "won"'
    compiled = compile_expression(text, LEAD, WS, allow_old=True, location=SourceLocation("acme/lead.yaml", 7, 14),
                                  quote_offset=1)
    with pytest.raises(ExpressionError) as info:
        to_sql(compiled, schema, "lead")
    err = info.value
    assert err.code == "expression_old_in_sql"
    assert err.location == SourceLocation("acme/lead.yaml", 7, 14 + 1 + text.index("old"))
    assert err.message.startswith("`old.stage` (the value before the update) has no SQL form: `old.` is only "
                                  "available in write-time rules (checks), not in filters")
    assert err.snippet is not None and err.snippet.splitlines()[1].strip() == "^" * len("old.stage")
    with pytest.raises(ExpressionError) as bare:  # a bare checked tree: located inside the expression
        to_sql(compiled.ast, schema, "lead")
    assert bare.value.code == "expression_old_in_sql" and bare.value.location is not None


def test_postgresql_orders_strings_by_code_point() -> None:
    schema = build_schema(WS, "postgresql")
    sql = str(to_sql(compile_expression('name < "b"', LEAD, WS), schema, "lead").compile(
        dialect=postgresql.dialect()))
    assert 'COLLATE "C"' in sql


def test_filter_form_keeps_plain_comparisons() -> None:
    schema = build_schema(WS, "sqlite")
    compiled = compile_expression('stage == "won" and score > 3', LEAD, WS)
    assert "coalesce" not in str(to_sql(compiled, schema, "lead", for_filter=True)).lower()
    assert "coalesce" in str(to_sql(compiled, schema, "lead")).lower()


# Wrappers that keep a value's kind, per kind; and converters from one kind to another.
_WRAP = {
    "number": ["abs({})", "round({})", "({} + 1)", "coalesce({}, 0)", "(if score > 1 then {} else 0)", "-({})",
               "max({}, 1)"],
    "string": ["lower({})", "upper({})", "trim({})", 'concat({}, "a")', 'coalesce({}, "")',
               '(if score > 1 then {} else "")'],
    "boolean": ["not ({})", "({} and score > 1)", '({} or name == "a")', "(if score > 1 then {} else false)",
                "coalesce({}, false)"],
}
_TO = {"number": ("boolean", "{} > 1"), "string": ("number", "len({})")}


@st.composite
def _deep(draw: Any) -> str:
    """A well-typed boolean expression nested up to ~40 levels deep, from random wrappers."""
    kind = draw(st.sampled_from(["number", "string", "boolean"]))
    text = {"number": "score", "string": "name", "boolean": "score > 2"}[kind]
    for _ in range(draw(st.integers(min_value=1, max_value=40))):
        if kind in _TO and draw(st.integers(0, 7)) == 0:
            kind, form = _TO[kind]
            text = form.format(text)
        else:
            text = draw(st.sampled_from(_WRAP[kind])).format(text)
    while kind != "boolean":
        kind, form = _TO[kind]
        text = form.format(text)
    return text


@hypothesis.settings(max_examples=200, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(text=_deep())
def test_any_expression_the_language_accepts_runs_in_sql(db: Any, text: str) -> None:
    """The depth limit is one the SQL back end can honour: SQLite's parser stack never overflows."""
    try:
        compiled = compile_expression(text, LEAD, WS, expected="boolean")
    except ExpressionError as e:
        assert e.code == "expression_too_deep", (text, e)
        return
    engine, schema = db
    table = schema.table("lead")
    clause = to_sql(compiled, schema, "lead", now=NOW, for_filter=True)
    with engine.connect() as conn:
        conn.execute(select(table.c.id).where(clause, table.c.deleted_at.is_(None))).all()
