"""Bulk writes that report failures per row and let the unit of work go on.

``create_many`` / ``update_many`` are all-or-nothing: one bad row fails the
call (and, on PostgreSQL, a failed statement aborts the whole transaction:
"current transaction is aborted").  :func:`create_each` and
:func:`update_each` instead give every row its own outcome:

* rows are validated in Python first; invalid ones are reported, never sent;
* ``create_each`` inserts the valid rows with the same fast executemany as
  ``create_many``, inside one SAVEPOINT; only when the database refuses that
  batch (a unique clash, a foreign key) is it rolled back to the savepoint and
  each row retried through :meth:`RecordService.create` in a savepoint of its
  own, so the clashing rows are named and the others kept.  A row a step's
  ``check_batch`` finds clashing with an earlier row (a ``block`` dedupe rule)
  is left out of the batch and then created on its own, so it meets the row it
  duplicates as a stored record and gets the same error a duplicate of any
  stored record gets;
* ``update_each`` / ``delete_each`` write record by record, each in its own savepoint.

A rolled-back savepoint also drops the domain events its rows queued.  The
rows that succeeded stay in the unit of work; the caller decides to commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import RecordError, UniqueViolation
from engine.runtime.records import bulk
from engine.runtime.records.pipeline import WritePipeline, open_entity
from engine.runtime.records.undo import rolled_back
from engine.wording import agreeing

if TYPE_CHECKING:
    from engine.runtime.records.service import RecordService
    from engine.runtime.runtime import UnitOfWork


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row was not written: the engine error's code, message and field details
    (``record_id``: the record an update failed on)."""

    code: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    record_id: int | None = None

    @classmethod
    def of(cls, error: RecordError, *, record_id: int | None = None) -> RowError:
        """The row's error with its details as the error gives them (JSON values: a duplicate's matches
        stay objects) and its hint; an error whose details say more than field -> messages (a refused stage
        move) gives its field messages under ``details["fields"]``."""
        details = error.details if isinstance(error.details, Mapping) else {}
        if isinstance(details.get("fields"), Mapping):
            details = details["fields"]
        out = {str(k): _json(v) for k, v in details.items()}
        if error.hint and "hint" not in out:
            out["hint"] = error.hint
        return cls(error.code, error.message, out, record_id)


def _json(value: Any) -> Any:
    """``value`` as JSON holds it: text, numbers, booleans, None, lists and objects of them; else its text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json(v) for v in value]
    return str(value)


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """Per input row (by position): the id written, or None and the row's error in ``errors``."""

    ids: tuple[int | None, ...]
    errors: Mapping[int, RowError]

    @property
    def written(self) -> list[int]:
        """The ids of the rows that were written, in input order."""
        return [i for i in self.ids if i is not None]


@contextmanager
def savepoint(uow: UnitOfWork) -> Iterator[None]:
    """A SAVEPOINT: on an error, roll back to it (and drop the events queued inside), then re-raise."""
    mark = len(uow.events)
    nested = uow.conn.begin_nested()
    try:
        yield
    except BaseException:
        nested.rollback()
        del uow.events[mark:]
        raise
    nested.commit()


def create_each(svc: RecordService, entity: str, rows_: Sequence[Mapping[str, Any]], *,
                bypass_readonly: bool = False) -> BulkOutcome:
    """See :meth:`RecordService.create_each`."""
    uow = svc.uow
    p = WritePipeline(uow, entity, "create", bypass_readonly=bypass_readonly, bulk=True)
    bulk.require_rows(rows_)
    ids: list[int | None] = [None] * len(rows_)
    errors: dict[int, RowError] = {}
    valid: list[tuple[int, dict[str, Any]]] = []
    for i, values in enumerate(rows_):
        try:
            valid.append((i, p.new_record(values)))
        except RecordError as e:
            errors[i] = RowError.of(e)
    if not valid:
        return BulkOutcome(tuple(ids), errors)
    clashing = p.check_batch(valid)  # rows that duplicate an earlier row of the batch (a block dedupe rule)
    batch = [(i, record) for i, record in valid if i not in clashing]
    try:
        with savepoint(uow):
            made = bulk.insert_validated(p, [record for _, record in batch])
    except RecordError:  # the database refused the batch: find the rows, one savepoint each
        retry = [i for i, _record in valid]
    else:
        for (i, _record), rid in zip(batch, made, strict=True):
            ids[i] = rid
        retry = sorted(clashing)  # the rows they clash with are stored now: each meets them as a stored record
    for i in retry:
        try:
            with savepoint(uow):
                ids[i] = svc.create(entity, rows_[i], bypass_readonly=bypass_readonly)["id"]
        except RecordError as e:
            errors[i] = RowError.of(e)
    return BulkOutcome(tuple(ids), errors)


def update_each(svc: RecordService, entity: str, filter_text: str | None, values: Mapping[str, Any], *,
                bypass_readonly: bool = False, audit_action: str = "update") -> BulkOutcome:
    """See :meth:`RecordService.update_each`."""
    uow = svc.uow
    bulk.require_values(values)
    p = WritePipeline(uow, entity, "update", bypass_readonly=bypass_readonly, bulk=True)
    plan, access = p.plan, p.access
    p.coerced(values)  # a value wrong for every row fails the call, before any row is touched
    stmt = bulk.matching(uow, plan, access, filter_text, "update", [plan.table.c.id])
    return _each(uow, [r.id for r in uow.conn.execute(stmt).all()],
                 lambda rid: svc.update(entity, rid, values, expected_version=None, bypass_readonly=bypass_readonly,
                                        audit_action=audit_action))


def delete_each(svc: RecordService, entity: str, filter_text: str | None) -> BulkOutcome:
    """See :meth:`RecordService.delete_each`."""
    uow = svc.uow
    plan, access = open_entity(uow, entity, "delete")
    uow.require_writable()
    stmt = bulk.matching(uow, plan, access, filter_text, "delete", [plan.table.c.id])
    return _each(uow, [r.id for r in uow.conn.execute(stmt).all()], lambda rid: svc.delete(entity, rid))


def _each(uow: UnitOfWork, record_ids: Sequence[int], write: Callable[[int], Any]) -> BulkOutcome:
    """``write`` each record in a savepoint of its own; a failure is kept with its ``record_id``."""
    ids: list[int | None] = []
    errors: dict[int, RowError] = {}
    for i, rid in enumerate(record_ids):
        try:
            with savepoint(uow):
                write(rid)
            ids.append(rid)
        except RecordError as e:
            ids.append(None)
            errors[i] = RowError.of(e, record_id=rid)
    return BulkOutcome(tuple(ids), errors)


def create_many(svc: RecordService, entity: str, rows_: Sequence[Mapping[str, Any]], *,
                bypass_readonly: bool = False) -> list[int]:
    """See :meth:`RecordService.create_many`."""
    p = WritePipeline(svc.uow, entity, "create", bypass_readonly=bypass_readonly, bulk=True)
    bulk.require_rows(rows_)
    records = bulk.validated(p, rows_)
    try:
        with savepoint(svc.uow):  # on a refusal the unit stays usable to find the rows (PostgreSQL)
            return bulk.insert_validated(p, records)
    except UniqueViolation as e:
        raise _clashing_rows(svc, entity, rows_, e, bypass_readonly=bypass_readonly) from e


def _clashing_rows(svc: RecordService, entity: str, rows_: Sequence[Mapping[str, Any]], error: UniqueViolation, *,
                   bypass_readonly: bool) -> UniqueViolation:
    """``error`` with the clashing rows named ``[i].field``: the rows are tried one by one in a savepoint that
    is rolled back (only after a refused batch, so the fast path pays nothing)."""
    with rolled_back(svc.uow):
        outcome = create_each(svc, entity, rows_, bypass_readonly=bypass_readonly)
    clashes = {i: e for i, e in outcome.errors.items() if e.code == error.code}
    if not clashes:
        return error
    return UniqueViolation(f"{agreeing(len(clashes), 'row', 'repeat a unique value')}; nothing was created",
                           code=error.code, hint=error.hint,
                           details={f"[{i}].{k}": v for i, e in clashes.items() for k, v in e.details.items()
                                    if k != "hint"})  # the call's hint, once
