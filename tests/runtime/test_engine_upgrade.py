"""Engine-table migrations: a database the version-1 engine made is upgraded with every row kept (golden
data), and a database from a newer engine is refused.  SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, inspect, select, text

from engine.api import create_app
from engine.errors import DatabaseNotReady
from engine.runtime import engine_tables
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.snapshot import state_from_snapshot
from engine.runtime.storage import build_schema
from engine.runtime.types import UtcDateTime
from tests.runtime.golden import engine_v1_schema

GOLDEN = json.loads((Path(__file__).parent / "golden" / "engine_v1.json").read_text("utf-8"))


def _value(column: Any, value: Any) -> Any:
    if value is not None and isinstance(column.type, UtcDateTime):
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
    return value


def build_v1_database(engine: Engine) -> None:
    """The version-1 engine tables and the entity tables of the golden revision, filled with its rows."""
    revision = GOLDEN["tables"]["crm_revisions"][0]
    state = state_from_snapshot(revision["bundle"]["schema"])
    entity_meta = build_schema(state.as_workspace(), engine.dialect.name).metadata
    with engine.begin() as conn:
        engine_v1_schema.engine_metadata.create_all(conn)
        entity_meta.create_all(conn, tables=[t for t in entity_meta.sorted_tables
                                             if t.name not in engine_v1_schema.engine_metadata.tables])
        v1 = engine_v1_schema.engine_metadata
        ordered = [*v1.sorted_tables, *(t for t in entity_meta.sorted_tables if t.name not in v1.tables)]
        for table in ordered:
            name = table.name
            rows = GOLDEN["tables"].get(name)
            if rows:
                conn.execute(table.insert(), [{k: _value(table.c[k], v) for k, v in r.items()} for r in rows])
                if engine.dialect.name == "postgresql" and "id" in table.c:  # as a dump restores sequences
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                      f"(SELECT max(id) FROM {name}))"))


def _rows(engine: Engine, name: str) -> list[dict[str, Any]]:
    meta = MetaData()
    meta.reflect(engine, only=[name])
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(meta.tables[name]).order_by(text("1")))]


def test_a_version_1_database_is_upgraded_with_every_row_kept(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        build_v1_database(engine)
        before = {name: _rows(engine, name) for name in GOLDEN["tables"]}
        with engine.connect() as conn:
            assert engine_tables.stored_version(conn) == 1
            assert "expires_at" not in {c["name"] for c in inspect(conn).get_columns("crm_api_tokens")}
        runtime = Runtime.open(db_url)  # upgrades the engine tables under the apply lock
        try:
            with engine.connect() as conn:
                assert engine_tables.stored_version(conn) == engine_tables.ENGINE_SCHEMA_VERSION
            for name, rows in before.items():
                after = _rows(engine, name)
                if name == "crm_api_tokens":
                    assert [r.pop("expires_at") for r in after] == [None]
                if name == "crm_teams":  # version 6: nested teams
                    assert {r.pop("parent_id") for r in after} == {None}
                if name == "crm_meta":
                    after = [r for r in after if r["key"] != engine_tables.SCHEMA_VERSION_KEY]
                assert after == rows, f"{name} changed in the upgrade"
            # the upgraded database works: the old token, the old records, the auto-number series
            client = create_app(runtime).test_client()
            auth = {"Authorization": f"Bearer {GOLDEN['token']}"}
            listed = client.get("/api/v1/records/item", headers=auth)
            assert listed.status_code == 200 and len(listed.get_json()["items"]) == 3
            made = client.post("/api/v1/records/item", json={"code": "C-new", "qty": 1}, headers=auth)
            assert made.status_code == 201, made.get_json()
            assert made.get_json()["number"] == "IT-00004" and made.get_json()["id"] == 4
            history = client.get("/api/v1/records/item/3/history", headers=auth).get_json()["items"]
            assert [h["action"] for h in history] == ["create", "update"]
        finally:
            runtime.close()
    finally:
        engine.dispose()


def test_a_database_from_a_newer_engine_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        build_v1_database(engine)
        with engine.begin() as conn:
            conn.execute(engine_v1_schema.crm_meta.insert().values(key=engine_tables.SCHEMA_VERSION_KEY,
                                                                   value="99"))
        with pytest.raises(DatabaseNotReady) as info:
            Runtime.open(db_url)
        assert info.value.code == "engine_schema" and "version 99, newer than this engine's" in info.value.message
        from engine.runtime.schema.apply import apply
        from tests.conftest import ent, fld, wsp

        with pytest.raises(DatabaseNotReady, match="newer than this engine"):
            apply(engine, wsp(ent("item", fld("code"))), author="t", message="old engine")
    finally:
        engine.dispose()
