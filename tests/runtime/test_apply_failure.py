"""A failure in the middle of an apply leaves the database exactly as before (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, inspect, select

from engine.errors import PlanError
from engine.runtime.schema.apply import apply
from engine.runtime.schema.revisions import list_revisions
from tests.conftest import ent, fld, insert_rows, wsp


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Every table's columns, indexes and rows."""
    insp = inspect(engine)
    meta = MetaData()
    meta.reflect(engine)
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            cols = [(c["name"], str(c["type"])) for c in insp.get_columns(name)]
            idx = sorted(i["name"] or "" for i in insp.get_indexes(name))
            out[name] = (cols, idx, [tuple(r) for r in rows])
    return out


def test_failure_mid_apply_changes_nothing(db_engine: Engine) -> None:
    v1 = wsp(ent("lead", fld("company"), fld("score", "decimal"), fld("legacy"), fld("tag", index=True)))
    apply(db_engine, v1, author="t", message="v1")
    insert_rows(db_engine, v1, "lead", [{"company": f"c{i}", "score": i, "legacy": "x", "tag": "t"}
                                        for i in range(500)])
    # add a column, a new table, a type change (SQLite: batch rebuild), a storage move, a new index
    v2 = wsp(ent("lead", fld("company"), fld("score", "integer"), fld("tag", storage="json", index=True),
                 fld("priority", "integer", index=True)),
             ent("contact", fld("name", index=True)))
    before = _snapshot(db_engine)
    for step in range(1, 9):
        with pytest.raises(PlanError, match="injected failure"):
            apply(db_engine, v2, author="t", message="v2", fail_after=step)
        after = _snapshot(db_engine)
        assert not [t for t in after if t.startswith("_alembic_tmp")]
        assert after == before, f"database changed after a failure at DDL step {step}"
    result = apply(db_engine, v2, author="t", message="v2")
    assert result.applied
    with db_engine.connect() as conn:
        assert [r.message for r in list_revisions(conn)] == ["v2", "v1"]
