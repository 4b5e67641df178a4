"""Bulk variants of create and update: the same pipeline, set-based where the rules allow.

``create_many`` validates every row in Python (coercion, defaults, formulas,
rules, steps), checks references in batches, reserves ids and auto numbers
in one go, then inserts with one executemany without RETURNING (the fast
path on both databases; see notes/perf-baselines.md).

``update_many`` is one UPDATE over the matching ids when nothing per-record
must run (no rules, formulas, lines or steps, no unique or JSON-stored field
among the values); otherwise it updates record by record through the normal
pipeline.  Both write the same audit rows and events as the single-record path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from engine.errors import BadRequest, ValidationFailed
from engine.runtime import audit
from engine.runtime.records import fastsql, filtering, persist, query, rows
from engine.runtime.records.plan import EntityPlan
from engine.runtime.records.steps import DomainEvent
from engine.runtime.records.write import Writer, _raise

if TYPE_CHECKING:
    from engine.runtime.records.service import RecordService

MAX_ERROR_ROWS = 50
CHUNK = 900
AUDIT_NEW = fastsql.AUDIT_COLUMNS.index("new_value")


def create_many(svc: RecordService, entity: str, rows_: Sequence[Mapping[str, Any]], *,
                bypass_readonly: bool = False) -> list[int]:
    """See :meth:`RecordService.create_many`."""
    uow = svc.uow
    plan, access = svc._plan(entity, "create")
    if isinstance(rows_, (str, bytes, Mapping)):
        raise BadRequest("rows must be a list of records", code="bad_rows")
    records = _validated(Writer(uow, plan, access, "create", bypass_readonly=bypass_readonly, bulk=True), rows_)
    svc._prepare_insert(plan, records)
    ids = persist.reserve_ids(uow, plan, len(records))
    stamp = {**svc._stamp(create=True), "version": 1, "deleted_at": None}
    for rid, record in zip(ids, records, strict=True):
        record.update(stamp, id=rid)
    ins = fastsql.entity_insert(uow.state, uow.conn, plan)
    try:
        ins.run(uow.conn, fastsql.entity_rows(ins, plan, records, stamp))
    except IntegrityError as e:
        raise persist.integrity_error(plan, e) from e
    if plan.lines:
        for rid, record in zip(ids, records, strict=True):
            svc._write_lines(plan, rid, record, stamp, replace=False)
    _audit_created(svc, plan, ids, records, stamp["created_at"])
    return ids


def _validated(w: Writer, rows_: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every row through steps 2-6; all problems of up to MAX_ERROR_ROWS rows reported together."""
    out: list[dict[str, Any]] = []
    problems: dict[str, list[str]] = {}
    bad_rows = 0
    owner = w.uow.actor.user_id
    for i, values in enumerate(rows_):
        errors: dict[str, list[str]] = {}
        try:
            record = w.complete_new(w.coerce(values, errors), errors)
            record["owner_id"] = record.get("owner_id") or owner
            w.check(record, None, errors)
        except ValidationFailed as e:
            bad_rows += 1
            problems.update({f"[{i}].{k}": v for k, v in (e.details or {}).items()})
            if bad_rows >= MAX_ERROR_ROWS:
                break
            continue
        out.append(record)
    if problems:
        raise ValidationFailed(f"{bad_rows} row(s) are invalid; nothing was created", details=problems)
    return out


def _audit_created(svc: RecordService, plan: EntityPlan, ids: Sequence[int], records: Sequence[dict[str, Any]],
                   at: Any) -> None:
    """One ``create`` audit row per record (its value snapshot), in one executemany; then the events."""
    uow = svc.uow
    ins = fastsql.audit_insert(uow.state, uow.conn)
    p = ins.process
    head = (p("entity", plan.name),)
    tail = (p("action", "create"), p("field", None), p("old_value", None))
    stamp = (p("actor_id", uow.actor.user_id), p("at", at), p("revision_id", uow.state.revision_id))
    new_value = fastsql.audit_json(uow.conn, ins.processors[AUDIT_NEW])
    snapshot = fastsql.snapshot_builder(plan)
    ins.run(uow.conn, [(*head, rid, *tail, new_value(snapshot(r)), *stamp)
                       for rid, r in zip(ids, records, strict=True)])
    uid = uow.actor.user_id
    for rid, r in zip(ids, records, strict=True):
        uow.emit(DomainEvent("created", plan.name, rid, uid, at, record=r))


def update_many(svc: RecordService, entity: str, filter_text: str | None, values: Mapping[str, Any], *,
                bypass_readonly: bool = False, audit_action: str = "update") -> int:
    """See :meth:`RecordService.update_many`."""
    uow = svc.uow
    plan, access = svc._plan(entity, "update")
    w = Writer(uow, plan, access, "update", bypass_readonly=bypass_readonly, bulk=True)
    errors: dict[str, list[str]] = {}
    clean = w.coerce(values, errors)
    w._required(clean, [k for k in plan.required_order if k in clean], errors, "")
    _raise(errors, plan.name)
    where = filtering.filter_where(uow, plan, filter_text)
    t = plan.table
    scope = uow.guard.scope_clause(t, access.update)
    stmt = query.base_select(uow, plan, access, list(t.c)).where(query.where_all(where, scope)).order_by(t.c.id)
    if not _set_based_ok(svc, plan, clean):
        ids = [r.id for r in uow.conn.execute(stmt)]
        for rid in ids:
            svc.update(entity, rid, values, expected_version=None, bypass_readonly=bypass_readonly,
                       audit_action=audit_action)
        return len(ids)
    persist.check_references(uow, plan, [clean], [k for k in clean if k in plan.references or k == "owner_id"])
    olds = [rows.read(plan.readers, r._mapping) for r in uow.conn.execute(stmt.with_for_update())]
    return _update_set_based(svc, plan, olds, clean, audit_action)


def _set_based_ok(svc: RecordService, plan: Any, clean: Mapping[str, Any]) -> bool:
    fields = plan.entity.fields
    touches = [fields[k] for k in clean if k in fields]
    return (plan.set_based_ok and not svc.uow.write_steps(plan.name)
            and not any(f.unique or f.storage == "json" for f in touches))


def _update_set_based(svc: RecordService, plan: Any, olds: list[dict[str, Any]], clean: Mapping[str, Any],
                      audit_action: str) -> int:
    uow = svc.uow
    stamp = svc._stamp(create=False)
    cols, _ext = rows.split_columns(plan.storage, clean)
    t = plan.table
    ids = [o["id"] for o in olds]
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        uow.conn.execute(update(t).where(t.c.id.in_(chunk)).values(version=t.c.version + 1, **cols, **stamp))
    at = stamp["updated_at"]
    audit_rows = []
    for old in olds:
        changes = {k: (old.get(k), v) for k, v in clean.items() if old.get(k) != v}
        audit_rows += audit.change_rows(plan.name, old["id"], audit_action, changes, svc._audit_stamp(at))
        uow.emit(DomainEvent("updated", plan.name, old["id"], uow.actor.user_id, at, changes, None))
    audit.write(uow.conn, audit_rows)
    return len(olds)
