"""Merging two duplicate records: one explicit, atomic operation through the record service.

``merge(uow, entity, survivor_id, loser_id, fields)``, in the caller's unit of work:

1. the caller must be allowed to update the survivor and to delete the loser;
2. the survivor takes the loser's value of every field ``fields`` names ``"loser"`` for (an update,
   audited as ``merge``); it keeps its id, so its history stays whole;
3. every reference to the loser -- any entity's reference fields to this entity, lines rows included --
   is re-pointed to the survivor through the write path (audited as ``merge``; done with the system's
   permissions, since the caller's right to delete the loser is what allows it);
4. the loser is soft-deleted (its history is kept and readable), and both records get a ``merge`` audit
   entry naming the other.

Nothing is merged on write: a ``dedupe: ... action: merge`` rule only offers the matches for this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.errors import BadRequest, PermissionDenied, ValidationFailed
from engine.runtime.records import journal, rows
from engine.runtime.records.write_plan import EntityPlan

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

AUDIT_ACTION = "merge"
CHOICES = ("loser", "survivor")


@dataclass(slots=True)
class Merged:
    """The survivor after the merge, the fields taken from the loser and how many references moved."""

    entity: str
    survivor: dict[str, Any]
    loser_id: int
    taken: list[str] = field(default_factory=list)
    #: "entity.field" -> how many records now refer to the survivor instead
    repointed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"record": self.survivor, "loser": {"entity": self.entity, "id": self.loser_id, "deleted": True},
                "fields_taken": self.taken, "repointed": self.repointed}


def references_to(uow: UnitOfWork, entity: str) -> list[tuple[EntityPlan, str]]:
    """(plan, field) of every reference field, of any entity, that points to ``entity``."""
    return [(plan, f.name) for plan in uow.state.plans.values() for f in plan.entity.fields.values()
            if f.type == "reference" and f.reference == entity]


def merge(uow: UnitOfWork, entity: str, survivor_id: int, loser_id: int,
          fields: Mapping[str, str] | None = None) -> Merged:
    """Merge record ``loser_id`` into ``survivor_id`` (see the module docstring).

    Raises NotFound (either record, for the caller), PermissionDenied (update on the survivor, delete on
    the loser), BadRequest (the same record twice, a bad ``fields`` choice), ValidationFailed (a field
    the caller may not write).
    """
    if isinstance(loser_id, bool) or not isinstance(loser_id, int):
        raise BadRequest("loser must be a record id (a whole number)", code="bad_request",
                         details={"loser": ["must be a record id"]})
    if loser_id == survivor_id:
        raise BadRequest(f"a {entity} cannot be merged into itself", code="bad_request",
                         hint="give the id of the other record as loser")
    svc = uow.records
    survivor = svc.get(entity, survivor_id)
    loser = svc.get(entity, loser_id)
    _require(uow, entity, survivor_id, "update")
    _require(uow, entity, loser_id, "delete")
    taken = _taken(uow, entity, fields or {}, loser)
    out = Merged(entity, survivor, loser_id, sorted(taken))
    if taken:
        survivor = svc.update(entity, survivor_id, taken, expected_version=None, audit_action=AUDIT_ACTION)
    for plan, fname in references_to(uow, entity):
        moved = _repoint(uow, plan, fname, loser_id, survivor_id)
        if moved:
            out.repointed[f"{plan.name}.{fname}"] = moved
    svc.delete(entity, loser_id)
    journal.write(uow, uow.clock.now(), [
        journal.event(entity, survivor_id, AUDIT_ACTION, {"merged": loser_id, "fields": out.taken,
                                                          "repointed": out.repointed}),
        journal.event(entity, loser_id, AUDIT_ACTION, {"into": survivor_id})])
    out.survivor = svc.get(entity, survivor_id)
    return out


def _require(uow: UnitOfWork, entity: str, record_id: int, action: str) -> None:
    """PermissionDenied unless the caller may ``action`` (update / delete) this record."""
    access = uow.guard.require(entity, action)
    t = uow.state.plan(entity).table
    owner = uow.conn.execute(select(t.c.owner_id).where(t.c.id == record_id)).scalar()
    if not uow.guard.allows(getattr(access, action), owner):
        raise PermissionDenied(f"you may not {action} {entity} {record_id}, which a merge needs "
                               "(update the survivor, delete the loser)", code="forbidden")


def _taken(uow: UnitOfWork, entity: str, fields: Any, loser: Mapping[str, Any]) -> dict[str, Any]:
    """field -> the loser's value, for the fields the caller chose ``"loser"`` for (checked)."""
    if not isinstance(fields, Mapping):
        raise BadRequest('fields must be an object: {field: "loser" | "survivor"}', code="bad_request")
    plan, access = uow.state.plan(entity), uow.guard.access(entity)
    problems: dict[str, list[str]] = {}
    for name, choice in fields.items():
        if name not in plan.entity.fields or name in access.hidden:
            problems[str(name)] = ["unknown field"]
        elif choice not in CHOICES:
            problems[name] = ['must be "loser" or "survivor"']
        elif choice == "loser" and (name in plan.readonly or name in access.readonly
                                    or plan.entity.fields[name].formula):
            problems[name] = ["is read-only: the survivor keeps its value"]
    if problems:
        raise ValidationFailed(f"invalid merge fields: {', '.join(problems)}", details=problems)
    out = {name: loser.get(name) for name, choice in fields.items() if choice == "loser"}
    money = {f"{n}_currency": loser.get(f"{n}_currency") for n in out if n in plan.currency_keys}
    return {**out, **{k: v for k, v in money.items() if v is not None}}


def _repoint(uow: UnitOfWork, plan: EntityPlan, fname: str, loser_id: int, survivor_id: int) -> int:
    """Point every live record's ``fname`` from the loser to the survivor; the count of records changed."""
    t = plan.table
    col = t.c[plan.entity.fields[fname].column_name]
    if plan.is_child:
        return _repoint_lines(uow, plan, col, fname, loser_id, survivor_id)
    ids = list(uow.conn.execute(select(t.c.id).where(col == loser_id, t.c.deleted_at.is_(None)).order_by(t.c.id))
               .scalars())
    same = plan.entity.fields[fname].reference == plan.name
    ids = [i for i in ids if not (same and i == loser_id)]  # the loser's own link goes with it
    with uow.elevated():
        for rid in ids:
            # a survivor that referred to the loser (parent_account) would refer to itself: the link is cleared
            target = None if same and rid == survivor_id else survivor_id
            uow.records.update(plan.name, rid, {fname: target}, expected_version=None, bypass_readonly=True,
                               audit_action=AUDIT_ACTION)
    return len(ids)


def _repoint_lines(uow: UnitOfWork, child: EntityPlan, col: Any, fname: str, loser_id: int,
                   survivor_id: int) -> int:
    """Lines rows are written through their parent: each parent record gets its lines back, re-pointed."""
    parent = child.entity.parent
    assert parent is not None
    t = child.table
    parent_ids = sorted(set(uow.conn.execute(select(t.c.parent_id).where(col == loser_id)).scalars()))
    ptable = uow.state.plan(parent.entity).table
    live = set(uow.conn.execute(select(ptable.c.id).where(ptable.c.id.in_(parent_ids),
                                                          ptable.c.deleted_at.is_(None))).scalars()) \
        if parent_ids else set()
    moved = 0
    with uow.elevated():
        for pid in sorted(live):
            lines = uow.records.get(parent.entity, pid, fields=[parent.field])[parent.field] or []
            new = []
            for line in lines:
                row = {k: v for k, v in line.items() if k not in rows.LINE_META}
                if row.get(fname) == loser_id:
                    row[fname] = survivor_id
                    moved += 1
                new.append(row)
            uow.records.update(parent.entity, pid, {parent.field: new}, expected_version=None,
                               bypass_readonly=True, audit_action=AUDIT_ACTION)
    return moved
