"""Bind a compiled workspace to SQL without a database: the second half of ``crm validate``."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from engine.dsl.model import Workspace
from engine.errors import ConfigError
from engine.runtime.storage import Schema, build_schema

DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}


def bind(workspace: Workspace, dialect: str) -> Schema:
    """Tables and indexes for ``dialect``; raises ConfigError (located) if the SQL cannot be built."""
    try:
        return build_schema(workspace, dialect)
    except Exception as e:  # SQLAlchemy ArgumentError and friends: a config the SQL layer rejects
        raise ConfigError(f"cannot build the {dialect} schema: {e}",
                          hint="check field names and types of the entity named in the message") from e


def bind_check(workspace: Workspace) -> None:
    """Build and compile the DDL for both databases, so errors show at validate time."""
    for name, dialect in DIALECTS.items():
        schema = bind(workspace, name)
        for entity, table in schema.tables.items():
            try:
                str(CreateTable(table).compile(dialect=dialect))
                for index in table.indexes:
                    str(CreateIndex(index).compile(dialect=dialect))
            except Exception as e:
                ent = workspace.entities.get(entity)
                raise ConfigError(f"entity {entity!r} cannot be created on {name}: {e}",
                                  location=ent.location if ent else None) from e
