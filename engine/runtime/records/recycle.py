"""The recycle bin: who sees deleted records, restoring without a unique clash, and purging for good.

A delete is soft (``deleted_at`` is set; docs/recycle-bin.md): the record leaves every read, its unique
values are free again, its history stays.  This module holds what the record service needs beyond that:

* :func:`bin_access` -- deleted records are shown to whoever may delete (and so restore) them: the row
  scope is the narrower of the caller's ``read`` and ``delete`` scopes;
* :func:`check_restore` -- a restore is refused (:class:`~engine.errors.RestoreClash`, 409) when a live
  record took one of the record's unique values since, naming the field and that record, before the
  database's unique index would refuse it without saying which record holds the value;
* :func:`purge_deleted` -- records deleted before a moment are written to a JSON-lines export file, then
  deleted for good (with their lines), each with a ``purge`` audit row.  A record another row still
  refers to (a deleted contact's account) is kept and reported, never cascaded or nulled behind the
  pipeline's back; it goes once the rows referring to it are gone (the same run purges in passes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.sql.elements import ColumnElement

from engine.errors import Conflict, PermissionDenied, RestoreClash
from engine.runtime.audit import json_form
from engine.runtime.records import journal, output, rows
from engine.runtime.records.pipeline import open_entity
from engine.runtime.records.undo import undone_if
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.security import SCOPE_RANK, Access
from engine.wording import counted

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

#: records read, exported and deleted per statement
PURGE_CHUNK = 500


def bin_access(entity: str, access: Access) -> Access:
    """``access`` for reading deleted records: needs delete permission; row scope = narrower of read and delete."""
    if access.delete == "none":
        raise PermissionDenied(f"you may not see deleted {entity} records", code="forbidden",
                               hint="the recycle bin shows the records you may delete and restore; "
                                    "ask an administrator for a role that grants delete")
    read = access.read if SCOPE_RANK[access.read] <= SCOPE_RANK[access.delete] else access.delete
    return dataclasses.replace(access, read=read)


# --------------------------------------------------------------------------- restore


def check_restore(uow: UnitOfWork, plan: EntityPlan, record: Mapping[str, Any]) -> None:
    """RestoreClash if a live record now holds one of ``record``'s unique values (fields or unique indexes)."""
    t = plan.table
    clashes: list[dict[str, Any]] = []
    for names in _unique_keys(plan):
        values = [record.get(n) for n in names]
        if any(v is None for v in values):  # null never clashes in a unique index
            continue
        match = and_(*[_expr(uow, plan, n) == v for n, v in zip(names, values, strict=True)])
        other = uow.conn.execute(select(t.c.id).where(t.c.deleted_at.is_(None), t.c.id != record["id"], match)
                                 .order_by(t.c.id).limit(1)).scalar()
        if other is not None:
            clashes.append({"fields": list(names), "record_id": int(other)})
    if not clashes:
        return
    first = clashes[0]
    what = " and ".join(first["fields"])
    raise RestoreClash(
        f"cannot restore {plan.name} {record['id']}: {plan.name} {first['record_id']} has taken its {what} "
        f"since it was deleted", code="restore_clash",
        hint=f"change the {what} of {plan.name} {first['record_id']} (or delete it), then restore again",
        details={"clashes": clashes, **{f: [f"already used by {plan.name} {c['record_id']}"]
                                         for c in clashes for f in c["fields"]}})


def _unique_keys(plan: EntityPlan) -> list[tuple[str, ...]]:
    keys: list[tuple[str, ...]] = [(f.name,) for f in plan.uniques]
    keys += [tuple(p.lstrip("-") for p in spec.fields) for spec in plan.entity.indexes if spec.unique]
    return keys


def _expr(uow: UnitOfWork, plan: EntityPlan, name: str) -> ColumnElement[Any]:
    return uow.schema.field_expr(plan.name, name) if name in plan.entity.fields else plan.table.c[name]


# --------------------------------------------------------------------------- purge


@dataclass(frozen=True, slots=True)
class PurgeOutcome:
    """What a purge did to one entity: records deleted for good, records kept because rows still refer to
    them (and which references), the export file (None when nothing was exported)."""

    entity: str
    purged: int
    kept: int
    kept_by: tuple[str, ...]
    export: Path | None

    def describe(self) -> str:
        """One line for the command line."""
        text = f"{self.entity}: {counted(self.purged, 'record')} purged"
        if self.export is not None:
            text += f" (exported to {self.export} first)"
        if self.kept:
            text += f"; {counted(self.kept, 'record')} kept, still referred to by {', '.join(self.kept_by)}"
        return text


def purge_deleted(uow: UnitOfWork, *, before: dt.datetime, entity: str | None, export_dir: Path,
                  stamp: str, dry_run: bool = False) -> list[PurgeOutcome]:
    """Delete for good the records (of ``entity``, default: every entity) soft-deleted before ``before``.

    Administrators only.  Each record is first written, with its lines, as one JSON object per line to
    ``<export_dir>/<entity>.deleted.<stamp>.jsonl`` (never overwritten: Conflict ``export_exists``);
    ``dry_run`` counts what would go and writes nothing.
    """
    if not uow.actor.is_admin:
        raise PermissionDenied("only an administrator may purge deleted records", code="forbidden")
    plans = _plans(uow, entity)
    refs = _references(uow)
    purged = {p.name: 0 for p in plans}
    paths: dict[str, Path] = {}
    with ExitStack() as files, undone_if(uow, dry_run):
        outs: dict[str, IO[str]] = {}
        progress = True
        while progress:  # a record referred to by a purged one goes in a later pass
            progress = False
            for plan in plans:
                while ids := _purgeable(uow, plan, refs.get(plan.name, ()), before):
                    if not dry_run:
                        if plan.name not in outs:
                            paths[plan.name] = export_dir / f"{plan.name}.deleted.{stamp}.jsonl"
                            outs[plan.name] = files.enter_context(_export_file(paths[plan.name]))
                        _export(outs[plan.name], _records(uow, plan, ids))
                    _delete(uow, plan, ids)
                    purged[plan.name] += len(ids)
                    progress = True
        kept = {p.name: _kept(uow, p, refs.get(p.name, ()), before) for p in plans}
    return [PurgeOutcome(p.name, purged[p.name], kept[p.name][0], kept[p.name][1], paths.get(p.name))
            for p in plans]


def _plans(uow: UnitOfWork, entity: str | None) -> list[EntityPlan]:
    if entity is not None:
        plan, _access = open_entity(uow, entity, "delete")  # NotFound with a hint; BadRequest for lines
        return [plan]
    uow.require_writable()
    return [p for p in uow.state.plans.values() if not p.is_child]


Reference = tuple[Any, ColumnElement[Any], str]
"""(referring table, its column holding the id, ``entity.field`` for messages)."""


def _references(uow: UnitOfWork) -> dict[str, list[Reference]]:
    """target entity -> every reference field of any entity (lines included) pointing at it."""
    out: dict[str, list[Reference]] = {}
    for plan in uow.state.plans.values():
        for name, target in plan.references.items():
            if target in uow.state.plans:
                out.setdefault(target, []).append((plan.table, _expr(uow, plan, name), f"{plan.name}.{name}"))
    return out


def _old_deleted(plan: EntityPlan, before: dt.datetime) -> ColumnElement[bool]:
    t = plan.table
    return and_(t.c.deleted_at.is_not(None), t.c.deleted_at < before)


def _referred(plan: EntityPlan, ref: Reference) -> ColumnElement[bool]:
    table, col, _label = ref
    return exists().where(col == plan.table.c.id).select_from(table)


def _purgeable(uow: UnitOfWork, plan: EntityPlan, refs: Sequence[Reference], before: dt.datetime) -> list[int]:
    t = plan.table
    stmt = select(t.c.id).where(_old_deleted(plan, before), *[~_referred(plan, r) for r in refs])
    return [int(i) for i in uow.conn.execute(stmt.order_by(t.c.id).limit(PURGE_CHUNK)).scalars()]


def _kept(uow: UnitOfWork, plan: EntityPlan, refs: Sequence[Reference], before: dt.datetime
          ) -> tuple[int, tuple[str, ...]]:
    t = plan.table
    count = uow.conn.execute(select(func.count()).select_from(t).where(_old_deleted(plan, before))).scalar_one()
    if not count:
        return 0, ()
    by = tuple(r[2] for r in refs if uow.conn.execute(
        select(t.c.id).where(_old_deleted(plan, before), _referred(plan, r)).limit(1)).first() is not None)
    return int(count), by


def _records(uow: UnitOfWork, plan: EntityPlan, ids: Sequence[int]) -> list[dict[str, Any]]:
    t = plan.table
    found = [rows.read(plan.readers, r._mapping) for r in uow.conn.execute(
        select(t).where(t.c.id.in_(ids)).order_by(t.c.id))]
    output.attach_lines(uow, plan, found, tuple(plan.lines))
    return found


def _delete(uow: UnitOfWork, plan: EntityPlan, ids: Sequence[int]) -> None:
    for child_name in plan.lines.values():
        child = uow.state.plan(child_name).table
        uow.conn.execute(delete(child).where(child.c.parent_id.in_(ids)))
    t = plan.table
    uow.conn.execute(delete(t).where(t.c.id.in_(ids), t.c.deleted_at.is_not(None)))
    journal.write(uow, uow.clock.now(), (journal.event(plan.name, rid, "purge") for rid in ids))


@contextmanager
def _export_file(path: Path) -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        out = path.open("x", encoding="utf-8")
    except FileExistsError as e:
        raise Conflict(f"the purge export file {path} already exists", code="export_exists",
                       hint="move the earlier export away or choose another export folder") from e
    with out:
        yield out


def _export(out: IO[str], records: Sequence[Mapping[str, Any]]) -> None:
    for record in records:
        out.write(json.dumps({k: _jsonable(v) for k, v in record.items()}, ensure_ascii=False) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [{k: _jsonable(v) for k, v in line.items()} if isinstance(line, Mapping) else _jsonable(line)
                for line in value]
    return json_form(value)

