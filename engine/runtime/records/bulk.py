"""Bulk variants of create and update: the same pipeline, set-based where the rules allow.

``create_many`` validates every row in Python (coercion, defaults, formulas,
rules, steps), checks references in batches, reserves ids and auto numbers
in one go, then inserts with one executemany without RETURNING (the fast
path on both databases; see notes/perf-baselines.md).

``update_many`` is one UPDATE over the matching ids when nothing per-record
must run (no rules, formulas, lines or steps, no unique or JSON-stored field
among the values); otherwise it updates record by record through the normal
pipeline.  ``delete_many`` soft-deletes record by record through the normal
delete.  All write the same audit rows and events as the single-record path.

The records a filter reaches (:func:`matching`) are the live ones the actor may
read *and* update (or delete), with the same mask rule as a list: a filter on a
field masked in a row leaves that row out, so a bulk write cannot probe it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError

from engine.errors import BadRequest, RecordError, ValidationFailed
from engine.runtime.records import fastsql, journal, listing, persist, query, rows
from engine.runtime.records.pipeline import WritePipeline, open_entity
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.security import Access
from engine.wording import agreeing

if TYPE_CHECKING:
    from engine.runtime.records.service import RecordService
    from engine.runtime.runtime import UnitOfWork

MAX_ERROR_ROWS = 50
CHUNK = 900


def insert_validated(p: WritePipeline, records: list[dict[str, Any]]) -> list[int]:
    """Stages 7-10 for records that passed stages 2-6: one executemany, then lines, audit, steps, events.

    Raises UniqueViolation / ValidationFailed / RecordError for the batch as a whole.
    """
    uow, plan = p.uow, p.plan
    p.prepare_insert(records)
    ids = persist.reserve_ids(uow, plan, len(records))
    stamp = {**p.stamp(create=True), "version": 1, "deleted_at": None}
    for rid, record in zip(ids, records, strict=True):
        record.update(stamp, id=rid)
    ins = fastsql.entity_insert(uow.state, uow.conn, plan)
    try:
        ins.run(uow.conn, fastsql.entity_rows(ins, plan, records, stamp))
    except IntegrityError as e:
        raise persist.integrity_error(plan, e) from e
    if plan.lines:
        for rid, record in zip(ids, records, strict=True):
            p.write_lines(rid, record, stamp, replace=False)
    snapshot = journal.snapshot_builder(plan)
    p.journal(journal.event(plan.name, rid, "create", snapshot(r)) for rid, r in zip(ids, records, strict=True))
    for rid, record in zip(ids, records, strict=True):
        p.after(record, None)
        p.emit("created", rid, record=record)
    return ids


def require_rows(rows_: Any) -> None:
    """BadRequest unless ``rows_`` is a list of records (a single mapping or a text is a mistake)."""
    if isinstance(rows_, (str, bytes, Mapping)):
        raise BadRequest("rows must be a list of records", code="bad_rows")


def require_values(values: Mapping[str, Any]) -> None:
    """BadRequest when a bulk update's ``values`` name no field: it would write nothing, yet count records."""
    if isinstance(values, Mapping) and not values:
        raise BadRequest("the body names no field to set, so no record would change", code="bad_request",
                         details={"body": ["names no field"]},
                         hint='send the fields to set on every matching record and their values, e.g. '
                              '{"status": "contacted"}')


def validated(p: WritePipeline, rows_: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every row through stages 2-6, then the batch through the steps' ``check_batch``; all problems of up to
    MAX_ERROR_ROWS rows reported together (a row a step refuses fails the call, named)."""
    out: list[dict[str, Any]] = []
    problems: dict[str, list[str]] = {}
    bad_rows = 0
    for i, values in enumerate(rows_):
        try:
            record = p.new_record(values)
        except ValidationFailed as e:  # every row is counted; the details of the first MAX_ERROR_ROWS kept
            bad_rows += 1
            if bad_rows <= MAX_ERROR_ROWS:
                problems.update({f"[{i}].{k}": v for k, v in (e.details or {}).items()})
            continue
        except RecordError as e:  # a step refused the row (a duplicate, a stage gate): say which row
            raise at_row(e, i) from None
        out.append(record)
    if problems:
        shown = f" (the first {MAX_ERROR_ROWS} shown)" if bad_rows > MAX_ERROR_ROWS else ""
        raise ValidationFailed(f"{agreeing(bad_rows, 'row', 'are invalid')}{shown}; nothing was created",
                               details=problems)
    refused = p.check_batch(list(enumerate(out)))  # a row clashing with an earlier one (a block dedupe rule)
    if refused:
        first = min(refused)
        raise at_row(refused[first], first)
    return out


def at_row(error: RecordError, index: int) -> RecordError:
    """``error`` (raised for the row at ``index`` of a batch) with the row in its message and details."""
    details = error.details if isinstance(error.details, Mapping) else ({"details": error.details}
                                                                         if error.details is not None else {})
    error.message = f"row {index}: {error.message}; nothing was created"
    error.details = {"row": index, **details}
    error.args = (error.message,)
    return error


def update_many(svc: RecordService, entity: str, filter_text: str | None, values: Mapping[str, Any], *,
                bypass_readonly: bool = False, audit_action: str = "update") -> int:
    """See :meth:`RecordService.update_many`."""
    require_values(values)
    uow = svc.uow
    p = WritePipeline(uow, entity, "update", bypass_readonly=bypass_readonly, bulk=True)
    plan, access = p.plan, p.access
    clean = p.coerced(values)
    stmt = matching(uow, plan, access, filter_text, "update", list(plan.table.c))
    if not _set_based_ok(p, clean):
        ids = [r.id for r in uow.conn.execute(stmt)]
        for rid in ids:
            svc.update(entity, rid, values, expected_version=None, bypass_readonly=bypass_readonly,
                       audit_action=audit_action)
        return len(ids)
    persist.check_references(uow, plan, [clean], [k for k in clean if k in plan.references or k == "owner_id"])
    olds = [rows.read(plan.readers, r._mapping) for r in uow.conn.execute(stmt.with_for_update())]
    return _update_set_based(p, olds, clean, audit_action)


def _set_based_ok(p: WritePipeline, clean: Mapping[str, Any]) -> bool:
    fields = p.plan.entity.fields
    touches = [fields[k] for k in clean if k in fields]
    return (p.plan.set_based_ok and not p.steps
            and not any(f.unique or f.storage == "json" for f in touches))


def _update_set_based(p: WritePipeline, olds: list[dict[str, Any]], clean: Mapping[str, Any],
                      audit_action: str) -> int:
    uow, plan = p.uow, p.plan
    stamp = p.stamp(create=False)
    cols, _ext = rows.split_columns(plan.storage, clean)
    t = plan.table
    ids = [o["id"] for o in olds]
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        uow.conn.execute(update(t).where(t.c.id.in_(chunk)).values(version=t.c.version + 1, **cols, **stamp))
    entries: list[journal.Entry] = []
    changes_of = []
    for old in olds:
        changes = {k: (old.get(k), v) for k, v in clean.items() if old.get(k) != v}
        entries += journal.changed(plan.name, old["id"], audit_action, changes)
        changes_of.append((old["id"], changes))
    p.journal(entries)
    for rid, changes in changes_of:
        p.emit("updated", rid, changes=changes)
    return len(olds)


def matching(uow: UnitOfWork, plan: EntityPlan, access: Access, filter_text: str | None, action: str,
             columns: Sequence[Any]) -> Select[Any]:
    """SELECT ``columns`` of the live records matching ``filter_text`` that the actor may read and
    ``action`` (update / delete), in id order.  BadRequest for a bad filter."""
    t = plan.table
    scope = uow.guard.scope_clause(t, getattr(access, action))
    where = listing.list_where(uow, plan, filter_text)
    return query.base_select(uow, plan, access, columns).where(query.where_all(*where, scope)).order_by(t.c.id)


def count_matching(svc: RecordService, entity: str, filter_text: str | None, action: str) -> int:
    """See :meth:`RecordService.count_matching`."""
    if action not in ("update", "delete"):
        raise ValueError(f"count_matching counts records to update or delete, not to {action}")
    plan, _read = open_entity(svc.uow, entity, "read")  # a dry run may count in a read-only unit
    access = svc.uow.guard.require(entity, action)
    stmt = matching(svc.uow, plan, access, filter_text, action, [plan.table.c.id]).order_by(None)
    return int(svc.uow.conn.execute(select_count(stmt)).scalar_one())


def select_count(stmt: Select[Any]) -> Select[Any]:
    """``SELECT count(*)`` over the rows of ``stmt``."""
    return select(func.count()).select_from(stmt.subquery())


def delete_many(svc: RecordService, entity: str, filter_text: str | None) -> int:
    """See :meth:`RecordService.delete_many`."""
    uow = svc.uow
    plan, access = open_entity(uow, entity, "delete")
    uow.require_writable()
    ids = [r.id for r in uow.conn.execute(matching(uow, plan, access, filter_text, "delete", [plan.table.c.id]))]
    for rid in ids:
        svc.delete(entity, rid)
    return len(ids)
