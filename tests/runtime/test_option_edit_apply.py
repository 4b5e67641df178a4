"""Editing the base stage picklist from an extend layer, planned and applied on both databases."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from engine.dsl.compiler import compile_folder
from engine.dsl.model import Workspace
from engine.runtime.schema.apply import apply
from engine.runtime.schema.diff import plan_from_state
from engine.runtime.schema.model import Plan
from engine.runtime.schema.revisions import active_revision, revision_state
from tests.conftest import insert_rows, read_rows

STAGES = ["qualification", "lost", "won", "lost", "proposal"]


def _workspace(folder: Path, stage_edit: str | None) -> Workspace:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workspace.yaml").write_text("workspace: acme\nextends: base\n", "utf-8")
    if stage_edit is not None:
        (folder / "entities").mkdir(exist_ok=True)
        (folder / "entities" / "opportunity.yaml").write_text(
            "entity: opportunity\nextend: true\nfields:\n  stage:\n" + stage_edit, "utf-8")
    return compile_folder(folder)


def plan(db_engine: Engine, ws: Workspace) -> Plan:
    with db_engine.connect() as conn:
        return plan_from_state(revision_state(active_revision(conn)), ws, conn)


def _seed(db_engine: Engine, ws: Workspace) -> None:
    apply(db_engine, ws, author="t", message="base")
    insert_rows(db_engine, ws, "account", [{"name": "Acme"}])
    insert_rows(db_engine, ws, "opportunity", [{"name": f"deal {i}", "account": 1, "stage": s}
                                               for i, s in enumerate(STAGES)])


def test_adding_a_stage_in_an_extend_layer_keeps_every_row(db_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    _seed(db_engine, _workspace(folder, None))
    ws = _workspace(folder, "    options: {add: [{key: on_hold, label: On hold}], after: negotiation}\n")
    p = plan(db_engine, ws)
    assert not p.blocked and not p.destructive, [str(c) for c in p.changes]
    apply(db_engine, ws, author="t", message="add on_hold")
    rows = read_rows(db_engine, ws, "opportunity", ["stage"])
    assert [r["stage"] for r in rows.values()] == STAGES
    assert [o.key for o in ws.entities["opportunity"].fields["stage"].options][3:5] == ["negotiation", "on_hold"]
    insert_rows(db_engine, ws, "opportunity", [{"name": "paused", "account": 1, "stage": "on_hold"}])
    assert read_rows(db_engine, ws, "opportunity", ["stage"])[6]["stage"] == "on_hold"


def test_removing_a_stage_with_replace_moves_its_rows(db_engine: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "acme"
    _seed(db_engine, _workspace(folder, None))
    without_replace = _workspace(folder, "    options: {remove: [lost]}\n")
    blocked = plan(db_engine, without_replace)
    assert [(c.kind, c.rows) for c in blocked.blocked] == [("remove_option", 2)]
    assert "add replace: {lost: ...} to opportunity.stage" in str(blocked.blocked[0].fix)
    ws = _workspace(folder, "    options: {remove: [lost]}\n    replace: {lost: won}\n")
    result = apply(db_engine, ws, author="t", message="drop lost")
    assert [(c.kind, c.rows) for c in result.plan.changes] == [("replace_options", 2)]
    rows = read_rows(db_engine, ws, "opportunity", ["stage"])
    assert [r["stage"] for r in rows.values()] == ["qualification", "won", "won", "won", "proposal"]
    assert "lost" not in [o.key for o in ws.entities["opportunity"].fields["stage"].options]
