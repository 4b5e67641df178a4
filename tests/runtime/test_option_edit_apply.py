"""Changing stages and picklist options from a later layer, planned and applied on both databases.

The pipeline owns ``opportunity.stage``: a stage added ``after:`` another in an extend layer keeps every
record and its stage; a stage records still hold cannot be removed (blocked, with the count) until
``move_to:`` says where they go, and then the records move, audited, their stage history with them.
A plain picklist (``lead.status``) works the same way with ``replace:``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, insert, select

from engine.dsl.compiler import compile_folder
from engine.dsl.model import Workspace
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_audit, crm_stage_history
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply
from engine.runtime.schema.diff import plan_from_state
from engine.runtime.schema.model import Plan
from engine.runtime.schema.revisions import active_revision, revision_state
from tests.conftest import insert_rows, read_rows

STAGES = ["qualification", "needs_analysis", "won", "needs_analysis", "proposal"]
PIPELINE = "pipeline: opportunity_sales\nextend: true\nstages:\n"


def _workspace(folder: Path, files: dict[str, str] | None = None) -> Workspace:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workspace.yaml").write_text("workspace: acme\nextends: base\n", "utf-8")
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text, "utf-8")
    return compile_folder(folder)


def plan(db_engine: Engine, ws: Workspace) -> Plan:
    with db_engine.connect() as conn:
        return plan_from_state(revision_state(active_revision(conn)), ws, conn)


def _seed(db_engine: Engine, ws: Workspace) -> None:
    apply(db_engine, ws, author="t", message="base")
    insert_rows(db_engine, ws, "account", [{"name": "Acme"}])
    insert_rows(db_engine, ws, "opportunity", [{"name": f"deal {i}", "account": 1, "stage": s}
                                               for i, s in enumerate(STAGES)])


def test_adding_a_stage_and_a_field_through_yaml_keeps_every_record(db_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    _seed(db_engine, _workspace(folder))
    ws = _workspace(folder, {
        "pipelines/opportunity_sales.yaml": PIPELINE + "  - {key: solution_review, after: proposal, probability: 60,"
                                                       " label: {zh: 方案评审}}\n",
        "entities/opportunity.yaml": "entity: opportunity\nextend: true\nfields:\n"
                                     "  budget_range: {type: picklist, label: {zh: 客户预算范围},"
                                     " options: [under_100k, 100k_1m, over_1m]}\n"})
    p = plan(db_engine, ws)
    assert not p.blocked and not p.destructive, [c.line() for c in p.changes]
    assert [(c.kind, c.field) for c in p.changes] == [("add_column", "budget_range")]
    apply(db_engine, ws, author="t", message="solution review and budget range")
    rows = read_rows(db_engine, ws, "opportunity", ["stage", "budget_range"])
    assert [r["stage"] for r in rows.values()] == STAGES and {r["budget_range"] for r in rows.values()} == {None}
    stage = ws.entities["opportunity"].fields["stage"]
    assert list(stage.option_keys)[2:5] == ["proposal", "solution_review", "negotiation"]
    assert stage.options[3].label["zh"] == "方案评审"
    rt = Runtime.open(db_engine.url.render_as_string(hide_password=False))
    try:
        with rt.unit(Actor.system()) as uow:  # the new stage is a real stage: the record moves into it
            moved = uow.records.update("opportunity", 5, {"stage": "solution_review", "budget_range": "over_1m"},
                                       expected_version=None)
        assert moved["stage"] == "solution_review" and str(moved["probability"]) == "60.0000"
    finally:
        rt.close()


def test_removing_a_stage_in_use_is_blocked_until_move_to(db_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    _seed(db_engine, _workspace(folder))
    blocked = plan(db_engine, _workspace(folder, {
        "pipelines/opportunity_sales.yaml": PIPELINE + "  - {key: needs_analysis, remove: true}\n"}))
    assert [(c.kind, c.rows) for c in blocked.blocked] == [("remove_option", 2)]
    assert blocked.blocked[0].reason == "2 rows use it"
    assert blocked.blocked[0].fix == ("pipeline opportunity_sales owns the options of opportunity.stage: write "
                                      "{key: needs_analysis, remove: true, move_to: ...} in it to move those rows "
                                      "to another option")
    entered = dt.datetime(2026, 1, 2, 8, 0, 0, tzinfo=dt.UTC)
    with db_engine.begin() as conn:  # records 2 and 4 entered needs_analysis on Jan 2 (record 3 left it)
        conn.execute(insert(crm_stage_history), [
            {"entity": "opportunity", "record_id": rid, "pipeline": "opportunity_sales", "from_stage": "qualification",
             "to_stage": "needs_analysis", "entered_at": entered, "left_at": left, "duration_seconds": None}
            for rid, left in ((2, None), (4, None), (3, entered + dt.timedelta(hours=1)))])
    ws = _workspace(folder, {"pipelines/opportunity_sales.yaml":
                             PIPELINE + "  - {key: needs_analysis, remove: true, move_to: qualification}\n"})
    result = apply(db_engine, ws, author="t", message="drop needs analysis")
    assert [(c.kind, c.rows) for c in result.plan.changes] == [("replace_options", 2)]
    rows = read_rows(db_engine, ws, "opportunity", ["stage"])
    assert [r["stage"] for r in rows.values()] == ["qualification", "qualification", "won", "qualification",
                                                   "proposal"]
    _assert_audited(db_engine, "opportunity", "stage", [2, 4], "needs_analysis", "qualification",
                    result.revision_id)
    h = crm_stage_history
    with db_engine.connect() as conn:
        history = conn.execute(select(h.c.record_id, h.c.from_stage, h.c.to_stage, h.c.entered_at, h.c.left_at,
                                      h.c.duration_seconds).order_by(h.c.id)).all()
    closed = {r.record_id: r for r in history[:3]}
    assert closed[3].duration_seconds is None  # it had left the stage before: untouched
    for rid in (2, 4):  # the stay in the removed stage ends at the apply, and one in move_to: starts
        assert closed[rid].left_at is not None
        assert closed[rid].duration_seconds == int((closed[rid].left_at - entered).total_seconds())
    assert [(r.record_id, r.from_stage, r.to_stage, r.left_at) for r in history[3:]] == [
        (2, "needs_analysis", "qualification", None), (4, "needs_analysis", "qualification", None)]
    assert all(r.entered_at == closed[r.record_id].left_at for r in history[3:])
    rt = Runtime.open(db_engine.url.render_as_string(hide_password=False))
    try:
        with rt.unit(Actor.system(), readonly=True) as uow:
            entry = [e for e in uow.records.history("opportunity", 2) if e.action == "replace_option"]
            assert [(e.field, e.old, e.new) for e in entry] == [("stage", "needs_analysis", "qualification")]
            assert uow.records.get("opportunity", 2)["version"] == 2  # a client holding version 1 gets a conflict
    finally:
        rt.close()


def test_removing_a_plain_option_with_replace_moves_its_rows_audited(db_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    ws = _workspace(folder)
    apply(db_engine, ws, author="t", message="base")
    insert_rows(db_engine, ws, "lead", [{"company": f"c{i}", "status": s}
                                        for i, s in enumerate(["new", "working", "working", "qualified"])])
    lead_edit = "entity: lead\nextend: true\nfields:\n  status:\n    options: {remove: [working]}\n"
    without = plan(db_engine, _workspace(folder, {"entities/lead.yaml": lead_edit}))
    assert [(c.kind, c.rows) for c in without.blocked] == [("remove_option", 2)]
    assert without.blocked[0].fix == "add replace: {working: ...} to lead.status"
    ws = _workspace(folder, {"entities/lead.yaml": "entity: lead\nextend: true\nfields:\n  status:\n"
                                                   "    options: {remove: [working]}\n    replace: {working: new}\n"})
    result = apply(db_engine, ws, author="t", message="drop working")
    assert [r["status"] for r in read_rows(db_engine, ws, "lead", ["status"]).values()] == ["new", "new", "new",
                                                                                             "qualified"]
    _assert_audited(db_engine, "lead", "status", [2, 3], "working", "new", result.revision_id)


def _assert_audited(db_engine: Engine, entity: str, field: str, ids: list[int], old: str, new: str,
                    revision: int | None) -> None:
    a = crm_audit
    with db_engine.connect() as conn:
        found = conn.execute(select(a.c.record_id, a.c.field, a.c.old_value, a.c.new_value, a.c.revision_id,
                                    a.c.actor_id).where(a.c.entity == entity, a.c.action == "replace_option")
                             .order_by(a.c.record_id)).all()
    assert [tuple(r) for r in found] == [(i, field, old, new, revision, None) for i in ids]
