"""The SQLite search index: one FTS5 table per entity with the trigram tokenizer, kept by triggers.

``crm_search_<table>`` holds one row per record (its ``rowid`` is the record id) with one column per
searchable field.  The trigram tokenizer indexes every three characters, so a substring of three or
more characters -- Chinese included, which has no spaces -- is found through the index.  Triggers on
the entity's table keep it: every path that writes the table (the record service, bulk writes, the
apply's data rewrites, a restore, even a hand-written ``INSERT``) updates the index in the same
statement.  Soft-deleted records stay in the index (a restore needs no work); search reads live records
only.  PostgreSQL needs none of this: its trigram GIN indexes are ordinary planned indexes
(:func:`engine.runtime.storage.search_index`).

Each value is indexed followed by two :data:`END` characters, so every character of a value starts a
trigram: a text of one or two characters is then found through the index's vocabulary
(``crm_searchvocab_<table>``, an ``fts5vocab`` table listing the trigrams), as the trigrams starting with
it (:func:`expansion`).  A database built before that (:data:`LAYOUT` 1, no vocabulary) still answers
texts of three characters or more from the index; its next apply rebuilds it.

The index is a planned change: :class:`SearchIndexStep` plans "build the search index of lead" when the
searchable fields of an entity change (a fingerprint in the revision), and builds it at apply.
"""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, func, select, text

from engine.dsl.model import JSON_COLUMN, Entity, Field, Workspace
from engine.dsl.search import search_fields

STEP = "search_index"
PREFIX = "crm_search_"
VOCAB_PREFIX = "crm_searchvocab_"
#: what :func:`build` makes today: 2 -- values end in two END characters, and a vocabulary table
LAYOUT = 2
#: the end of a value in the index (the unit separator, not text anyone types)
END = "\x1f"
_TRIGGERS = ("ai", "au", "ad")


def fts_name(entity: Entity) -> str:
    """The FTS5 table of ``entity``."""
    return f"{PREFIX}{entity.table_name}"


def vocab_name(entity: Entity) -> str:
    """The ``fts5vocab`` table listing the trigrams of ``entity``'s index."""
    return f"{VOCAB_PREFIX}{entity.table_name}"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value(field: Field, row: str) -> str:
    """The SQL of the text indexed for ``field`` in trigger row ``new``/``old``: its value (a JSON-stored
    field extracted) and two END characters (NULL stays NULL)."""
    if field.storage == "json":
        value = f"json_extract({row}.{_q(JSON_COLUMN)}, '$.{field.column_name}')"
    else:
        value = f"{row}.{_q(field.column_name)}"
    return f"({value} || char(31, 31))"


def ddl(entity: Entity) -> list[str]:
    """The statements creating ``entity``'s FTS table and triggers (none without searchable fields)."""
    fields = search_fields(entity)
    if not fields:
        return []
    fts, table = _q(fts_name(entity)), _q(entity.table_name)
    cols = ", ".join(_q(f.name) for f in fields)
    new_values = ", ".join(_value(f, "new") for f in fields)
    insert = f"INSERT INTO {fts} (rowid, {cols}) VALUES (new.id, {new_values});"
    delete = f"DELETE FROM {fts} WHERE rowid = old.id;"
    watched = sorted({JSON_COLUMN if f.storage == "json" else f.column_name for f in fields})
    of = ", ".join(_q(c) for c in watched)
    name = fts_name(entity)
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5({cols}, tokenize = 'trigram')",
        f"CREATE TRIGGER {_q(name + '_ai')} AFTER INSERT ON {table} BEGIN {insert} END",
        f"CREATE TRIGGER {_q(name + '_au')} AFTER UPDATE OF {of} ON {table} BEGIN {delete} {insert} END",
        f"CREATE TRIGGER {_q(name + '_ad')} AFTER DELETE ON {table} BEGIN {delete} END",
        f"CREATE VIRTUAL TABLE {_q(vocab_name(entity))} USING fts5vocab({fts}, 'row')",
    ]


def drop(conn: Connection, entity: Entity) -> None:
    """Drop ``entity``'s FTS table and triggers, if there."""
    name = fts_name(entity)
    for suffix in _TRIGGERS:
        conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {_q(name + '_' + suffix)}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_q(vocab_name(entity))}")
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_q(name)}")


def build(conn: Connection, entity: Entity) -> int:
    """(Re)build ``entity``'s index from its table, in the caller's transaction; returns the rows indexed."""
    drop(conn, entity)
    statements = ddl(entity)
    if not statements:
        return 0
    fields = search_fields(entity)
    conn.exec_driver_sql(statements[0])
    cols = ", ".join(_q(f.name) for f in fields)
    values = ", ".join(_value(f, "t") for f in fields)
    conn.exec_driver_sql(f"INSERT INTO {_q(fts_name(entity))} (rowid, {cols}) "
                         f"SELECT t.id, {values} FROM {_q(entity.table_name)} AS t")
    for sql in statements[1:]:
        conn.exec_driver_sql(sql)
    return int(conn.execute(text(f"SELECT count(*) FROM {_q(fts_name(entity))}")).scalar_one())


def layout(conn: Connection, entity: Entity) -> int:
    """The layout of ``entity``'s index: 0 none (a database applied before search came), 1 values as they
    are and no vocabulary, :data:`LAYOUT` as :func:`build` makes it today."""
    names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                                             "(:f, :v)"), {"f": fts_name(entity), "v": vocab_name(entity)})}
    if fts_name(entity) not in names:
        return 0
    return LAYOUT if vocab_name(entity) in names else 1


def expansion(conn: Connection, entity: Entity, piece: str, most: int) -> list[str] | None:
    """The trigrams of ``entity``'s index (layout 2) that start with ``piece`` (one or two characters,
    folded as the index folds: lower case), at most ``most`` of them; None when there are more."""
    low = piece.lower()
    stmt = text(f"SELECT term FROM {_q(vocab_name(entity))} WHERE term BETWEEN :lo AND :hi LIMIT :n")
    hi = low + chr(0x10FFFF) * (3 - len(low))  # every trigram starting with low sorts between (code points)
    terms = [t for (t,) in conn.execute(stmt, {"lo": low, "hi": hi, "n": most + 1})]
    return terms if len(terms) <= most else None


def fingerprint(entity: Entity) -> str:
    """What the index of ``entity`` depends on: its table, each searchable field's storage and the layout
    (a new layout rebuilds the indexes of databases built before it)."""
    spec: list[Any] = [entity.table_name, *((f.name, f.type, f.storage, f.column_name) for f in search_fields(entity))]
    spec.append(("layout", LAYOUT))
    return hashlib.sha256(repr(spec).encode()).hexdigest()[:32]


class SearchIndexStep:
    """Plans and builds the SQLite search indexes (see the module docstring); nothing on PostgreSQL."""

    name = STEP

    def fingerprints(self, workspace: Workspace) -> dict[str, str]:
        return {f"search/{name}": fingerprint(e) for name, e in workspace.entities.items()
                if e.parent is None and search_fields(e)}

    def plan(self, pctx: Any) -> list[Any]:
        from engine.runtime.schema.model import Change

        if pctx.dialect != "sqlite":
            return []
        new = self.fingerprints(pctx.new)
        present = self._present(pctx)
        out = []
        for key, fp in new.items():
            entity = pctx.new.entities[key.partition("/")[2]]
            if pctx.old_fingerprints.get(key) == fp and not self._lacking(pctx, entity, present):
                continue
            fields = ", ".join(f.name for f in search_fields(entity))
            out.append(Change("feature_data", entity.name, f"build the search index of {entity.name}",
                              rows=self._rows(pctx, entity.name), note=f"searchable: {fields}",
                              details={"step": STEP, "entity": entity.name}))
        for key in pctx.old_fingerprints:
            name = key.partition("/")[2]
            if key.startswith("search/") and key not in new and name in pctx.new.entities:
                out.append(Change("feature_data", name, f"drop the search index of {name}",
                                  note="no searchable fields", details={"step": STEP, "entity": name}))
        return out

    @staticmethod
    def _present(pctx: Any) -> frozenset[str]:
        """The tables and triggers the database holds (read once per plan; none without a database)."""
        if pctx.conn is None:
            return frozenset()
        return frozenset(r[0] for r in pctx.conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')"))

    @staticmethod
    def _lacking(pctx: Any, entity: Entity, present: frozenset[str]) -> bool:
        """Whether the database lacks a piece of the index the revision says it has (its table, vocabulary or a
        trigger dropped by hand): without a trigger writes would skip the index, without the table fail."""
        if pctx.conn is None or pctx.old is None or entity.name not in pctx.old.entities:
            return False
        name = fts_name(entity)
        return not {name, vocab_name(entity), *(f"{name}_{suffix}" for suffix in _TRIGGERS)} <= present

    @staticmethod
    def _rows(pctx: Any, entity: str) -> int | None:
        if not pctx.holds(entity):
            return None
        t = pctx.new_schema.tables[entity]
        return int(pctx.conn.execute(select(func.count()).select_from(t)).scalar_one())

    def apply(self, actx: Any, change: Any) -> None:
        if actx.conn.dialect.name != "sqlite":
            return
        entity = actx.workspace.entities[change.details["entity"]]
        actx.done[f"search/{entity.name}"] = build(actx.conn, entity)


def plan_steps(workspace: Workspace) -> list[Any]:
    return [SearchIndexStep()]
