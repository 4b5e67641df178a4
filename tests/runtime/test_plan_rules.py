"""Plan rules on 10,000 rows: rename, picklist options, purge, narrowing, type changes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from engine.errors import BlockedChange, ConfirmationRequired
from engine.runtime.schema.apply import apply
from engine.runtime.schema.diff import format_plan, plan_from_state
from engine.runtime.schema.revisions import active_revision, revision_state
from tests.conftest import ent, fld, insert_rows, read_rows, wsp

N = 10_000
INDUSTRY = ["manufacturing", "it", "other"]


def _base(*extra):
    return ent("lead", fld("company", max_length=200), fld("code", max_length=40),
               fld("industry", "picklist", options=INDUSTRY),
               fld("tags", "multi_picklist", options=INDUSTRY, storage="json"),
               fld("amount", "decimal"), fld("memo", storage="json"), *extra)


def _setup(engine: Engine) -> None:
    ws = wsp(_base())
    apply(engine, ws, author="t", message="v1")
    insert_rows(engine, ws, "lead", [
        {"company": f"company {i}", "code": f"C{i:05d}", "industry": "it" if i % 100 < 37 else "other",
         "tags": ["it", "other"] if i % 2 else ["other"], "amount": Decimal(i), "memo": f"m{i}"}
        for i in range(N)])


def _plan(engine: Engine, ws, **kw):
    with engine.connect() as conn:
        return plan_from_state(revision_state(active_revision(conn)), ws, conn, **kw)


def _replace_field(name: str, new):
    return ent("lead", *(new if f.name == name else f for f in _base().fields.values()))


def test_rename_keeps_data(db_engine: Engine) -> None:
    _setup(db_engine)
    renamed = fld("account_code", max_length=40, renamed_from="code")
    memo = fld("remark", storage="json", renamed_from="memo")
    fields = [renamed if f.name == "code" else memo if f.name == "memo" else f for f in _base().fields.values()]
    ws = wsp(ent("lead", *fields))
    p = apply(db_engine, ws, author="t", message="rename").plan
    assert sorted(c.kind for c in p.changes if c.field in ("account_code", "remark")) == ["rename_column"] * 2
    assert "code" not in {c["name"] for c in inspect(db_engine).get_columns("lead")}
    rows = read_rows(db_engine, ws, "lead", ["account_code", "remark"])
    assert len(rows) == N and rows[1] == {"account_code": "C00000", "remark": "m0"}
    assert apply(db_engine, ws, author="t", message="again").applied is False  # renamed_from is idempotent


def test_rename_from_unknown_field_is_blocked(db_engine: Engine) -> None:
    _setup(db_engine)
    ws = wsp(_base(fld("x", renamed_from="nope")))
    with pytest.raises(BlockedChange) as err:
        apply(db_engine, ws, author="t", message="bad")
    assert "lead has no field 'nope' to rename" in str(err.value)
    assert err.value.code == "blocked_change"


def test_removing_used_option_is_blocked_then_replace_works(db_engine: Engine) -> None:
    _setup(db_engine)
    without_it = fld("industry", "picklist", options=["manufacturing", "other"])
    p = _plan(db_engine, wsp(_replace_field("industry", without_it)))
    line = format_plan(p).splitlines()[0]
    assert line == "! remove option lead.industry='it' (blocked: 3,700 rows use it; " \
                   "add replace: {it: ...} to lead.industry)"
    with pytest.raises(BlockedChange, match="3,700 rows use it"):
        apply(db_engine, wsp(_replace_field("industry", without_it)), author="t", message="x")
    fixed = fld("industry", "picklist", options=["manufacturing", "other"], replace={"it": "manufacturing"})
    ws = wsp(_replace_field("industry", fixed))
    result = apply(db_engine, ws, author="t", message="replace")
    assert [(c.kind, c.rows) for c in result.plan.changes] == [("replace_options", 3700)]
    values = [r["industry"] for r in read_rows(db_engine, ws, "lead", ["industry"]).values()]
    assert values.count("manufacturing") == 3700 and "it" not in values


def test_multi_picklist_option_replace_in_json(db_engine: Engine) -> None:
    _setup(db_engine)
    tags = fld("tags", "multi_picklist", options=["manufacturing", "other"], storage="json")
    p = _plan(db_engine, wsp(_replace_field("tags", tags)))
    assert p.blocked and p.blocked[0].rows == N // 2
    tags = fld("tags", "multi_picklist", options=["manufacturing", "other"], storage="json",
               replace={"it": "manufacturing"})
    ws = wsp(_replace_field("tags", tags))
    apply(db_engine, ws, author="t", message="replace")
    rows = read_rows(db_engine, ws, "lead", ["tags"])
    assert rows[2]["tags"] == ["manufacturing", "other"] and rows[1]["tags"] == ["other"]


def test_purge_exports_then_drops(db_engine: Engine, tmp_path: Path) -> None:
    _setup(db_engine)
    ws = wsp(ent("lead", *(f for f in _base().fields.values() if f.name not in ("code", "memo"))))
    apply(db_engine, ws, author="t", message="retire")
    with pytest.raises(ConfirmationRequired, match=r"purge retired lead\.code"):
        apply(db_engine, ws, author="t", message="purge", purge=True, export_dir=tmp_path)
    with pytest.raises(BlockedChange, match="no export folder was given"):
        apply(db_engine, ws, author="t", message="purge", purge=True, allow_destructive=True)
    result = apply(db_engine, ws, author="t", message="purge", purge=True, export_dir=tmp_path,
                   allow_destructive=True)
    assert len(result.exported) == 2
    assert "code" not in {c["name"] for c in inspect(db_engine).get_columns("lead")}
    for path, key, first in [(p, k, v) for p in result.exported for k, v in (("code", "C00000"), ("memo", "m0"))
                             if f".{k}." in p.name]:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(lines) == N and lines[0] == {"id": 1, key: first}
    state = revision_state(_active(db_engine))
    assert not state.entities["lead"].retired


def _active(engine: Engine):
    with engine.connect() as conn:
        return active_revision(conn)


def test_narrow_max_length_blocked_unless_data_fits(db_engine: Engine) -> None:
    _setup(db_engine)
    too_short = wsp(_replace_field("company", fld("company", max_length=10)))
    expected = "9,900 rows hold longer values; shorten those values first, or keep max_length >= 12"
    with pytest.raises(BlockedChange, match=expected):
        apply(db_engine, too_short, author="t", message="narrow")
    fits = wsp(_replace_field("company", fld("company", max_length=20)))
    result = apply(db_engine, fits, author="t", message="narrow")
    assert [c.kind for c in result.plan.changes] == ["narrow_length"]
    assert result.plan.changes[0].safety == "safe"
    assert len(read_rows(db_engine, fits, "lead", ["company"])) == N


def test_type_changes(db_engine: Engine) -> None:
    _setup(db_engine)
    to_int = wsp(_replace_field("amount", fld("amount", "integer")))
    p = apply(db_engine, to_int, author="t", message="int").plan
    assert [c.kind for c in p.changes] == ["change_type"]
    assert read_rows(db_engine, to_int, "lead", ["amount"])[11]["amount"] == 10
    to_bool = wsp(_replace_field("amount", fld("amount", "boolean")))
    with pytest.raises(BlockedChange, match="integer cannot become boolean"):
        apply(db_engine, to_bool, author="t", message="bool")


def test_remove_entity_retires_table(db_engine: Engine) -> None:
    _setup(db_engine)
    other = ent("contact", fld("name"))
    result = apply(db_engine, wsp(other), author="t", message="drop lead")
    kinds = [c.kind for c in result.plan.changes]
    assert "retire_entity" in kinds and "create_table" in kinds
    assert inspect(db_engine).has_table("lead")
    back = apply(db_engine, wsp(other, _base()), author="t", message="back")
    assert [c.kind for c in back.plan.changes] == ["unretire_entity"]
    assert len(read_rows(db_engine, wsp(_base()), "lead", ["code"])) == N


@pytest.mark.parametrize("way_out", ["bring_back", "purge_first"])
@pytest.mark.parametrize("storage", ["column", "json"])
def test_rename_onto_a_field_retired_by_a_rollback_is_blocked_clearly(db_engine: Engine, tmp_path: Path,
                                                                      storage: str, way_out: str) -> None:
    """qty -> quantity without renamed_from (retire + add), a rollback, then quantity renamed_from qty:
    the retired quantity still has its own column and data, so the rename is blocked with a way out."""
    v1 = wsp(ent("item", fld("name"), fld("qty", "integer", storage=storage)))
    apply(db_engine, v1, author="t", message="v1")
    insert_rows(db_engine, v1, "item", [{"name": f"i{i}", "qty": i} for i in range(20)])
    v2 = wsp(ent("item", fld("name"), fld("quantity", "integer", storage=storage)))
    assert {c.kind for c in apply(db_engine, v2, author="t", message="v2").plan.changes} >= {
        "retire_column", "add_column" if storage == "column" else "add_json_field"}
    insert_rows(db_engine, v2, "item", [{"name": f"n{i}", "quantity": 100 + i} for i in range(5)])
    apply(db_engine, v1, author="t", message="rollback to 1")
    v3 = wsp(ent("item", fld("name"), fld("quantity", "integer", storage=storage, renamed_from="qty")))
    the_plan = _plan(db_engine, v3)
    blocked = [c for c in the_plan.changes if c.safety == "blocked"]
    assert len(blocked) == 1 and blocked[0].kind == "rename_column", format_plan(the_plan)
    line = blocked[0].line()
    assert "item.quantity already exists as a retired field (5 rows with data)" in line, line
    assert "item.qty (20 rows with data) cannot take its name" in line and "drop renamed_from" in line
    with pytest.raises(BlockedChange, match="retired field"):
        apply(db_engine, v3, author="t", message="rename")
    if way_out == "bring_back":  # without renamed_from, the retired quantity comes back with its data
        v4 = wsp(ent("item", fld("name"), fld("quantity", "integer", storage=storage)))
        apply(db_engine, v4, author="t", message="bring back")
        back = read_rows(db_engine, v4, "item", ["quantity"])
        assert sorted(v["quantity"] for v in back.values() if v["quantity"] is not None) == list(range(100, 105))
    else:  # purge the retired quantity (exported first), then the rename goes through
        result = apply(db_engine, v1, author="t", message="purge", purge=True, allow_destructive=True,
                       export_dir=tmp_path)
        assert [p.name for p in result.exported] and "quantity" in result.exported[0].name
        apply(db_engine, v3, author="t", message="rename")
        moved = read_rows(db_engine, v3, "item", ["quantity"])
        assert sorted(v["quantity"] for v in moved.values() if v["quantity"] is not None) == list(range(20))
