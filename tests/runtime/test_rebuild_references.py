"""Table rebuilds keep every reference: children with set_null, cascade and restrict, and lines.

SQLite cannot alter a column in place: a type or length change, a move to the
JSON column or a purge rebuilds the table (create new, copy, drop old,
rename).  Dropping the old table fires the children's ``ON DELETE`` actions
unless foreign keys are off for the whole transaction, so these tests compare
full table snapshots before and after every rebuilding change kind, on both
databases, and check that the constraints still work after the rebuild.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, inspect, select, text
from sqlalchemy.exc import IntegrityError

from engine.dsl.compiler import compile_folder
from engine.runtime.schema.apply import apply
from tests.conftest import insert_rows

WIDGET = """
    entity: widget
    fields:
      code: {{type: string, max_length: {code_len}}}
      qty: {{type: {qty_type}}}
      note: {{type: string{note_storage}}}
{old}      parts:
        type: lines
        fields:
          part: {{type: string, required: true}}
"""
GADGET = """
    entity: gadget
    fields:
      name: {{type: string, max_length: {name_len}}}
      widget: {{type: reference, to: widget, on_delete: {on_delete}}}
"""

BASE = {"code_len": 20, "qty_type": "integer", "note_storage": "", "old": "      old: {type: string}\n",
        "name_len": 30}
CHANGES: dict[str, dict[str, Any]] = {
    "narrow_length": {"code_len": 10},
    "widen_length": {"code_len": 40},
    "change_type": {"qty_type": "decimal"},
    "move_storage": {"note_storage": ", storage: json"},
    "purge_column": {"old": ""},
    "child_narrow_length": {"name_len": 20},
}


def _workspace(folder: Path, on_delete: str, **params: Any) -> Any:
    values = {**BASE, **params, "on_delete": on_delete}
    files = {"workspace.yaml": "workspace: acme\n",
             "entities/widget.yaml": WIDGET.format(**values),
             "entities/gadget.yaml": GADGET.format(**values)}
    for name, body in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return compile_folder(folder)


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every entity table, in id order (the columns a change does not touch)."""
    meta = MetaData()
    meta.reflect(engine)
    keep = {"widget": ("id", "code", "version"), "gadget": ("id", "name", "widget_id", "version"),
            "widget_parts": ("id", "parent_id", "position", "part")}
    out = {}
    with engine.connect() as conn:
        for name, cols in keep.items():
            table = meta.tables[name]
            out[name] = [tuple(r) for r in conn.execute(select(*[table.c[c] for c in cols]).order_by(table.c.id))]
    return out


def _seed(engine: Engine, ws: Any) -> None:
    insert_rows(engine, ws, "widget", [{"code": f"W{i}", "qty": i, "note": f"n{i}", "old": f"o{i}"}
                                       for i in range(10)])
    insert_rows(engine, ws, "gadget", [{"name": f"g{i}", "widget": i % 10 + 1} for i in range(10)])
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO widget_parts (parent_id, position, part, version, created_at, updated_at)"
                          " SELECT id, 0, 'p' || id, 1, created_at, updated_at FROM widget"))


@pytest.mark.parametrize("on_delete", ["set_null", "cascade", "restrict"])
@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_rebuild_keeps_children(db_engine: Engine, tmp_path: Path, kind: str, on_delete: str) -> None:
    v1 = _workspace(tmp_path / "v1", on_delete)
    apply(db_engine, v1, author="t", message="v1")
    _seed(db_engine, v1)
    if kind == "purge_column":  # retire first, then purge: two applies
        v2 = _workspace(tmp_path / "v2", on_delete, **CHANGES[kind])
        apply(db_engine, v2, author="t", message="retire")
    before = _rows(db_engine)
    assert len(before["gadget"]) == 10 and all(r[2] is not None for r in before["gadget"])
    v2 = _workspace(tmp_path / "v3", on_delete, **CHANGES[kind])
    result = apply(db_engine, v2, author="t", message=kind, purge=kind == "purge_column",
                   allow_destructive=True, export_dir=tmp_path / "exports")
    expected = kind.removeprefix("child_")
    assert expected in {c.kind for c in result.plan.changes}, result.plan.changes
    assert _rows(db_engine) == before, f"{kind} with on_delete={on_delete} changed rows it must not touch"
    _check_constraints(db_engine, on_delete)


def _check_constraints(engine: Engine, on_delete: str) -> None:
    """The rebuilt tables still enforce their foreign keys, with the same actions."""
    fks = {fk["constrained_columns"][0]: (fk.get("options") or {}).get("ondelete")
           for fk in inspect(engine).get_foreign_keys("gadget")}
    assert fks["widget_id"] is not None and fks["widget_id"].upper().replace("_", " ") == {
        "set_null": "SET NULL", "cascade": "CASCADE", "restrict": "RESTRICT"}[on_delete]
    with engine.connect() as conn, conn.begin():
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(text("UPDATE gadget SET widget_id = 999 WHERE id = 1"))
        with pytest.raises(IntegrityError), conn.begin_nested():
            conn.execute(text("UPDATE widget_parts SET parent_id = 999 WHERE id = 1"))
        if on_delete == "restrict":
            with pytest.raises(IntegrityError), conn.begin_nested():
                conn.execute(text("DELETE FROM widget WHERE id = 1"))
        else:
            conn.execute(text("DELETE FROM widget WHERE id = 1"))
            left = conn.execute(text("SELECT widget_id FROM gadget WHERE id = 1")).all()
            assert left == ([(None,)] if on_delete == "set_null" else [])
            assert conn.execute(text("SELECT count(*) FROM widget_parts WHERE parent_id = 1")).scalar() == 0
        conn.rollback()


def _all_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for name, t in sorted(meta.tables.items()) if name not in ("crm_revisions", "crm_meta")}


def test_shipped_config_narrowing_keeps_every_row(db_url: str, tmp_path: Path) -> None:
    """The manufacturing template with demo data: narrowing account.short_name leaves every table as it was."""
    from engine.demo_data import populate
    from engine.dsl.scaffold import init_workspace
    from engine.runtime.db import make_engine
    from engine.runtime.runtime import Runtime

    folder = tmp_path / "acme"
    init_workspace(folder, industry="manufacturing", name="acme", locale="zh", currency="CNY")
    engine = make_engine(db_url)
    try:
        apply(engine, compile_folder(folder), author="t", message="v1")
        rt = Runtime.open(db_url)
        try:
            populate(rt)
        finally:
            rt.close()
        before = _all_rows(engine)
        assert sum(len(rows) for rows in before.values()) > 300
        (folder / "entities" / "account_short.yaml").write_text(
            "entity: account\nextend: true\nfields:\n  short_name: {type: string, max_length: 40}\n",
            encoding="utf-8")
        result = apply(engine, compile_folder(folder), author="t", message="narrow")
        assert [c.kind for c in result.plan.changes] == ["narrow_length"]
        assert _all_rows(engine) == before
    finally:
        engine.dispose()
