"""Writes made for real and then undone: the dry runs of bulk writes and purges, and the probing of a
refused batch row by row (:mod:`engine.runtime.records.rowwise`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


@contextmanager
def rolled_back(uow: UnitOfWork) -> Iterator[None]:
    """Run the writes inside for real, then undo them all, whether they raised or not (a dry run).

    A SAVEPOINT rolled back takes the rows (records, lines, audit, jobs, notifications, approvals, keys)
    back; what the writes queued outside the database is dropped with them: the domain events (so
    nothing reaches ``crm_outbox`` or a listener), the after-commit callbacks, the notes beside records
    and what the steps kept in ``uow.scratch``, and the references found visible.  An error raised inside
    propagates unchanged, so a dry run answers what the real run would.
    """
    events, committed = len(uow.events), len(uow.committed)
    notes, scratch = dict(uow.notes), dict(uow.scratch)
    visible = {k: set(v) for k, v in uow.visible_ids.items()}
    nested = uow.conn.begin_nested()
    try:
        yield
    finally:
        nested.rollback()
        del uow.events[events:]
        del uow.committed[committed:]
        uow.notes.clear()
        uow.notes.update(notes)
        uow.scratch.clear()
        uow.scratch.update(scratch)
        uow.visible_ids = visible


def undone_if(uow: UnitOfWork, dry_run: bool) -> AbstractContextManager[None]:
    """:func:`rolled_back` for a dry run; nothing otherwise."""
    return rolled_back(uow) if dry_run else nullcontext()
