"""The record service: the one write path and the one read path for records.

Used alike by the REST API, the admin UI, imports, bulk operations and
workflows.  Writes run the pipeline in this fixed order (docs/records.md):

1. permission check (entity action + row scope);
2. coercion and type validation per field (unknown, read-only, wrong type,
   too long, below min, not an option...);
3. defaults (literal and expression), then the required check;
4. formulas (recomputed on every write, in dependency order);
5. validation rules (entity checks; message in the workspace locale and English);
6. extension steps (the runtime's :class:`~engine.runtime.records.steps.StepRegistry`);
7. persist with a version check (references checked, auto numbers taken);
8. field-level audit rows;
9. domain events, delivered after commit by the unit of work.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select

from engine.errors import BadRequest, NotFound, PermissionDenied, VersionConflict
from engine.runtime import audit, rawsql
from engine.runtime.records import journal, listing, masking, output, persist, query, recycle, rows
from engine.runtime.records.pipeline import WritePipeline, open_entity
from engine.runtime.records.steps import Action
from engine.runtime.records.undo import undone_if
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.security import Access

if TYPE_CHECKING:
    from engine.runtime.records.rowwise import BulkOutcome
    from engine.runtime.runtime import UnitOfWork


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: ``next_cursor`` is None on the last page; ``total`` only when counted."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None = None


class RecordService:
    """Record operations inside one unit of work (its actor, clock and transaction)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    # ------------------------------------------------------------------ plumbing

    def _load(self, plan: EntityPlan, access: Access, record_id: Any, *, action: str,
              deleted: bool = False) -> tuple[Any, dict[str, Any]]:
        """The row and full record of ``record_id`` if the actor may read it and ``action`` it."""
        if isinstance(record_id, bool) or not isinstance(record_id, int):
            raise NotFound(f"{plan.name} {record_id!r} not found", code="not_found")
        t = plan.table
        lock = action != "read"
        scope = self.uow.guard.scope_clause(t, access.read)
        if scope is None:  # the statement without a row scope is built once per entity
            prepared = self.uow.state.memo("load_record", (plan.name, deleted, lock),
                                           lambda: rawsql.Query(_load_stmt(t, deleted, lock)))
            row = prepared.first(self.uow.conn, {"b_id": record_id})
        else:
            stmt = select(t).where(t.c.id == record_id, t.c.deleted_at.is_not(None) if deleted else
                                   t.c.deleted_at.is_(None), scope)
            row = self.uow.conn.execute(stmt.with_for_update() if lock else stmt).first()
        if row is None:
            raise NotFound(f"{plan.name} {record_id} not found", code="not_found")
        scope_name = getattr(access, action) if action in ("update", "delete") else access.read
        if not self.uow.guard.allows(scope_name, row.owner_id):
            raise PermissionDenied(f"you may not {action} this {plan.name}", code="forbidden")
        record = rows.read(plan.readers, row._mapping)
        output.attach_lines(self.uow, plan, [record], tuple(plan.lines))
        return row, record

    def _out(self, plan: EntityPlan, access: Access, record: Mapping[str, Any]) -> dict[str, Any]:
        keys = self.uow.state.memo("visible_keys", (plan.name, access), lambda: output.visible_keys(plan, access))
        out = {k: record.get(k) for k in keys}
        masking.apply(self.uow, plan.name, [out])
        return out

    # ------------------------------------------------------------------ create

    def create(self, entity: str, values: Mapping[str, Any], *, bypass_readonly: bool = False) -> dict[str, Any]:
        """Create one record through the whole pipeline; returns it as the actor sees it.

        Raises PermissionDenied, ValidationFailed (details: field -> messages),
        UniqueViolation (details name the field).  ``bypass_readonly`` lets
        engine-internal callers set read-only fields.
        """
        p = WritePipeline(self.uow, entity, "create", bypass_readonly=bypass_readonly)
        plan = p.plan
        record = p.new_record(values)
        p.prepare_insert([record])
        stamp = {**p.stamp(create=True), "owner_id": record["owner_id"], "version": 1}
        record_id = persist.insert_one(self.uow, plan, persist.row_for_insert(plan, record, stamp))
        record.update(stamp, id=record_id, deleted_at=None)
        p.write_lines(record_id, record, stamp, replace=False)
        snapshot = _snapshot(plan, record)
        output.attach_lines(self.uow, plan, [record], tuple(plan.lines))  # stored rows, with ids and positions
        p.journal([journal.event(plan.name, record_id, "create", snapshot)])
        p.after(record, None)
        p.emit("created", record_id, record=record)
        return self._out(plan, p.access, record)

    # ------------------------------------------------------------------ read

    def get(self, entity: str, record_id: int, *, fields: Sequence[str] | None = None,
            expand: Sequence[str] | None = None) -> dict[str, Any]:
        """One live record the actor may read (NotFound otherwise), lines nested, references expanded."""
        plan, access = open_entity(self.uow, entity, "read")
        keys = output.select_keys(plan, access, fields)
        _row, record = self._load(plan, access, record_id, action="read")
        out = {k: record.get(k) for k in keys}
        masking.apply(self.uow, plan.name, [out])
        output.expand(self.uow, plan, access, [out], expand)
        return out

    def list(self, entity: str, *, filter: str | None = None, sort: str | None = None, limit: int = 50,
             cursor: str | None = None, fields: Sequence[str] | None = None, expand: Sequence[str] | None = None,
             count: bool = False, within: listing.Within | None = None, deleted: bool = False) -> Page:
        """A page of live records the actor may read, matching ``filter`` (an expression), in ``sort`` order.

        Lines are returned only when named in ``fields``.  BadRequest for a
        bad filter, sort, cursor, field or limit.  ``within`` confines the list to a set of records
        *instead of* the actor's row scope (a pool's unclaimed records, listed by the pool service
        after it checked the caller's membership); field rules and masks still apply.  ``deleted`` lists
        the soft-deleted records instead (the recycle bin: needs delete permission, within its row scope).
        """
        plan, access = open_entity(self.uow, entity, "read")
        if deleted:
            access = recycle.bin_access(plan.name, access)
        limit = query.clamp_limit(limit)
        lq = listing.list_query(self.uow, plan, access, filter_text=filter, sort=sort, limit=limit, fields=fields,
                                within=within, deleted=deleted)
        stmt = lq.stmt
        if cursor is not None:
            values = query.decode_cursor(cursor, lq.spec, lq.sort_keys)
            stmt = lq.base.where(query.after_cursor(lq.sort_keys, values)).order_by(
                *query.order_by(lq.sort_keys)).limit(limit + 1)
        fetched = self.uow.conn.execute(stmt).all()
        more = len(fetched) > limit
        page = fetched[:limit]
        shape = lq.shape
        items = [shape(r) for r in page]
        if plan.lines:
            output.attach_lines(self.uow, plan, items, lq.keys)
        masking.apply(self.uow, plan.name, items)
        output.expand(self.uow, plan, access, items, expand)
        nxt = query.encode_cursor(lq.spec, [page[-1][i] for i in lq.sort_at]) if more and page else None
        total = self._count(plan, access, filter, within, deleted) if count else None
        return Page(items, nxt, total)

    def _count(self, plan: EntityPlan, access: Access, filter: str | None, within: listing.Within | None,
               deleted: bool = False) -> int:
        where = listing.list_where(self.uow, plan, filter, (), within)
        if within is not None:
            access = dataclasses.replace(access, read="all")
        stmt = query.base_select(self.uow, plan, access, [func.count()], deleted=deleted).select_from(plan.table)
        return int(self.uow.conn.execute(stmt.where(query.where_all(*where))).scalar_one())

    def history(self, entity: str, record_id: int) -> builtins.list[audit.AuditEntry]:
        """The record's audit trail, oldest first, without fields hidden from the actor."""
        plan, access = open_entity(self.uow, entity, "read")
        try:
            self._load(plan, access, record_id, action="read")
        except NotFound:
            self._load(plan, access, record_id, action="read", deleted=True)
        hidden = access.hidden | {plan.currency_keys[h] for h in access.hidden if h in plan.currency_keys}
        entries = audit.history(self.uow.conn, plan.name, record_id, hidden=hidden,
                                renames=self.uow.state.renames.get(plan.name),
                                encrypted=[f.name for f in plan.entity.encrypted_fields])
        return masking.history(self.uow, plan.name, record_id, entries)

    # ------------------------------------------------------------------ update

    def update(self, entity: str, record_id: int, values: Mapping[str, Any], *, expected_version: int | None,
               bypass_readonly: bool = False, audit_action: str = "update") -> dict[str, Any]:
        """Change fields of one record; VersionConflict if ``expected_version`` is not the stored one.

        ``expected_version=None`` still guards against a concurrent write
        between this unit's read and its write.  ``audit_action`` labels the
        history rows (e.g. ``handover``); the write itself is an ordinary update.
        """
        p = WritePipeline(self.uow, entity, "update", bypass_readonly=bypass_readonly)
        plan = p.plan
        row, old = self._load(plan, p.access, record_id, action="update")
        _check_version(plan, record_id, old["version"], expected_version)
        record = p.changed_record(old, values)
        changes = _changes(plan, old, record)
        if not changes:
            return self._out(plan, p.access, old)
        p.prepare_update(record, changes)
        stamp = p.stamp(create=False)
        plain = {k: record[k] for k in changes if k not in plan.lines}
        persist.update_row(self.uow, plan, record_id, old["version"], plain, row._mapping.get("ext"), stamp)
        p.write_lines(record_id, record, stamp, replace=True, only=[k for k in changes if k in plan.lines])
        record.update(stamp, version=old["version"] + 1)
        output.attach_lines(self.uow, plan, [record], [k for k in changes if k in plan.lines])
        p.journal(journal.changed(plan.name, record_id, audit_action, changes))
        p.after(record, old)
        p.emit("updated", record_id, changes=changes, record=record)
        return self._out(plan, p.access, record)

    # ------------------------------------------------------------------ delete / restore

    def delete(self, entity: str, record_id: int, *, expected_version: int | None = None) -> None:
        """Soft-delete: the record disappears from reads; :meth:`restore` brings it back."""
        self._soft(entity, record_id, expected_version, deleting=True)

    def restore(self, entity: str, record_id: int, *, expected_version: int | None = None) -> dict[str, Any]:
        """Undo a soft delete (needs delete permission on the record); returns the record.

        RestoreClash (a UniqueViolation) when a live record took one of its unique values since, naming
        the field and that record.  Its history is kept, with a ``restore`` row added."""
        return self._soft(entity, record_id, expected_version, deleting=False)

    def _soft(self, entity: str, record_id: int, expected: int | None, *, deleting: bool) -> dict[str, Any]:
        action: Action = "delete" if deleting else "restore"
        p = WritePipeline(self.uow, entity, action)
        plan = p.plan
        _row, old = self._load(plan, p.access, record_id, action="delete", deleted=not deleting)
        _check_version(plan, record_id, old["version"], expected)
        record = dict(old)
        if not deleting:
            recycle.check_restore(self.uow, plan, record)
        p.before(record, old)
        stamp = p.stamp(create=False)
        at = stamp["updated_at"]
        persist.update_row(self.uow, plan, record_id, old["version"], {"deleted_at": at if deleting else None},
                           None, stamp)
        p.journal([journal.event(plan.name, record_id, action)])
        record.update(stamp, version=old["version"] + 1, deleted_at=at if deleting else None)
        p.after(record, old)
        p.emit(f"{action}d", record_id, record=record)
        return self._out(plan, p.access, record)

    # ------------------------------------------------------------------ bulk

    def create_many(self, entity: str, rows_: Sequence[Mapping[str, Any]], *,
                    bypass_readonly: bool = False) -> builtins.list[int]:
        """Create many records with the same pipeline as :meth:`create`; returns their ids in order.

        Every row is validated first (ValidationFailed details are keyed
        ``[i].field``); then one executemany without RETURNING inserts them.
        """
        from engine.runtime.records.rowwise import create_many

        return create_many(self, entity, rows_, bypass_readonly=bypass_readonly)

    def update_many(self, entity: str, filter: str | None, values: Mapping[str, Any], *,
                    bypass_readonly: bool = False, audit_action: str = "update", dry_run: bool = False) -> int:
        """Apply ``values`` to every record matching ``filter`` that the actor may update; returns the count.

        Set-based when the entity has no rules, formulas, lines or steps and
        the values touch no unique or JSON-stored field; record by record
        through :meth:`update` otherwise.  BadRequest when ``values`` name no field.  ``dry_run``: the
        writes are made and then undone (:func:`~engine.runtime.records.undo.rolled_back`), so every
        rule, gate, unique value and step is tried and the same error raised, and nothing is kept.
        """
        from engine.runtime.records.bulk import update_many

        with undone_if(self.uow, dry_run):
            return update_many(self, entity, filter, values, bypass_readonly=bypass_readonly,
                               audit_action=audit_action)

    def delete_many(self, entity: str, filter: str | None, *, dry_run: bool = False) -> int:
        """Soft-delete every record matching ``filter`` that the actor may delete, each through :meth:`delete`
        (write steps, audit, events); all or nothing.  Returns the count.  ``dry_run`` as for
        :meth:`update_many`."""
        from engine.runtime.records.bulk import delete_many

        with undone_if(self.uow, dry_run):
            return delete_many(self, entity, filter)

    def count_matching(self, entity: str, filter: str | None, action: str) -> int:
        """How many live records match ``filter`` that the actor may ``action`` ("update" or "delete"): the
        records :meth:`update_many` / :meth:`delete_many` would reach (their dry run)."""
        from engine.runtime.records.bulk import count_matching

        return count_matching(self, entity, filter, action)

    def purge_deleted(self, *, before: dt.datetime, entity: str | None, export_dir: Path, stamp: str,
                      dry_run: bool = False) -> builtins.list[recycle.PurgeOutcome]:
        """Delete for good the records deleted before ``before``, each exported first (administrators only;
        see :func:`engine.runtime.records.recycle.purge_deleted`)."""
        return recycle.purge_deleted(self.uow, before=before, entity=entity, export_dir=export_dir, stamp=stamp,
                                     dry_run=dry_run)

    def create_each(self, entity: str, rows_: Sequence[Mapping[str, Any]], *,
                    bypass_readonly: bool = False) -> BulkOutcome:
        """Create many records, each row succeeding or failing on its own (imports, syncs).

        Invalid rows and rows the database refuses (a unique clash) are reported in
        ``outcome.errors`` by row index; the others are written and the unit of work goes on
        (savepoints keep a refused statement from aborting a PostgreSQL transaction).  As fast as
        :meth:`create_many` while the database accepts the batch.
        """
        from engine.runtime.records.rowwise import create_each

        return create_each(self, entity, rows_, bypass_readonly=bypass_readonly)

    def update_each(self, entity: str, filter: str | None, values: Mapping[str, Any], *,
                    bypass_readonly: bool = False, audit_action: str = "update",
                    dry_run: bool = False) -> BulkOutcome:
        """Apply ``values`` to every record matching ``filter`` the actor may update, record by record in
        savepoints: one that fails (a rule, a unique clash) is reported with its ``record_id`` and the
        others are kept.  ``outcome.ids`` follow the matching records' id order.  ``dry_run``: every
        record is written and then undone, so the outcome is the real run's and nothing is kept."""
        from engine.runtime.records.rowwise import update_each

        with undone_if(self.uow, dry_run):
            return update_each(self, entity, filter, values, bypass_readonly=bypass_readonly,
                               audit_action=audit_action)

    def delete_each(self, entity: str, filter: str | None, *, dry_run: bool = False) -> BulkOutcome:
        """Soft-delete every record matching ``filter`` the actor may delete, each in a savepoint: one that
        fails (locked under approval) is reported with its ``record_id`` and the others are kept.
        ``dry_run`` as for :meth:`update_each`."""
        from engine.runtime.records.rowwise import delete_each

        with undone_if(self.uow, dry_run):
            return delete_each(self, entity, filter)


def _check_version(plan: EntityPlan, record_id: int, current: int, expected: int | None) -> None:
    if expected is None:
        return
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise BadRequest("expected_version must be a whole number", code="bad_version")
    if current != expected:
        raise VersionConflict(f"{plan.name} {record_id} is at version {current}, not {expected}",
                              hint="read the record again and repeat your change",
                              details={"id": record_id, "expected_version": expected, "current_version": current})


def _changes(plan: EntityPlan, old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """field -> (old, new) for every field (and owner) whose value changed."""
    out: dict[str, tuple[Any, Any]] = {}
    before: Any
    after: Any
    for key in (*plan.out_fields, *plan.lines):
        if key in plan.lines:
            before, after = _norm_lines(old.get(key)), _norm_lines(new.get(key))
        elif key in ("owner_id",) or key in plan.entity.fields or key.endswith("_currency"):
            before, after = old.get(key), new.get(key)
        else:
            continue
        if before != after:
            out[key] = (before, after)
    return out


def _norm_lines(lines: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in line.items() if k not in rows.LINE_META} for line in lines or ()]


def _snapshot(plan: EntityPlan, record: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: record.get(k) for k in plan.snapshot_keys}
    for name in plan.lines:
        out[name] = _norm_lines(record.get(name))
    return out


def _load_stmt(t: Any, deleted: bool, lock: bool) -> Any:
    """``SELECT`` of one record by id (bind ``b_id``), live or deleted, FOR UPDATE when ``lock``."""
    stmt = select(t).where(t.c.id == bindparam("b_id"), t.c.deleted_at.is_not(None) if deleted else
                           t.c.deleted_at.is_(None))
    return stmt.with_for_update() if lock else stmt
