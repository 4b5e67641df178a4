"""Assignment at run time: the write step that gives new records their owner, :func:`route` for returns
and reassigns, explicit reassignment, and the strategies (docs/assignment.md).

* :class:`AssignmentStep` (order 400, after scoring so rules may read the grade) runs on create for
  records created without an ``owner_id`` in the values sent, by a creator the document's
  ``created_by`` allows; it sets ``owner_id`` (or ``pool``: the pool step, order 450, does the rest).
  After the row is written it notifies the new owner and writes an ``assign`` audit row naming the
  assignment and the rule.
* Round robin keeps its position in ``crm_assignment_cursors`` (one row per rule, ``<name>:<rule>``),
  advanced by one upsert ``... RETURNING position``: atomic on both databases, and on PostgreSQL the
  row lock serialises concurrent creates until they commit.  ``least_loaded`` takes the same lock before
  counting, so two creates cannot both pick the emptiest member.
* Inactive users are never chosen; a team with nobody active, an unknown user or team, or a territory
  value without a target falls through to the next rule.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.dsl.model import Workspace, text_in
from engine.dsl.sales.assignment import Assignment, AssignmentRule, Target, assignments_of
from engine.errors import BadRequest, Conflict
from engine.runtime import notify, teams
from engine.runtime.engine_tables import crm_assignment_cursors, crm_users
from engine.runtime.records import journal
from engine.runtime.sales.evaluation import eval_context
from engine.runtime.sqlexpr import to_sql

if TYPE_CHECKING:
    from engine.runtime.records.steps import WriteContext
    from engine.runtime.runtime import UnitOfWork

STEP = "assignment"
#: the audit action and the notification kind of an assignment
AUDIT_ACTION = "assign"
NOTIFICATION = "assignment"
#: the field the pool kind adds to entities with pools (assigning into a pool sets it)
POOL_FIELD = "pool"


@dataclass(frozen=True, slots=True)
class Decision:
    """Who a rule chose: a user (``owner_id``) or a pool; which assignment and rule chose."""

    assignment: str | None
    rule_index: int | None
    rule: str
    target: str
    owner_id: int | None = None
    username: str | None = None
    pool: str | None = None

    def describe(self) -> str:
        """``lead_routing rule 1 (team senior_sales (round robin)) -> alice``."""
        head = f"{self.assignment} {self.rule}" if self.assignment else self.rule
        who = self.username if self.username is not None else f"pool {self.pool}"
        return f"{head} ({self.target}) -> {who}"

    def data(self) -> dict[str, Any]:
        return {"assignment": self.assignment, "rule": self.rule_index, "rule_name": self.rule,
                "target": self.target, "owner_id": self.owner_id, "user": self.username, "pool": self.pool}


# --------------------------------------------------------------------------- choosing


def choose(uow: UnitOfWork, assignment: Assignment, record: Mapping[str, Any]) -> Decision | None:
    """The first rule of ``assignment`` whose condition holds on ``record`` and whose target has someone
    (or a pool) to take it; None when no rule does."""
    ectx = eval_context(uow)
    for rule in assignment.rules:
        if rule.when is not None and rule.when.evaluate(record, ectx) is not True:
            continue
        found = _resolve(uow, assignment, rule.to, record, f"{assignment.name}:{rule.index}")
        if found is not None:
            owner, username, pool = found
            return Decision(assignment.name, rule.index, rule.describe(), _target_text(rule, record), owner,
                            username, pool)
    return None


def _target_text(rule: AssignmentRule, record: Mapping[str, Any]) -> str:
    t = rule.to
    if t.kind == "field_map":
        value = record.get(t.name)
        sub = (t.map.get(str(value)) if value is not None else None) or t.default
        return f"{t.describe()}: {value} -> {sub.describe()}" if sub is not None else t.describe()
    return t.describe()


Found = tuple[int | None, str | None, str | None]


def _resolve(uow: UnitOfWork, assignment: Assignment, target: Target, record: Mapping[str, Any],
             cursor: str) -> Found | None:
    if target.kind == "pool":
        return None, None, target.name
    if target.kind == "user":
        row = uow.conn.execute(select(crm_users.c.id, crm_users.c.username).where(
            crm_users.c.username == target.name, crm_users.c.active.is_(True))).first()
        return (int(row.id), str(row.username), None) if row is not None else None
    if target.kind == "field_map":
        value = record.get(target.name)
        sub = target.map.get(str(value)) if value is not None else None
        sub = sub or target.default
        if sub is None:
            return None
        return _resolve(uow, assignment, sub, record, f"{cursor}:{value}")
    members = team_members(uow, target.name)
    if not members:
        return None
    if target.strategy == "least_loaded":
        picked = _least_loaded(uow, assignment.entity, target, members, cursor)
    else:
        picked = members[next_position(uow, cursor) % len(members)]
    return (picked[0], picked[1], None) if picked is not None else None


def team_members(uow: UnitOfWork, team: str) -> list[tuple[int, str]]:
    """The active members of team ``team`` (by name; main or extra team), in id order: (id, username)."""
    return teams.direct_members(uow.conn, team)


def next_position(uow: UnitOfWork, cursor: str) -> int:
    """Advance the round-robin cursor ``cursor`` by one and return its new position (0 the first time).

    One ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: atomic on SQLite and PostgreSQL; the row stays
    locked on PostgreSQL until the unit commits, so concurrent assignments take consecutive positions.
    """
    c = crm_assignment_cursors
    now = uow.clock.now()
    dialect_insert = pg_insert if uow.conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (dialect_insert(c).values(name=cursor, position=0, updated_at=now)
            .on_conflict_do_update(index_elements=[c.c.name], set_={"position": c.c.position + 1, "updated_at": now})
            .returning(c.c.position))
    return int(uow.conn.execute(stmt).scalar_one())


def _least_loaded(uow: UnitOfWork, entity: str, target: Target, members: Sequence[tuple[int, str]],
                  cursor: str) -> tuple[int, str] | None:
    """The member with the fewest open records per unit of weight (ties: the lowest id)."""
    next_position(uow, cursor)  # the cursor row's lock serialises concurrent choices on PostgreSQL
    weighted = [(uid, name, target.weights.get(name, 1)) for uid, name in members]
    weighted = [m for m in weighted if m[2] > 0]
    if not weighted:
        return None
    table = uow.state.plan(entity).table
    where: list[Any] = [table.c.owner_id.in_([m[0] for m in weighted]), table.c.deleted_at.is_(None)]
    if target.open is not None:
        now = uow.clock.now()
        where.append(to_sql(target.open, uow.schema, entity, user_id=uow.actor.user_id, now=now, for_filter=True))
    loads: dict[Any, Any] = dict(uow.conn.execute(select(table.c.owner_id, func.count()).where(*where)
                                  .group_by(table.c.owner_id)).all())
    best = min(weighted, key=lambda m: (Fraction(int(loads.get(m[0], 0)), m[2]), m[0]))
    return best[0], best[1]


# --------------------------------------------------------------------------- telling and recording


_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def record_title(workspace: Workspace, entity: str, record: Mapping[str, Any]) -> str:
    """The record's title (``{company}`` filled in), else ``#<id>``."""
    template = workspace.entities[entity].title
    if template:
        title = _PLACEHOLDER.sub(lambda m: str(record.get(m.group(1)) or ""), template).strip()
        if title:
            return title
    return f"#{record.get('id')}"


def announce(uow: UnitOfWork, entity: str, record: Mapping[str, Any], decision: Decision, *,
             trigger: str = "create") -> None:
    """The ``assign`` audit row naming the assignment and rule, and the new owner's notification."""
    record_id = int(record["id"])
    data = {**decision.data(), "trigger": trigger}
    journal.write(uow, uow.clock.now(), [(entity, record_id, AUDIT_ACTION, None, None, data)])
    if decision.owner_id is None:
        return
    ws = uow.workspace
    label = ws.entities[entity].label
    title = record_title(ws, entity, record)
    why = decision.describe().rsplit(" -> ", 1)[0]
    text = {"en": f"{text_in(label, 'en', entity)} {title} is assigned to you ({why})",
            "zh": f"{text_in(label, 'zh', entity)}「{title}」已分配给您（{why}）"}
    notify.send(uow, decision.owner_id, NOTIFICATION, text, entity=entity, record_id=record_id, data=data)


# --------------------------------------------------------------------------- the write step


class AssignmentStep:
    """The write step (order 400): assigns records created without an owner (see the module docstring)."""

    name = STEP
    order = 400

    def __init__(self, workspace: Workspace) -> None:
        self.by_entity: dict[str, tuple[Assignment, ...]] = {}
        for a in assignments_of(workspace, trigger="create"):
            self.by_entity[a.entity] = (*self.by_entity.get(a.entity, ()), a)

    def applies_to(self, entity: str) -> bool:
        return entity in self.by_entity

    def before_write(self, ctx: WriteContext, entity: str, record: dict[str, Any],
                     old: Mapping[str, Any] | None) -> None:
        if ctx.action != "create" or old is not None or not _owner_left_open(ctx, record):
            return
        actor = ctx.uow.actor
        for assignment in self.by_entity[entity]:
            if not assignment.creator_allowed(actor.roles, system=actor.is_system):
                continue
            decision = choose(ctx.uow, assignment, record)
            if decision is None:
                continue
            if decision.owner_id is not None:
                record["owner_id"] = decision.owner_id
            if decision.pool is not None:
                record[POOL_FIELD] = decision.pool
            ctx.uow.scratch.setdefault(STEP, {})[id(record)] = (record, decision)
            return

    def after_write(self, ctx: WriteContext, entity: str, record: Mapping[str, Any],
                    old: Mapping[str, Any] | None) -> None:
        pending = ctx.uow.scratch.get(STEP)
        entry = pending.pop(id(record), None) if pending else None
        if entry is not None and entry[0] is record:
            announce(ctx.uow, entity, record, entry[1])


def _owner_left_open(ctx: WriteContext, record: Mapping[str, Any]) -> bool:
    """Whether the creator left the owner to the rules: ``owner_id`` not among the values sent (when the
    pipeline says what was sent), else not set or the creator's own default."""
    if ctx.sent is not None:
        return "owner_id" not in ctx.sent
    return record.get("owner_id") in (None, ctx.uow.actor.user_id)


# --------------------------------------------------------------------------- services


def route(uow: UnitOfWork, entity: str, record_id: int, *, trigger: str) -> str | None:
    """Run ``entity``'s assignments whose ``on:`` includes ``trigger`` (create, return, reassign) on the stored
    record ``record_id``, through the record service; the chosen rule's description, or None when no rule
    applies.  The write is the assignment rules' own (made with the system's permissions, audited under
    the unit's actor); the new owner is notified.  Moving to a user takes the record out of its pool."""
    with uow.elevated():
        record = uow.records.get(entity, record_id)
    for assignment in assignments_of(uow.workspace, entity, trigger):
        decision = choose(uow, assignment, record)
        if decision is not None:
            _write(uow, entity, record, decision, trigger=trigger, elevated=True)
            return decision.describe()
    return None


def reassign_to(uow: UnitOfWork, entity: str, record_id: int, username: Any) -> Decision:
    """Give the record to user ``username`` (an explicit reassign by someone allowed to update the record:
    PermissionDenied otherwise); BadRequest for an inactive user, NotFound for an unknown one."""
    from engine.runtime import users

    if not isinstance(username, str) or not username:
        raise BadRequest("'to' must be a username", code="bad_request", hint='send {"to": "alice"}, or {} to run '
                         "the assignment rules")
    current = uow.records.update(entity, record_id, {}, expected_version=None)  # may the actor update it?
    uid = users.user_id(uow.conn, username)
    active = uow.conn.execute(select(crm_users.c.active).where(crm_users.c.id == uid)).scalar()
    if not active:
        raise BadRequest(f"user {username!r} is inactive and cannot own records", code="inactive_user",
                         hint="choose an active user ('crm user list --active')")
    decision = Decision(None, None, "reassigned", f"user {username}", uid, username)
    with uow.elevated():
        record = uow.records.get(entity, record_id)
    _write(uow, entity, {**record, **current}, decision, trigger="reassign", elevated=False)
    return decision


def reassign_by_rules(uow: UnitOfWork, entity: str, record_id: int) -> str:
    """Run the ``on: [reassign]`` rules for a record the actor may update; Conflict when none applies."""
    uow.records.update(entity, record_id, {}, expected_version=None)  # may the actor update it?
    done = route(uow, entity, record_id, trigger="reassign")
    if done is None:
        raise Conflict(f"no assignment rule of {entity} applies to {entity} {record_id} on reassign",
                       code="not_assigned", details={"entity": entity, "id": record_id},
                       hint="add 'reassign' to the 'on:' of an assignment of this entity, or send "
                            '{"to": "<username>"} to choose the owner yourself')
    return done


def _write(uow: UnitOfWork, entity: str, record: Mapping[str, Any], decision: Decision, *, trigger: str,
           elevated: bool) -> None:
    values: dict[str, Any] = {}
    has_pool = POOL_FIELD in uow.workspace.entities[entity].fields
    if decision.owner_id is not None:
        values["owner_id"] = decision.owner_id
        if has_pool and record.get(POOL_FIELD) is not None:
            values[POOL_FIELD] = None
    if decision.pool is not None:
        values[POOL_FIELD] = decision.pool
    changed = any(record.get(k) != v for k, v in values.items())
    if changed:
        if elevated:
            with uow.elevated():
                uow.records.update(entity, int(record["id"]), values, expected_version=None, bypass_readonly=True)
        else:
            uow.records.update(entity, int(record["id"]), values, expected_version=None,
                               bypass_readonly=POOL_FIELD in values)
    announce(uow, entity, record, decision, trigger=trigger)


# --------------------------------------------------------------------------- the feature plugin's hooks


def write_steps(workspace: Workspace) -> list[Any]:
    """The assignment step, when the workspace assigns on create."""
    return [AssignmentStep(workspace)] if assignments_of(workspace, trigger="create") else []
