"""Duplicate detection on the write pipeline: the ``dedupe`` write step (order 200) and :func:`matches`.

The step keeps every record's normalised keys in ``crm_dedupe_keys`` (:mod:`.dedupe_keys`) on create,
update, delete and restore -- ``create_many``, ``update_many``, imports and handover included, since
they run the same steps -- so finding the duplicates of a record is a few index lookups whatever the
size of the table.  On a create or an update that changes a key, a ``block`` rule refuses a duplicate
(:class:`~engine.errors.DuplicateFound`, 409, listing the matches the caller may see and counting the
others), and in a bulk create a row that duplicates an earlier row of the same batch
(:meth:`DedupeStep.check_batch`, :mod:`.dedupe_batch`); ``warn`` and ``merge`` rules let the write
through and leave the matches in ``uow.notes``, which the API returns beside the record (``_duplicates``).
``merge`` never merges on its own: the matches are offered for an explicit
``POST /records/<entity>/<id>/merge`` (:mod:`.merge`).

``matches(uow, entity, values, *, against=None)`` is the service other features use (conversion looks
for an existing account with it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select

from engine.dsl.model import Workspace
from engine.dsl.sales.dedupe import DedupeRule
from engine.errors import RecordError
from engine.runtime.sales import dedupe_batch
from engine.runtime.sales.dedupe_keys import (
    DedupeIndex,
    KeyMemo,
    KeysPlanStep,
    Match,
    best_first,
    drop_pairs,
    index_of,
    key_value,
    matches,
    rebuild,
    record_pairs,
    rule_matches,
    stored_pairs,
    write_pairs,
)
from engine.runtime.sales.duplicates import describe, refusal

if TYPE_CHECKING:
    from engine.runtime.records.steps import WriteContext
    from engine.runtime.runtime import UnitOfWork

__all__ = ["DedupeStep", "Match", "matches", "rebuild", "write_steps"]


# --------------------------------------------------------------------------- the write step


class DedupeStep:
    """Write step 200: keeps ``crm_dedupe_keys`` and applies the rules' actions (see the module doc)."""

    name = "dedupe"
    order = 200

    def __init__(self, idx: DedupeIndex) -> None:
        self.idx = idx

    def applies_to(self, entity: str) -> bool:
        return entity in self.idx.sources

    def _changed(self, entity: str, record: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
        if old is None:
            return True
        return any(record.get(f) != old.get(f) for s in self.idx.sources[entity] for f in s.fields)

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        """A ``block`` rule refuses a create or an update that makes ``record`` a duplicate."""
        if ctx.action not in ("create", "update") or not self._changed(entity, record, old):
            return
        blocking = [r for r in self.idx.rules.get(entity, ()) if r.action == "block"]
        if not blocking:
            return
        conn = ctx.uow.conn
        self_id = old.get("id") if old is not None else None
        found: list[Match] = []
        for rule in blocking:
            _serialise(conn, rule, record, self.idx.region)
            found += rule_matches(conn, self.idx, rule, record, exclude=(entity, self_id))
        if found:
            raise refusal(ctx.uow, entity, best_first(found))

    def check_batch(self, ctx: WriteContext, entity: str, rows: Sequence[tuple[int, Mapping[str, Any]]]
                    ) -> Mapping[int, RecordError]:
        """A ``block`` rule refuses a row of a bulk create that duplicates an earlier row of the batch (the
        rows' keys are not stored yet when :meth:`before_write` looks them up)."""
        if ctx.action != "create":
            return {}
        return dedupe_batch.refusals(self.idx, entity, rows)

    def after_write(self, ctx: WriteContext, entity: str, record: Mapping[str, Any],
                    old: Mapping[str, Any] | None) -> None:
        """Store the record's keys (forget them on delete); note the matches of ``warn`` / ``merge`` rules."""
        conn, rid = ctx.uow.conn, record["id"]
        if ctx.action == "delete":
            drop_pairs(conn, entity, rid)
            return
        if ctx.action == "update" and not self._changed(entity, record, old):
            return
        memo: KeyMemo = {}
        pairs = record_pairs(self.idx.sources[entity], record, self.idx.region, memo, self.idx.blinded)
        existing = stored_pairs(conn, entity, rid) if ctx.action != "create" else None
        write_pairs(conn, entity, rid, pairs, existing=existing)
        if ctx.action in ("create", "update") and not ctx.bulk:  # a bulk write has no one to tell
            self._note(ctx.uow, entity, record, memo)

    def _note(self, uow: UnitOfWork, entity: str, record: Mapping[str, Any], memo: KeyMemo) -> None:
        rules = [r for r in self.idx.rules.get(entity, ()) if r.action != "block"]
        found = [m for r in rules for m in rule_matches(uow.conn, self.idx, r, record,
                                                        exclude=(entity, record["id"]), memo=memo)]
        if found:
            report = describe(uow, best_first(found))
            uow.notes.setdefault((entity, record["id"]), {}).update(report.as_note())


def _serialise(conn: Connection, rule: DedupeRule, record: Mapping[str, Any], region: str | None) -> None:
    """On PostgreSQL, one writer at a time per key value of a blocking rule (SQLite writes one at a time
    anyway), so two concurrent creates of the same duplicate cannot both pass the check."""
    if conn.dialect.name != "postgresql":
        return
    for key in rule.keys:
        value = key_value(key.fields, key.normalisers, record, region)
        if value is not None:
            digest = hashlib.blake2b(f"{key.kind}\0{value}".encode(), digest_size=8).digest()
            conn.execute(select(func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True))))


def plan_steps(workspace: Workspace) -> list[Any]:
    """Keys stored again at apply for the entities whose rules changed."""
    return [KeysPlanStep()]


def write_steps(workspace: Workspace) -> list[Any]:
    """The dedupe step, when the workspace has dedupe rules."""
    idx = index_of(workspace)
    return [DedupeStep(idx)] if idx.sources else []


