"""A plan compares an entity's indexes from its table built alone; the texts are those of the whole schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.schema import CreateIndex

from engine.dsl.scaffold import init_workspace
from engine.runtime.db import sql_dialect
from engine.runtime.schema.diff import _index_sigs
from engine.runtime.schema.operations import compile_workspace
from engine.runtime.storage import build_schema


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_index_texts_of_an_entity_alone_equal_those_of_the_whole_schema(tmp_path: Path, dialect: str) -> None:
    init_workspace(tmp_path / "acme", industry="manufacturing", name="acme", locale="en", currency="CNY")
    workspace = compile_workspace(tmp_path / "acme")
    schema = build_schema(workspace, dialect)
    d = sql_dialect(dialect)
    total = 0
    for name, entity in workspace.entities.items():
        whole = {str(ix.name): str(CreateIndex(ix).compile(dialect=d)) for ix in schema.tables[name].indexes
                 if ix.name}
        assert _index_sigs(entity, dialect) == whole, name
        total += len(whole)
    assert total > 50  # the shipped entities have indexes of every kind the plan compares
