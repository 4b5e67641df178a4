"""Revisions: listing, lookup, rollback through apply, bundle export, drift, versioned snapshots."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from engine.dsl.model import Workspace
from engine.errors import PlanError, RevisionNotFound
from engine.runtime.schema.apply import apply
from engine.runtime.schema.revisions import (
    active_revision,
    detect_drift,
    get_revision,
    list_revisions,
    rollback_target,
    upgrade_bundle,
    write_bundle,
)
from engine.runtime.schema.snapshot import snapshot, state_from_snapshot, state_of
from tests.conftest import ent, fld, insert_rows, read_rows, wsp

V1 = wsp(ent("lead", fld("company"), fld("tier", "picklist", options=["a", "b"], storage="json")))
V2 = wsp(ent("lead", fld("company"), fld("tier", "picklist", options=["a", "b"], storage="json"),
             fld("extra", "integer")))


def _compiler(*workspaces: Workspace):
    """A stand-in for the YAML compiler: looks the workspace up by its files."""
    known = {json.dumps(dict(w.sources), sort_keys=True): w for w in workspaces}

    def compile_bundle(bundle: Mapping[str, Any]) -> Workspace:
        return known[json.dumps(bundle["files"], sort_keys=True)]

    return compile_bundle


def test_list_get_and_rollback(db_engine: Engine) -> None:
    first = apply(db_engine, V1, author="ann", message="v1").revision_id
    insert_rows(db_engine, V1, "lead", [{"company": f"c{i}", "tier": "a"} for i in range(100)])
    second = apply(db_engine, V2, author="bob", message="v2").revision_id
    insert_rows(db_engine, V2, "lead", [{"company": "late", "extra": 7}])
    assert first is not None and second is not None
    with db_engine.connect() as conn:
        revs = list_revisions(conn)
        assert [(r.id, r.author, r.active) for r in revs] == [(second, "bob", True), (first, "ann", False)]
        assert get_revision(conn, second).parent_id == first
        assert get_revision(conn, first).changes[0]["kind"] == "create_table"
        with pytest.raises(RevisionNotFound) as err:
            get_revision(conn, 999)
        assert err.value.code == "revision_not_found" and f"{second}, {first}" in (err.value.hint or "")
        target = rollback_target(conn, first, _compiler(V1, V2))
    back = apply(db_engine, target, author="ann", message=f"rollback to {first}")
    assert [c.kind for c in back.plan.changes] == ["retire_column"]
    retired = wsp(ent("lead", *V1.entities["lead"].fields.values(), retired=(fld("extra", "integer"),)))
    assert read_rows(db_engine, retired, "lead", ["extra"])[101] == {"extra": 7}
    again = apply(db_engine, V2, author="bob", message="forward again")
    assert [c.kind for c in again.plan.changes] == ["unretire_column"]
    assert read_rows(db_engine, V2, "lead", ["extra"])[101] == {"extra": 7}


def test_write_bundle_and_drift(db_engine: Engine, tmp_path: Path) -> None:
    apply(db_engine, V1, author="ann", message="v1")
    with db_engine.connect() as conn:
        rev = active_revision(conn)
    assert rev is not None
    written = write_bundle(rev, tmp_path / "pulled")
    assert sorted(p.name for p in written) == ["entities.yaml", "workspace.yaml"]
    assert (tmp_path / "pulled" / "entities.yaml").read_text() == V1.sources["entities.yaml"]
    assert detect_drift(rev, V1).in_sync
    drift = detect_drift(rev, V2)
    assert not drift.in_sync and drift.changed == ("entities.yaml",) and not drift.added
    assert "~ entities.yaml" in drift.describe()
    assert detect_drift(None, V1).added == ("entities.yaml", "workspace.yaml")


def test_write_bundle_refuses_paths_outside(tmp_path: Path) -> None:
    from engine.runtime.schema.revisions import Revision

    bad = Revision(1, None, "x", "", None, "h", {"files": {"../evil.yaml": "x"}}, (), True)  # type: ignore[arg-type]
    with pytest.raises(PlanError, match="points outside the target folder"):
        write_bundle(bad, tmp_path)


GOLDEN_SNAPSHOT_V1 = {
    "snapshot_format": 1,
    "entities": {"lead": {
        "fields": {"company": {"type": "string", "storage": "column", "max_length": None, "scale": 2,
                               "reference": None, "on_delete": "restrict", "index": False, "unique": False,
                               "lines_entity": None, "column": "company"},
                   "tier": {"type": "picklist", "storage": "json", "max_length": None, "scale": 2,
                            "reference": None, "on_delete": "restrict", "index": False, "unique": False,
                            "lines_entity": None, "column": "tier", "options": ["a", "b"]}},
        "retired": {}, "indexes": [], "default_sort": ["-created_at"], "parent": None}},
    "retired_entities": {},
}


def test_snapshot_format_1_golden() -> None:
    assert snapshot(state_of(V1)) == GOLDEN_SNAPSHOT_V1
    state = state_from_snapshot(GOLDEN_SNAPSHOT_V1)
    assert snapshot(state) == GOLDEN_SNAPSHOT_V1
    assert state.entities["lead"].fields["tier"].option_keys == ("a", "b")


def test_newer_formats_are_refused() -> None:
    with pytest.raises(PlanError, match="snapshot format 99"):
        state_from_snapshot({**GOLDEN_SNAPSHOT_V1, "snapshot_format": 99})
    with pytest.raises(PlanError, match="bundle format 2"):
        upgrade_bundle({"format": 2})


def test_apply_refuses_when_the_plan_changed_after_it_was_shown(db_url: str, tmp_path: Path) -> None:
    """The plan is shown, the user confirms, and meanwhile someone else applies: refuse, change nothing."""
    from engine.errors import PlanChanged
    from engine.runtime.db import make_engine
    from engine.runtime.schema.operations import apply_workspace
    from tests.conftest import ent, fld, wsp

    v1 = wsp(ent("lead", fld("company")))
    engine = make_engine(db_url)
    try:
        apply(engine, v1, author="t", message="v1")
        mine = wsp(ent("lead", fld("company"), fld("phone")))
        theirs = wsp(ent("lead", fld("company"), fld("phone"), fld("email")))
        shown: list[str] = []

        def confirm_while_someone_applies(_question: str) -> bool:
            apply(engine, theirs, author="colleague", message="theirs")  # between display and lock
            return True

        with pytest.raises(PlanChanged) as info:
            apply_workspace(mine, db_url, yes=False, allow_destructive=False, purge=False, message="mine",
                            author="me", echo=shown.append, confirm=confirm_while_someone_applies,
                            export_dir=tmp_path)
        assert "add column lead.phone" in shown[0]
        assert "revision 2 is active now" in info.value.message and "nothing was applied" in info.value.message
        assert "retire lead.email" in info.value.message  # the plan as it would be now
        with engine.connect() as conn:
            assert [r.message for r in list_revisions(conn)] == ["theirs", "v1"]
        result = apply_workspace(mine, db_url, yes=True, allow_destructive=False, purge=False, message="mine",
                                 author="me", echo=shown.append, confirm=lambda _q: True, export_dir=tmp_path)
        assert result is not None and result.applied  # planned again, confirmed, applied
    finally:
        engine.dispose()
