"""Unique fields hold among live records: a soft-deleted record frees its value (both databases)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.dsl.compiler import compile_folder
from engine.errors import UniqueViolation
from engine.runtime.context import Actor
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply


@pytest.fixture
def runtime(tmp_path: Path, db_url: str):
    (tmp_path / "workspace.yaml").write_text("workspace: u\n")
    (tmp_path / "product.yaml").write_text("entity: item\nfields:\n  code: {type: string, unique: true}\n")
    engine = make_engine(db_url)
    apply(engine, compile_folder(tmp_path), author="t", message="m")
    engine.dispose()
    rt = Runtime.open(db_url)
    yield rt
    rt.close()


def test_soft_deleted_value_can_be_reused_and_restore_refuses_a_clash(runtime: Runtime):
    system = Actor.system()
    with runtime.unit(system) as uow:
        first = uow.records.create("item", {"code": "A-1"})
    with pytest.raises(UniqueViolation) as info, runtime.unit(system) as uow:
        uow.records.create("item", {"code": "A-1"})
    assert info.value.details == {"code": ["must be unique; another record already has this value"]}
    assert info.value.message == "another item already has this code"
    with runtime.unit(system) as uow:
        uow.records.delete("item", first["id"], expected_version=first["version"])
    with runtime.unit(system) as uow:
        second = uow.records.create("item", {"code": "A-1"})
    assert second["id"] != first["id"]
    with pytest.raises(UniqueViolation), runtime.unit(system) as uow:
        uow.records.restore("item", first["id"])
