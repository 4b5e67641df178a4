"""Converting a record (a qualified lead) into the records a ``conversion:`` document creates.

:func:`convert` runs in the caller's unit of work, so it is atomic: the account, the contact and the
opportunity are created, the lead's activities relinked and the lead marked converted -- or, when any
write fails (a check, a stage gate, a duplicate rule that blocks), nothing at all.  Every write goes
through the record service: the created records' defaults, checks and write steps apply as for any
create, and a value the mapping produces that the target refuses is a 400 naming the target entity and
field (``opportunity.amount``).

The record a conversion may reuse (``reuse:``, the account by default) is the one the caller picks
(``use={"account": 12}``), else the one the duplicate rules find (:func:`engine.runtime.sales.dedupe.
matches`, against the account's rules and the lead's rules scoped to accounts); several candidates the
caller may see and none picked is a 409 listing them.  A converted record cannot be converted again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from engine.dsl.expressions import CompiledExpression, ast
from engine.dsl.model import Workspace
from engine.dsl.sales.conversion import Conversion, Target
from engine.errors import BadRequest, Conflict, ExpressionEvalError, NotFound, PermissionDenied, ValidationFailed
from engine.runtime import exchange_rates
from engine.runtime.records import exprs, rows
from engine.runtime.sales.dedupe_keys import matches
from engine.runtime.sales.duplicates import describe

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

AUDIT_ACTION = "convert"


@dataclass(slots=True)
class Outcome:
    """What a conversion did: the source record after it, the records made or reused, relinked counts."""

    conversion: str
    source: str
    record: dict[str, Any]
    records: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    relinked: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"conversion": self.conversion, "source": {"entity": self.source, "record": self.record},
                "records": self.records, "reused": self.reused, "relinked": self.relinked}


def conversions_from(workspace: Workspace, entity: str) -> dict[str, Conversion]:
    """The conversions whose ``from:`` is ``entity``, by name."""
    return {name: obj.compiled for name, obj in workspace.objects_of("conversion").items()
            if isinstance(obj.compiled, Conversion) and obj.compiled.source == entity}


def pick(workspace: Workspace, entity: str, name: str | None) -> Conversion:
    """The conversion ``name`` of ``entity`` (or its only one); NotFound / BadRequest saying which exist."""
    found = conversions_from(workspace, entity)
    if name is not None:
        if name not in found:
            raise NotFound(f"there is no conversion {name!r} from {entity}", code="not_found",
                           details={"conversions": sorted(found)})
        return found[name]
    if not found:
        raise NotFound(f"{entity} records cannot be converted: no conversion document has from: {entity}",
                       code="not_found", hint="add a conversion: document (docs/conversion.md)")
    if len(found) > 1:
        raise BadRequest(f"{entity} has {len(found)} conversions; say which one", code="bad_request",
                         hint=f"send conversion: one of {', '.join(sorted(found))}")
    return next(iter(found.values()))


def convert(uow: UnitOfWork, entity: str, record_id: int, *, name: str | None = None,
            use: Mapping[str, int] | None = None, skip: Collection[str] = (),
            values: Mapping[str, Mapping[str, Any]] | None = None) -> Outcome:
    """Convert record ``record_id`` of ``entity`` (see the module docstring).

    ``use``: created entity -> id of an existing record to link instead (only the ``reuse:`` entity);
    ``skip``: optional created entities to leave out (``{"opportunity"}``); ``values``: entity ->
    field -> value overriding what the mapping gives (checked against the caller's field rules).
    Raises NotFound, PermissionDenied (update on the source, create on the targets), Conflict
    (``already_converted``, ``conversion_ambiguous``), ValidationFailed (details ``entity.field``).
    """
    conv = pick(uow.workspace, entity, name)
    use, values = dict(use or {}), _overrides(uow, conv, values)
    _check_choices(conv, use, skip)
    source = _source(uow, conv, record_id)
    out = Outcome(conv.name, entity, {})
    made: dict[str, int] = {entity: record_id}
    for target in conv.targets:
        if target.entity in skip:
            out.records[target.entity] = None
            continue
        existing = _reused(uow, conv, target, source, use)
        if existing is not None:
            made[target.entity] = existing["id"]
            out.records[target.entity] = existing
            out.reused.append(target.entity)
            continue
        record = _create(uow, target, source, made, values.get(target.entity, {}))
        made[target.entity] = record["id"]
        out.records[target.entity] = record
    out.relinked = _relink(uow, conv, record_id, made)
    out.record = _mark(uow, conv, source, made)
    return out


def _check_choices(conv: Conversion, use: Mapping[str, Any], skip: Collection[str]) -> None:
    for ent in skip:
        target = conv.target(ent)
        if target is None or not target.optional:
            optional = [t.entity for t in conv.targets if t.optional]
            raise BadRequest(f"conversion {conv.name!r} cannot leave out {ent!r}", code="bad_request",
                             hint=f"only {', '.join(optional) or 'nothing'} may be left out")
    for ent, rid in use.items():
        if ent != conv.reuse:
            raise BadRequest(f"conversion {conv.name!r} cannot reuse an existing {ent}", code="bad_request",
                             hint=f"only an existing {conv.reuse} may be given" if conv.reuse else None)
        if isinstance(rid, bool) or not isinstance(rid, int) or rid < 1:
            raise BadRequest(f"{ent}_id must be a record id (a whole number)", code="bad_request",
                             details={f"{ent}_id": ["must be a record id"]})


def _overrides(uow: UnitOfWork, conv: Conversion, values: Any) -> dict[str, dict[str, Any]]:
    """The caller's extra values, per created entity; only fields the caller may write themselves."""
    if values is None:
        return {}
    if not isinstance(values, Mapping) or not all(isinstance(v, Mapping) for v in values.values()):
        raise BadRequest("values must be an object: entity -> {field: value}", code="bad_request")
    problems: dict[str, list[str]] = {}
    for ent, given in values.items():
        if conv.target(ent) is None:
            problems[str(ent)] = [f"conversion {conv.name!r} does not create {ent!r}"]
            continue
        plan, access = uow.state.plan(ent), uow.guard.access(ent)
        for key in given:
            if key in plan.readonly or key in access.readonly:
                problems[f"{ent}.{key}"] = ["is read-only"]
            elif key not in plan.entity.fields or key in access.hidden:
                problems[f"{ent}.{key}"] = ["unknown field"]
    if problems:
        raise ValidationFailed(f"invalid conversion values: {', '.join(problems)}", details=problems)
    return {str(k): dict(v) for k, v in values.items()}


def _source(uow: UnitOfWork, conv: Conversion, record_id: int) -> dict[str, Any]:
    """The stored record to convert, once the caller is known to read and update it and it is not converted."""
    uow.records.get(conv.source, record_id, fields=["id"])  # NotFound unless the caller may read it
    plan, access = uow.state.plan(conv.source), uow.guard.require(conv.source, "update")
    row = uow.conn.execute(select(plan.table).where(plan.table.c.id == record_id).with_for_update()).one()
    if not uow.guard.allows(access.update, row.owner_id):
        raise PermissionDenied(f"you may not convert this {conv.source}: you may not update it", code="forbidden")
    record = rows.read(plan.readers, row._mapping)
    if _converted(conv, record):
        links = {t: record.get(f) for f, t in conv.mark_links if record.get(f) is not None}
        raise Conflict(f"{conv.source} {record_id} is already converted", code="already_converted",
                       hint="open the records it became", details={"id": record_id, "records": links})
    return record


def _converted(conv: Conversion, record: Mapping[str, Any]) -> bool:
    if any(record.get(f) is not None for f, _ in conv.mark_links):
        return True
    marks = dict(conv.mark)
    at = marks.get("converted_at")
    if at is not None and record.get("converted_at") is not None:
        return True
    status = marks.get("status")
    literal = status.ast.value if isinstance(status, CompiledExpression) and isinstance(status.ast, ast.Literal) \
        else status
    return literal is not None and record.get("status") == literal


def _reused(uow: UnitOfWork, conv: Conversion, target: Target, source: Mapping[str, Any],
            use: Mapping[str, int]) -> dict[str, Any] | None:
    """The existing record standing in for ``target``: the caller's pick, or the one duplicate found."""
    if target.entity != conv.reuse:
        return None
    if target.entity in use:
        return dict(uow.records.get(target.entity, use[target.entity]))
    values = _evaluate(uow, target.values, source, target.entity)
    found = [m for m in (*matches(uow, target.entity, values, against=[target.entity]),
                         *matches(uow, conv.source, source, against=[target.entity]))
             if m.entity == target.entity]
    seen = describe(uow, found).items
    if not seen:
        return None
    if len(seen) > 1:
        raise Conflict(f"{len(seen)} existing {target.entity} records match this {conv.source}; "
                       f"pick the one to use", code="conversion_ambiguous",
                       hint=f"send {target.entity}_id with one of the ids listed",
                       details={"entity": target.entity, "candidates": seen})
    return dict(uow.records.get(target.entity, seen[0]["id"]))


def _evaluate(uow: UnitOfWork, pairs: Any, source: Mapping[str, Any], entity: str) -> dict[str, Any]:
    """field -> value of the mapping on ``source``; an expression that fails is a 400 naming the field."""
    ctx = exprs.make_context(user_id=uow.actor.user_id, now=uow.clock.now(), old=None, ref=None,
                             rates=exchange_rates.resolver(uow.conn))
    out: dict[str, Any] = {}
    for fname, value in pairs:
        try:
            out[fname] = exprs.evaluate(value, source, ctx) if isinstance(value, CompiledExpression) else value
        except ExpressionEvalError as e:
            raise ValidationFailed(f"the {entity} this conversion makes is invalid: {fname}: {e.message}",
                                   details={f"{entity}.{fname}": [f"cannot be computed: {e.message}"]}) from e
    return out


def _create(uow: UnitOfWork, target: Target, source: Mapping[str, Any], made: Mapping[str, int],
            extra: Mapping[str, Any]) -> dict[str, Any]:
    values = _evaluate(uow, target.values, source, target.entity)
    values.update({f: made[e] for f, e in target.links if e in made})
    values.update(extra)
    try:
        return dict(uow.records.create(target.entity, values, bypass_readonly=True))
    except ValidationFailed as e:
        details = {f"{target.entity}.{k}": v for k, v in (e.details or {}).items()}
        summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(details.items())[:5])
        raise ValidationFailed(f"the {target.entity} this conversion makes is invalid: {summary}",
                               details=details, hint="fix the lead, send values: {entity: {field: value}}, or "
                                                     "correct the conversion's mapping") from e


def _relink(uow: UnitOfWork, conv: Conversion, record_id: int, made: Mapping[str, int]) -> dict[str, int]:
    """Records linked to the source get the links to the created records they lack (activities and tasks
    become visible from the new account); the caller may relink records they could not update themselves,
    the conversion being allowed by their right to update the source."""
    out: dict[str, int] = {}
    for relink in conv.relinks:
        plan = uow.state.plan(relink.entity)
        t = plan.table
        via = t.c[plan.entity.fields[relink.via].column_name]
        linked = uow.conn.execute(select(t).where(via == record_id, t.c.deleted_at.is_(None)).order_by(t.c.id)).all()
        count = 0
        for row in linked:
            current = rows.read(plan.readers, row._mapping)
            change = {f: made[e] for f, e in relink.fields if e in made and current.get(f) is None}
            if change:
                with uow.elevated():
                    uow.records.update(relink.entity, row.id, change, expected_version=None,
                                       audit_action=AUDIT_ACTION)
                count += 1
        if count:
            out[relink.entity] = count
    return out


def _mark(uow: UnitOfWork, conv: Conversion, source: Mapping[str, Any], made: Mapping[str, int]) -> dict[str, Any]:
    values = _evaluate(uow, conv.mark, source, conv.source)
    values.update({f: made[e] for f, e in conv.mark_links if e in made})
    return dict(uow.records.update(conv.source, source["id"], values, expected_version=None, bypass_readonly=True,
                                   audit_action=AUDIT_ACTION))


def write_steps(workspace: Workspace) -> list[Any]:
    """Conversion adds no write step: it is a service over the record service."""
    return []
