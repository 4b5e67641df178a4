"""The one write pipeline: every record write goes through a :class:`WritePipeline`.

Create, update, delete, restore, ``create_many``, ``update_many`` and
handover all run these stages, in this order (docs/records.md):

1. **permissions** -- :func:`open_entity`: the entity action and, for an
   existing record, its row scope;
2. **coercion**, 3. **defaults**, 4. **formulas**, 5. **checks** -- the
   :class:`~engine.runtime.records.write.Writer` (references the caller sends
   are checked for visibility right after coercion);
6. **before-write steps** -- :meth:`WritePipeline.before` (plugin steps and
   the runtime's own, resolved once per revision), and for a bulk create
   :meth:`WritePipeline.check_batch` across the batch's rows;
7. **persist with version** -- :mod:`~engine.runtime.records.persist`
   (references, auto numbers, ``WHERE version = :expected``);
8. **audit** -- :meth:`WritePipeline.journal` (the one encoder,
   :mod:`~engine.runtime.records.journal`);
9. **after-write steps** -- :meth:`WritePipeline.after`, in the same transaction;
10. **events** -- :meth:`WritePipeline.emit`, delivered once the unit commits.

The record service and the bulk paths are sequences of these public
methods; none reaches into another's internals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine.errors import BadRequest, RecordError
from engine.runtime.records import journal, persist
from engine.runtime.records.steps import Action, DomainEvent
from engine.runtime.records.write import Errors, Writer, raise_errors
from engine.runtime.records.write_plan import EntityPlan
from engine.runtime.security import Access

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork


def open_entity(uow: UnitOfWork, entity: str, action: str) -> tuple[EntityPlan, Access]:
    """Stage 1: the entity's write plan and the actor's access, if the actor may ``action`` it.

    NotFound (with a hint) for an unknown entity, PermissionDenied for an
    action the roles do not allow, BadRequest for a lines entity (written
    through its parent); writes also need a writable unit.
    """
    if not isinstance(entity, str) or entity not in uow.state.plans:
        uow.guard.access(str(entity))  # raises NotFound with a hint
    plan = uow.state.plan(entity)
    if plan.is_child:
        parent = plan.entity.parent
        assert parent is not None
        raise BadRequest(f"{entity} rows are the lines of {parent.entity}.{parent.field}",
                         code="lines_entity", hint=f"read and write them through the {parent.entity} record")
    if action != "read":
        uow.require_writable()
    return plan, uow.guard.require(entity, action)


class WritePipeline:
    """The stages of writing records of one entity in one unit of work (see the module docstring)."""

    def __init__(self, uow: UnitOfWork, entity: str, action: Action, *, bypass_readonly: bool = False,
                 bulk: bool = False) -> None:
        self.uow = uow
        self.action = action
        self.plan, self.access = open_entity(uow, entity, "delete" if action == "restore" else action)
        self.writer = Writer(uow, self.plan, self.access, action, bypass_readonly=bypass_readonly, bulk=bulk)
        self.steps = uow.write_steps(self.plan.name)
        self.now = uow.clock.now()

    @property
    def entity(self) -> str:
        return self.plan.name

    # ------------------------------------------------------------------ stages 2-6

    def new_record(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Stages 2-6 for a new record: the full record to insert, or ValidationFailed (every problem)."""
        w = self.writer
        errors: Errors = {}
        record = w.complete_new(w.coerce(values, errors), errors, owner=self.uow.actor.user_id)
        record["owner_id"] = record.get("owner_id") or self.uow.actor.user_id
        w.check(record, None, errors)
        self.before(record, None, sent=values)
        return record

    def changed_record(self, old: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """Stages 2-6 for an update of ``old``: the full new state of the record."""
        w = self.writer
        errors: Errors = {}
        record = w.complete_update(old, w.coerce(values, errors), errors)
        w.check(record, old, errors)
        self.before(record, old, sent=values)
        return record

    def coerced(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Stage 2 alone, with the required check of the keys sent (set-based ``update_many``)."""
        errors: Errors = {}
        clean = self.writer.coerce(values, errors)
        self.writer.require(clean, [k for k in self.plan.required_order if k in clean], errors)
        raise_errors(errors, self.plan.name)
        return clean

    def before(self, record: dict[str, Any], old: Mapping[str, Any] | None, *,
               sent: Mapping[str, Any] | None = None) -> None:
        """Stage 6: the before-write steps, in run order (they may change ``record`` or stop the write).

        ``sent``: the values the caller gave, whose keys the steps see as ``ctx.sent``."""
        if not self.steps:
            return
        ctx = self.writer.ctx
        if sent is not None:
            ctx = replace(ctx, sent=frozenset(k for k in sent if isinstance(k, str)))
        for step in self.steps:
            step.before_write(ctx, self.plan.name, record, old)

    def check_batch(self, rows: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[int, RecordError]:
        """Stage 6 across a batch: the refusals of the steps' optional ``check_batch`` for the rows
        (``(index in the request, record)``, each through :meth:`new_record` already) that clash with an
        earlier row of the same batch -- what no step can see row by row, since none is stored yet (a
        ``block`` dedupe rule).  A row one step refuses is not shown to the next."""
        refused: dict[int, RecordError] = {}
        for step in self.steps:
            check = getattr(step, "check_batch", None)
            if check is not None:
                refused.update(check(self.writer.ctx, self.plan.name, [r for r in rows if r[0] not in refused]))
        return refused

    # ------------------------------------------------------------------ stage 7: persist

    def stamp(self, *, create: bool) -> dict[str, Any]:
        """The standard columns a write sets: ``created_*`` (create) and ``updated_*``."""
        uid = self.uow.actor.user_id
        return ({"created_at": self.now, "created_by": uid} if create else {}) | \
            {"updated_at": self.now, "updated_by": uid}

    def prepare_insert(self, records: Sequence[dict[str, Any]]) -> None:
        """References (and owners) exist and are visible; auto numbers taken -- for records and their lines."""
        uow, plan = self.uow, self.plan
        persist.check_references(uow, plan, records, [*plan.references, "owner_id"])
        persist.fill_auto_numbers(uow, plan, records)
        for name, child_name in plan.lines.items():
            child = uow.state.plan(child_name)
            children = [c for r in records for c in r.get(name) or ()]
            persist.check_references(uow, child, children, list(child.references))
            persist.fill_auto_numbers(uow, child, children)

    def prepare_update(self, record: Mapping[str, Any], changed: Iterable[str]) -> None:
        """References among the changed keys are visible; lines rows that changed are checked and numbered."""
        uow, plan = self.uow, self.plan
        keys = list(changed)
        persist.check_references(uow, plan, [record], [k for k in keys if k in plan.references or k == "owner_id"])
        for name in (k for k in keys if k in plan.lines):
            child = uow.state.plan(plan.lines[name])
            persist.check_references(uow, child, record[name], list(child.references))
            persist.fill_auto_numbers(uow, child, record[name])

    def write_lines(self, record_id: int, record: Mapping[str, Any], stamp: Mapping[str, Any], *,
                    replace: bool, only: Sequence[str] | None = None) -> None:
        """Store the record's lines fields (``only`` these) as child rows, replacing the old ones."""
        base = {"created_at": stamp.get("created_at", stamp["updated_at"]),
                "created_by": stamp.get("created_by", stamp["updated_by"]),
                "updated_at": stamp["updated_at"], "updated_by": stamp["updated_by"],
                "owner_id": record.get("owner_id"), "version": 1}
        for name in only if only is not None else self.plan.lines:
            persist.replace_lines(self.uow, self.uow.state.plan(self.plan.lines[name]), record_id,
                                  record.get(name) or [], base, replace=replace)

    # ------------------------------------------------------------------ stages 8-10

    def journal(self, entries: Iterable[journal.Entry]) -> None:
        """Stage 8: the audit entries of this write, stamped with the unit's actor and revision."""
        journal.write(self.uow, self.now, entries)

    def after(self, record: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        """Stage 9: the after-write steps (the row and its audit are written; same transaction)."""
        ctx = self.writer.ctx
        for step in self.steps:
            after = getattr(step, "after_write", None)
            if after is not None:
                after(ctx, self.plan.name, record, old)

    def emit(self, kind: str, record_id: int, *, changes: Mapping[str, tuple[Any, Any]] | None = None,
             record: Mapping[str, Any] | None = None) -> None:
        """Stage 10: a domain event, delivered after the unit commits."""
        self.uow.emit(DomainEvent(kind, self.plan.name, record_id, self.uow.actor.user_id, self.now,
                                  dict(changes or {}), record))
