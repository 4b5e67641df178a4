"""Plan: diff the database's current state against a new workspace.

``plan(old, new, conn)`` returns a :class:`Plan`: an ordered tuple of
:class:`Change` (see :data:`KIND_ORDER`), each marked safe / destructive /
blocked, with affected row counts queried through ``conn``.

The rules (docs/plan-apply.md has the long form):

* adding an entity, a field or an index is safe;
* a field with ``renamed_from`` renames the old one, keeping its data;
* a field that disappears is *retired*: its column (or JSON key) is kept and
  hidden; a removed entity is retired the same way (its table is kept);
* ``purge=True`` drops retired fields (destructive) after exporting them;
* narrowing a type or length, and removing a picklist option rows use, is
  blocked unless the data fits (or a ``replace`` mapping says where rows go);
* moving a field between a column and the JSON column copies its values;
* indexes follow :func:`engine.runtime.storage.entity_indexes`;
* after every schema change come the plan steps' data changes (``feature_data``, e.g. rescoring when
  scoring rules changed: :mod:`engine.runtime.schema.features`).

Planning reads only; it never changes the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from sqlalchemy import Connection, MetaData
from sqlalchemy.schema import CreateIndex

from engine.dsl.model import Entity, Field, Workspace, frozen_map
from engine.runtime.db import sql_dialect
from engine.runtime.schema import features
from engine.runtime.schema import field_rules as rules
from engine.runtime.schema.model import KIND_ORDER, Change, Plan, format_plan
from engine.runtime.schema.probes import PlanContext
from engine.runtime.schema.snapshot import DbState, state_of
from engine.runtime.storage import entity_indexes, entity_table
from engine.wording import agreeing, counted

__all__ = ["Change", "DbState", "Plan", "format_plan", "plan", "plan_from_state"]


def plan(
    old: Workspace | None,
    new: Workspace,
    conn: Connection | None,
    *,
    purge: bool = False,
    export_dir: Path | str | None = None,
    dialect: str | None = None,
) -> Plan:
    """The ordered changes that turn a database holding ``old`` into one holding ``new``.

    ``old`` None means an empty database.  ``conn`` (None for an empty
    database) is only read, to count the rows a change hits.  ``dialect``
    defaults to the connection's, else "sqlite".
    """
    before = None
    if old is not None:
        before = replace(state_of(old), fingerprints=frozen_map(
            features.fingerprints_of(features.plan_steps(old), old)))
    return plan_from_state(before, new, conn, purge=purge, export_dir=export_dir, dialect=dialect)


def plan_from_state(
    old: DbState | None,
    new: Workspace,
    conn: Connection | None,
    *,
    purge: bool = False,
    export_dir: Path | str | None = None,
    dialect: str | None = None,
) -> Plan:
    """Like :func:`plan`, from a :class:`DbState` (e.g. a revision's schema snapshot)."""
    name = dialect or (conn.dialect.name if conn is not None else "sqlite")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    ctx = PlanContext.build(conn, old, name, purge=purge,
                            export_dir=Path(export_dir) if export_dir is not None else None, stamp=stamp)
    changes, result = _diff_entities(ctx, old or DbState(), new)
    data_changes, fingerprints = features.feature_changes(conn, name, old, new)
    changes.extend(data_changes)
    result = replace(result, fingerprints=fingerprints)
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    ordered = sorted(changes, key=lambda c: order[c.kind])  # stable: keeps entity order within a kind
    return Plan(changes=tuple(ordered), old=old, result=result, new=new, dialect=name)


# --------------------------------------------------------------------------- entities


def _creation_order(entities: Mapping[str, Entity]) -> list[Entity]:
    """Entities with the ones they reference (or are children of) first."""
    done: dict[str, Entity] = {}

    def visit(e: Entity, path: tuple[str, ...]) -> None:
        if e.name in done or e.name in path:
            return
        deps = [f.reference for f in e.fields.values() if f.type == "reference" and f.reference]
        deps += [e.parent.entity] if e.parent else []
        for dep in deps:
            if dep in entities:
                visit(entities[dep], (*path, e.name))
        done[e.name] = e

    for entity in entities.values():
        visit(entity, ())
    return list(done.values())


def _diff_entities(ctx: PlanContext, old: DbState, new: Workspace) -> tuple[list[Change], DbState]:
    changes: list[Change] = []
    live: dict[str, Entity] = {}
    present = _present_indexes(ctx)
    for n in _creation_order(new.entities):
        before = old.entities.get(n.name) or old.retired_entities.get(n.name)
        if before is None:
            changes.append(Change("create_table", n.name, f"create table {n.name}",
                                  note=counted(len(n.fields), "field")))
            live[n.name] = n
        else:
            if n.name in old.retired_entities:
                changes.append(_entity_change(ctx, "unretire_entity", n.name, "bring back retired entity",
                                              "get their data back"))
            entity_changes, live[n.name] = _diff_entity(ctx, before, n)
            changes.extend(entity_changes)
        changes.extend(_index_changes(ctx, before, live[n.name], present))
    retired = {k: e for k, e in old.retired_entities.items() if k not in new.entities}
    for name, entity in old.entities.items():
        if name not in new.entities:
            changes.append(_entity_change(ctx, "retire_entity", name, "retire entity", "keep their data"))
            retired[name] = entity
    return changes, DbState(entities=frozen_map(live), retired_entities=frozen_map(retired))


def _entity_change(ctx: PlanContext, kind: str, name: str, verb: str, outcome: str) -> Change:
    rows = ctx.count(name)
    return Change(kind, name, f"{verb} {name}", rows=rows, note=f"{agreeing(rows, 'row', outcome)}; table kept")


def _diff_entity(ctx: PlanContext, old: Entity, new: Entity) -> tuple[list[Change], Entity]:
    """Field changes of an entity present before and after; and the entity as the DB will hold it."""
    changes: list[Change] = []
    consumed: set[str] = set()
    former: dict[str, tuple[str, ...]] = {}
    for f in new.fields.values():
        if f.stored:
            changes.extend(_new_field(ctx, old, new, f, consumed, former))
    retired: dict[str, Field] = {}
    for g in [*old.fields.values(), *old.retired.values()]:
        if g.name in consumed or not g.stored:
            continue
        if ctx.purge:
            changes.append(rules.purge_field(ctx, old.name, g))
            if changes[-1].safety == "blocked":
                retired[g.name] = g
        else:
            if g.name in old.fields:
                changes.append(rules.retire_field(ctx, old.name, g))
            retired[g.name] = g
    fields = {n: replace(f, former_names=former[n]) if former.get(n) else f for n, f in new.fields.items()}
    return _rename_hints(changes, old, new), replace(new, fields=frozen_map(fields), retired=frozen_map(retired))


def _new_field(ctx: PlanContext, old: Entity, new: Entity, f: Field, consumed: set[str],
               former: dict[str, tuple[str, ...]]) -> list[Change]:
    """Changes for configured field ``f`` of an existing entity; marks the old fields it takes over and
    records the names ``f`` had before (``former``)."""
    ent = new.name
    source = f.renamed_from
    if source is not None and f.name in old.fields and source in old.fields and source not in new.fields:
        consumed.update((f.name, source))  # both stay as they are: the plan is blocked
        return [rules.blocked_rename_onto_live(ctx, ent, old.fields[source], old.fields[f.name])]
    if f.name in old.fields:
        consumed.add(f.name)
        former[f.name] = old.fields[f.name].former_names
        return [*rules.field_changes(ctx, ent, old.fields[f.name], f),
                *rules.require_changes(ctx, ent, old.fields[f.name], f)]
    prior = (old.fields.get(source) or old.retired.get(source)) if source else None
    if prior is None and f.name not in old.retired:
        prior = _renamed_away(old, new, f)  # a rollback of a rename: rename back, keeping the data
    if prior is not None and prior.name not in new.fields:
        consumed.add(prior.name)
        if f.name in old.retired:
            consumed.add(f.name)  # it stays retired: the plan is blocked
            return [rules.blocked_rename_onto_retired(ctx, ent, prior, old.retired[f.name], f)]
        former[f.name] = tuple(n for n in (*prior.former_names, prior.name) if n != f.name)
        return [rules.rename_field(ctx, ent, prior, f), *rules.field_changes(ctx, ent, prior, f),
                *rules.require_changes(ctx, ent, prior, f)]
    if f.name in old.retired:
        consumed.add(f.name)
        prior = old.retired[f.name]
        former[f.name] = prior.former_names
        return [rules.unretire_field(ctx, ent, prior), *rules.field_changes(ctx, ent, prior, f),
                *rules.require_changes(ctx, ent, prior, f)]
    if source:
        return [rules.blocked_rename(ent, f)]
    return [rules.add_field(ent, f), *rules.require_changes(ctx, ent, None, f)]


def _renamed_away(old: Entity, new: Entity, f: Field) -> Field | None:
    """The live field ``f`` was renamed to (``f.name`` is among its former names) and that the new
    configuration no longer has: rolling back a rename renames it back."""
    for g in old.fields.values():
        if f.name in g.former_names and g.name not in new.fields and g.type == f.type:
            return g
    return None


def _rename_hints(changes: list[Change], old: Entity, new: Entity) -> list[Change]:
    """A field retired and one of the same type added on the same entity: perhaps a rename was meant."""
    retired = [c for c in changes if c.kind == "retire_column"]
    out = []
    for c in changes:
        if c.kind in ("add_column", "add_json_field") and c.field is not None:
            added = new.fields[c.field]
            same = [r for r in retired if r.field is not None and old.fields[r.field].type == added.type]
            if same:
                gone = same[0].field
                note = f"did you mean renamed_from: {gone}? without it {gone} is retired with its data and " \
                       f"{c.field} starts empty"
                c = replace(c, note=f"{c.note}; {note}" if c.note else note)
        out.append(c)
    return out


# --------------------------------------------------------------------------- indexes


def _index_sigs(entity: Entity, dialect: str) -> dict[str, str]:
    """Index name -> its CREATE INDEX text, as :func:`entity_indexes` defines them.

    The table is built alone on a MetaData of its own: an index's text needs no other table, and copying
    the engine tables for each entity made this most of a plan's time."""
    table = entity_table(MetaData(), entity)
    entity_indexes(table, entity, dialect)
    d = sql_dialect(dialect)
    indexes = sorted((ix for ix in table.indexes if ix.name), key=lambda ix: str(ix.name))
    return {str(ix.name): str(CreateIndex(ix).compile(dialect=d)) for ix in indexes}  # a set: sorted, plans repeat


def _present_indexes(ctx: PlanContext) -> frozenset[str] | None:
    """The names of the indexes the database holds (None without one).  The indexes of the active revision
    are worked out again by this engine, so an index a newer engine defines (or one dropped by hand) would
    seem to be there: it is planned only when the database lacks it."""
    if ctx.conn is None:
        return None
    if ctx.dialect == "postgresql":
        sql = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND name IS NOT NULL"
    return frozenset(str(r[0]) for r in ctx.conn.exec_driver_sql(sql))


def _index_changes(ctx: PlanContext, old: Entity | None, new: Entity,
                   present: frozenset[str] | None = None) -> list[Change]:
    """Drops for indexes that went away or changed; creates for new or changed ones (and for those the
    database lacks: :func:`_present_indexes`)."""
    before = _index_sigs(old, ctx.dialect) if old is not None else {}
    if present is not None:
        before = {name: sig for name, sig in before.items() if name in present}
    after = _index_sigs(new, ctx.dialect)
    out = [Change("drop_index", new.name, f"drop index {name} on {new.name}", details={"index": name})
           for name, sig in before.items() if after.get(name) != sig]
    out += [Change("add_index", new.name, f"add index {name} on {new.name}", details={"index": name})
            for name, sig in after.items() if before.get(name) != sig]
    return out
