"""Runtime: opening, extension steps in order, revision refresh swapping the compiled state."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import FILES, World, write_workspace

from engine.dsl.compiler import compile_folder
from engine.errors import DatabaseNotReady, RecordLocked, ValidationFailed
from engine.runtime.db import make_engine
from engine.runtime.records import WriteContext
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply


class Step:
    def __init__(self, name: str, order: int, log: list[str], action: Any = None) -> None:
        self.name, self.order, self.log, self.action = name, order, log, action

    def applies_to(self, entity: str) -> bool:
        return entity == "deal"

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        self.log.append(f"{self.name}:{ctx.action}")
        if self.action:
            self.action(record, old)


def test_open_empty_database_says_run_apply(tmp_path: Path) -> None:
    with pytest.raises(DatabaseNotReady) as ei:  # no file: said so, and none is created
        Runtime.open(f"sqlite:///{tmp_path / 'empty.db'}")
    assert ei.value.code == "database_missing" and "crm apply" in (ei.value.hint or "")
    assert not (tmp_path / "empty.db").exists()
    sqlite3.connect(tmp_path / "empty.db").close()  # a file with nothing applied
    with pytest.raises(DatabaseNotReady) as ei:
        Runtime.open(f"sqlite:///{tmp_path / 'empty.db'}")
    assert ei.value.hint == "run crm apply"


def test_steps_run_in_order_after_rules_and_can_change_or_stop(world: World) -> None:
    log: list[str] = []

    def score(record: dict[str, Any], _old: Any) -> None:
        record["priority"] = 7  # steps may set read-only fields

    def lock(record: dict[str, Any], old: Any) -> None:
        if old is not None and old.get("stage") == "won":
            raise RecordLocked("won deals are locked")

    world.rt.steps.register(Step("lock", 900, log, lock))
    world.rt.steps.register(Step("scoring", 300, log, score))
    with pytest.raises(ValueError):
        world.rt.steps.register(Step("lock", 1, log))
    with world.unit() as uow:
        d = uow.records.create("deal", {"name": "a", "stage": "won"})
        assert d["priority"] == 7
        assert log == ["scoring:create", "lock:create"]
        with pytest.raises(ValidationFailed):  # rules fail first: the steps do not run
            uow.records.update("deal", d["id"], {"amount": 1, "quantity": 5}, expected_version=1)
        assert len(log) == 2
        with pytest.raises(RecordLocked):
            uow.records.update("deal", d["id"], {"name": "b"}, expected_version=1)
        with pytest.raises(RecordLocked):
            uow.records.delete("deal", d["id"])


def test_refresh_swaps_to_new_revision(world: World, tmp_path: Path) -> None:
    files = dict(FILES)
    files["entities/extra.yaml"] = "entity: memo\nfields:\n  text: {type: string}\n"
    ws = compile_folder(write_workspace(tmp_path / "v2", files))
    engine = make_engine(world.url)
    try:
        apply(engine, ws, author="t", message="v2")
    finally:
        engine.dispose()
    old_state = world.rt.state
    assert "memo" not in old_state.plans
    assert world.rt.refresh(force=True)
    assert world.rt.state is not old_state and world.rt.state.revision_id != old_state.revision_id
    with world.unit() as uow:
        assert uow.records.create("memo", {"text": "hi"})["text"] == "hi"
    assert not world.rt.refresh(force=True)
