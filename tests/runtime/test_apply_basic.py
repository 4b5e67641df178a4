"""Apply from nothing, add/retire/rename on 10,000 rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from engine.runtime.schema.apply import apply
from engine.runtime.schema.diff import format_plan, plan
from engine.runtime.schema.revisions import active_revision, list_revisions
from tests.conftest import ent, fld, insert_rows, read_rows, wsp

N = 10_000


def lead_v1():
    return ent("lead", fld("company", max_length=200), fld("legacy_code"),
               fld("industry", "picklist", options=["manufacturing", "it", "other"]),
               fld("budget", "money"), fld("note", "text", storage="json"), fld("score", "integer", index=True))


def _seed(engine: Engine, ws, n: int = N) -> None:
    insert_rows(engine, ws, "lead", [
        {"company": f"c{i}", "legacy_code": f"L{i}", "industry": ("it" if i % 3 == 0 else "other"),
         "note": f"n{i}", "score": i}
        for i in range(n)])


def _columns(engine: Engine, table: str) -> set[str]:
    return {c["name"] for c in inspect(engine).get_columns(table)}


def test_apply_from_nothing_creates_tables_and_revision(db_engine: Engine) -> None:
    ws = wsp(lead_v1())
    result = apply(db_engine, ws, author="t", message="first")
    assert result.applied and result.revision_id
    assert result.plan.changes[0].kind == "create_table"
    assert {"company", "legacy_code", "industry", "budget", "budget_currency", "ext"} <= _columns(db_engine, "lead")
    with db_engine.connect() as conn:
        rev = active_revision(conn)
        assert rev is not None and rev.content_hash == ws.content_hash and rev.parent_id is None
        assert rev.bundle["schema"]["snapshot_format"] == 1
    again = apply(db_engine, ws, author="t", message="again")
    assert not again.applied and again.revision_id == result.revision_id


def test_add_then_retire_field_keeps_rows(db_engine: Engine) -> None:
    v1 = wsp(lead_v1())
    apply(db_engine, v1, author="t", message="v1")
    _seed(db_engine, v1)
    v2 = wsp(ent("lead", *lead_v1().fields.values(), fld("priority", "integer")))
    with db_engine.connect() as conn:
        p = plan(v1, v2, conn)
    assert [c.kind for c in p.changes] == ["add_column"]
    assert format_plan(p).splitlines()[0] == "+ add column lead.priority (safe)"
    apply(db_engine, v2, author="t", message="v2")
    assert len(read_rows(db_engine, v2, "lead")) == N
    v3 = wsp(ent("lead", *(f for f in lead_v1().fields.values() if f.name != "legacy_code")))
    r3 = apply(db_engine, v3, author="t", message="v3")
    kinds = {c.kind for c in r3.plan.changes}
    assert "retire_column" in kinds
    line = next(c.line() for c in r3.plan.changes if c.field == "legacy_code")
    assert line == "~ retire lead.legacy_code (safe, 10,000 rows keep their data)"
    assert "legacy_code" in _columns(db_engine, "lead")
    retired = wsp(ent("lead", *v3.entities["lead"].fields.values(), retired=(fld("legacy_code"),)))
    rows = read_rows(db_engine, retired, "lead", ["legacy_code"])
    assert rows[1]["legacy_code"] == "L0" and len(rows) == N
    with db_engine.connect() as conn:
        assert [r.message for r in list_revisions(conn)] == ["v3", "v2", "v1"]


def test_references_created_in_dependency_order_and_added_later(db_engine: Engine) -> None:
    lead = ent("lead", fld("company"), fld("account", "reference", reference="account"))
    account = ent("account", fld("name"))
    v1 = wsp(lead, account)  # lead listed first: the plan must create account first
    kinds = [(c.kind, c.entity) for c in plan(None, v1, None).changes if c.kind == "create_table"]
    assert kinds == [("create_table", "account"), ("create_table", "lead")]
    apply(db_engine, v1, author="t", message="v1")
    v2 = wsp(ent("lead", *lead.fields.values(), fld("owner2", "reference", reference="account")), account)
    result = apply(db_engine, v2, author="t", message="v2")
    assert [c.kind for c in result.plan.changes] == ["add_column", "add_index"]
    assert "owner2_id" in _columns(db_engine, "lead")
    fks = {tuple(fk["constrained_columns"]): fk["referred_table"] for fk in inspect(db_engine).get_foreign_keys("lead")}
    assert fks[("owner2_id",)] == "account"


def test_plan_lines_agree_with_one_row(db_engine: Engine) -> None:
    v1 = wsp(lead_v1())
    apply(db_engine, v1, author="t", message="v1")
    _seed(db_engine, v1, n=1)
    v2 = wsp(ent("lead", *(f for f in lead_v1().fields.values() if f.name != "legacy_code")))
    with db_engine.connect() as conn:
        p = plan(v1, v2, conn)
    assert [c.line() for c in p.changes] == ["~ retire lead.legacy_code (safe, 1 row keeps its data)"]
    assert format_plan(p).splitlines()[-1] == "1 change: 1 safe, 0 destructive (need --allow-destructive), 0 blocked"


def test_plan_without_database_and_format() -> None:
    p = plan(None, wsp(lead_v1()), None)
    text_ = format_plan(p)
    assert text_.splitlines()[0] == "+ create table lead (safe, 6 fields)"
    assert text_.endswith("0 destructive (need --allow-destructive), 0 blocked")
    assert format_plan(plan(lead_ws := wsp(lead_v1()), lead_ws, None)).startswith("no changes")


def test_reference_cycle_between_new_entities(db_engine: Engine) -> None:
    account = ent("account", fld("name"), fld("primary_contact", "reference", reference="contact"))
    contact = ent("contact", fld("name"), fld("account", "reference", reference="account"))
    apply(db_engine, wsp(account, contact), author="t", message="cycle")
    fks = {fk["referred_table"] for fk in inspect(db_engine).get_foreign_keys("account")}
    assert "contact" in fks
