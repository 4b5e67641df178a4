"""Lead pools (公海): claim, return, assign, move, reveal, the pool lists and the recycle dry run.

Every operation runs in the caller's unit of work and is atomic: it locks what it checks (see
:mod:`engine.runtime.sales.pool_rules`), writes the record through the record service inside
``uow.elevated()`` (the pool's own rules allowed the write; validation rules, write steps and audit
run as for any write, and the audit names the caller), logs a row in ``crm_pool_log`` and notifies
whoever is concerned (an assignee; a holder whose record an admin returned or moved; recycles and
their warnings are :mod:`engine.runtime.sales.pool_recycle`'s).  Refusals are clear and stable:
``already_claimed``, ``holding_limit``, ``daily_claim_limit``, ``reclaim_cooldown``, ``not_in_pool``
(409), ``not_pool_member`` / ``not_pool_admin`` / ``assign_only`` (403), ``reason_required`` /
``bad_reason`` / ``masked_field`` (400), ``unknown_pool`` (404).

The feature plugin collects this module's ``write_steps``, ``job_kinds`` and ``read_masks``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from engine.dsl.model import Workspace, text_in
from engine.dsl.sales.pool import Pool, duration_text, pools_of
from engine.errors import BadRequest, Conflict, PermissionDenied
from engine.runtime import notify, users
from engine.runtime.records import exprs, filtering, journal, output
from engine.runtime.records.listing import Within
from engine.runtime.sales import pool_recycle, pool_rules
from engine.runtime.sales.pool_masks import PoolMask
from engine.runtime.sales.pool_step import PoolStep

if TYPE_CHECKING:
    from engine.runtime.records.service import Page
    from engine.runtime.runtime import UnitOfWork


# --------------------------------------------------------------------------- plugin hooks


def write_steps(workspace: Workspace) -> list[Any]:
    """The pool write step (order 450), for the entities that have pools."""
    by_entity: dict[str, tuple[str, ...]] = {}
    for pool in pools_of(workspace):
        by_entity[pool.entity] = (*by_entity.get(pool.entity, ()), pool.name)
    return [PoolStep(by_entity)] if by_entity else []


def read_masks(workspace: Workspace) -> list[Any]:
    """The pool mask, when some pool hides fields."""
    hidden: dict[str, dict[str, tuple[str, ...]]] = {}
    for pool in pools_of(workspace):
        hidden.setdefault(pool.entity, {})[pool.name] = pool.hidden_fields
    mask = PoolMask(hidden)
    return [mask] if mask.hidden else []


def job_kinds() -> list[Any]:
    """The recycle job (hourly)."""
    return [pool_recycle.RecycleJob()]


# --------------------------------------------------------------------------- claim, return, assign, move


def claim(uow: UnitOfWork, pool_name: str, record_id: Any) -> dict[str, Any]:
    """The actor claims an unclaimed record of a ``claim`` pool; returns the record as the holder sees it."""
    pool = pool_rules.get_pool(uow, pool_name)
    uid = pool_rules.user_id_of(uow)
    st = pool_rules.require(uow, pool)
    if pool.kind == "assign" and not st.admin:
        raise PermissionDenied(f"records of pool {pool.name!r} are handed out by its admins "
                               f"({pool.admins.describe()}); they cannot be claimed", code="assign_only",
                               hint="ask a pool admin to assign you one")
    pool_rules.lock_user(uow, uid)
    row = pool_rules.lock_record(uow, pool.entity, record_id)
    pool_rules.require_unclaimed(pool, row)
    pool_rules.check_cooldown(uow, pool, row.id, uid)
    pool_rules.check_limits(uow, pool, uid)
    now = uow.clock.now()
    with uow.elevated():
        record = uow.records.update(pool.entity, row.id, {"owner_id": uid, "claimed_at": now},
                                    expected_version=row.version, bypass_readonly=True, audit_action="claim")
    pool_rules.log(uow, pool.name, pool.entity, row.id, "claim", user_id=uid)
    return _as_seen(uow, pool, record)


def return_record(uow: UnitOfWork, pool_name: str, record_id: Any, reason: Any) -> dict[str, Any]:
    """The holder (or a pool admin) gives a record back, with a reason: it goes to the pool's
    ``return_to``, else the first pool whose ``when`` holds, else this one; the previous holder's
    cool-down starts.  A record held outside any pool may be given to this pool the same way."""
    pool = pool_rules.get_pool(uow, pool_name)
    uid = uow.actor.user_id
    row = pool_rules.lock_record(uow, pool.entity, record_id)
    if row.pool not in (None, pool.name):
        raise Conflict(f"{pool.entity} {row.id} belongs to pool {row.pool!r}, not {pool.name!r}", code="not_in_pool",
                       hint=f"return it to pool {row.pool!r}", details={"id": row.id, "pool": row.pool})
    if row.owner_id is None or (row.pool is not None and row.claimed_at is None):
        raise Conflict(f"{pool.entity} {row.id} is not held by anyone", code="not_held",
                       hint="only a held record can be returned")
    st = pool_rules.standing(uow, pool)
    if row.owner_id != uid and not st.admin:
        raise PermissionDenied(f"only the holder of {pool.entity} {row.id} or an admin of pool {pool.name!r} may "
                               "return it", code="not_holder")
    key, label = pool_rules.reason_of(pool, reason)
    target = pool_rules.target_pool(uow, pool, row.id)
    _put_back(uow, pool, row, target, "return")
    pool_rules.log(uow, pool.name, pool.entity, row.id, "return", user_id=row.owner_id, reason=key)
    if row.owner_id != uid:
        by, title = uow.actor.username, _title(uow, pool, row.id)
        notify.send(uow, row.owner_id, "pool_return", {
            "en": f"{by} returned {title} to {_label(target, 'en')}: {text_in(label, 'en', key)}",
            "zh": f"{by} 已将 {title} 退回{_label(target, 'zh')}：{text_in(label, 'zh', key)}"},
            entity=pool.entity, record_id=row.id, data={"pool": target.name, "reason": key},
            dedupe_key=f"pool:return:{pool.entity}:{row.id}:v{row.version}")
    routed = pool_rules.after_return(uow, pool.entity, row.id)
    return {"id": row.id, "pool": target.name, "reason": key, "routed": routed}


def _put_back(uow: UnitOfWork, pool: Pool, row: pool_rules.Locked, target: Pool, action: str) -> None:
    with uow.elevated():
        uow.records.update(pool.entity, row.id, {"pool": target.name, "claimed_at": None},
                           expected_version=row.version, bypass_readonly=True, audit_action=action)


def assign(uow: UnitOfWork, pool_name: str, record_id: Any, to: Any) -> dict[str, Any]:
    """A pool admin hands an unclaimed record to a member (``to``: a user id or username); the member's
    holding limit applies and they are notified."""
    pool = pool_rules.get_pool(uow, pool_name)
    pool_rules.require(uow, pool, admin=True)
    if isinstance(to, bool) or not isinstance(to, (int, str)):
        raise BadRequest("to must be a user id or a username", code="bad_request", details={"to": ["is required"]})
    target_id = users.user_id(uow.conn, to)
    if not pool_rules.lock_user(uow, target_id):
        raise BadRequest(f"user {to!r} is inactive", code="inactive_user", hint="assign to an active user")
    assignee = users.actor_for(uow.conn, uow.workspace, target_id)
    if not pool_rules.standing(uow, pool, assignee).sees:
        raise BadRequest(f"{assignee.username} is not a member of pool {pool.name!r} "
                         f"(members: {pool.members.describe()})", code="assignee_not_member",
                         details={"to": ["is not a member of the pool"]},
                         hint="assign to a member, or add them to a member team or role")
    row = pool_rules.lock_record(uow, pool.entity, record_id)
    pool_rules.require_unclaimed(pool, row)
    pool_rules.check_limits(uow, pool, target_id, who=assignee.username, claiming=False)
    with uow.elevated():
        uow.records.update(pool.entity, row.id, {"owner_id": target_id, "claimed_at": uow.clock.now()},
                           expected_version=row.version, bypass_readonly=True, audit_action="assign")
    pool_rules.log(uow, pool.name, pool.entity, row.id, "assign", user_id=target_id)
    title = _title(uow, pool, row.id)
    notify.send(uow, target_id, "pool_assign", {
        "en": f"{uow.actor.username} assigned you {title} from {_label(pool, 'en')}",
        "zh": f"{uow.actor.username} 从{_label(pool, 'zh')}分配给您：{title}"},
        entity=pool.entity, record_id=row.id, data={"pool": pool.name},
        dedupe_key=f"pool:assign:{pool.entity}:{row.id}:v{row.version}")
    return {"id": row.id, "pool": pool.name, "owner_id": target_id}


def move(uow: UnitOfWork, pool_name: str, record_id: Any, to_pool: Any) -> dict[str, Any]:
    """A pool admin moves a record of the pool (held or not) to another pool of the same entity; a holder
    loses it and is told."""
    pool = pool_rules.get_pool(uow, pool_name)
    pool_rules.require(uow, pool, admin=True)
    target = pool_rules.get_pool(uow, to_pool)
    if target.entity != pool.entity or target is pool:
        raise BadRequest(f"cannot move {pool.entity} records from {pool.name!r} to {target.name!r}",
                         code="bad_request", details={"to_pool": [f"name another pool of {pool.entity}"]})
    row = pool_rules.lock_record(uow, pool.entity, record_id)
    if row.pool != pool.name:
        pool_rules.require_unclaimed(pool, row)  # raises not_in_pool
    _put_back(uow, pool, row, target, "move")
    holder = row.owner_id if row.claimed_at is not None else None
    pool_rules.log(uow, pool.name, pool.entity, row.id, "move", user_id=holder, reason=f"to {target.name}")
    if holder is not None and holder != uow.actor.user_id:
        title = _title(uow, pool, row.id)
        notify.send(uow, holder, "pool_move", {
            "en": f"{uow.actor.username} moved {title} to {_label(target, 'en')}",
            "zh": f"{uow.actor.username} 已将 {title} 移至{_label(target, 'zh')}"},
            entity=pool.entity, record_id=row.id, data={"pool": target.name},
            dedupe_key=f"pool:move:{pool.entity}:{row.id}:v{row.version}")
    return {"id": row.id, "pool": target.name}


def reveal(uow: UnitOfWork, pool_name: str, record_id: Any, field: Any) -> dict[str, Any]:
    """A pool admin reads one hidden field of a record of the pool; logged and audited (``reveal``)."""
    pool = pool_rules.get_pool(uow, pool_name)
    pool_rules.require(uow, pool, admin=True)
    if not isinstance(field, str) or field not in pool.hidden_fields:
        raise BadRequest(f"{str(field)[:60]!r} is not a hidden field of pool {pool.name!r}", code="bad_request",
                         details={"field": [f"one of: {', '.join(pool.hidden_fields) or 'none'}"]})
    if field in uow.guard.access(pool.entity).hidden:
        raise PermissionDenied(f"your roles hide {pool.entity}.{field}", code="forbidden")
    row = pool_rules.lock_record(uow, pool.entity, record_id)
    if row.pool != pool.name:
        pool_rules.require_unclaimed(pool, row)
    with uow.elevated():
        value = uow.records.get(pool.entity, row.id, fields=[field])[field]
    pool_rules.log(uow, pool.name, pool.entity, row.id, "reveal", user_id=None, reason=field)
    journal.write(uow, uow.clock.now(), [(pool.entity, row.id, "reveal", field, None, None)])
    return {"id": row.id, "field": field, "value": value}


# --------------------------------------------------------------------------- reading


def overview(uow: UnitOfWork) -> list[dict[str, Any]]:
    """The pools the actor is a member or an admin of: limits, how many records wait, what the actor holds."""
    out = []
    uid = uow.actor.user_id
    locale = uow.workspace.locale
    for pool in pool_rules.by_name(uow).values():
        st = pool_rules.standing(uow, pool)
        if not st.sees:
            continue
        out.append({
            "name": pool.name, "label": text_in(pool.label, locale, pool.name), "entity": pool.entity,
            "kind": pool.kind, "member": st.member, "admin": st.admin, "unclaimed": _count_unclaimed(uow, pool),
            "holding_limit": pool.holding_limit, "daily_claim_limit": pool.daily_claim_limit,
            "reclaim_cooldown": duration_text(pool.reclaim_cooldown), "warn_before": duration_text(pool.warn_before),
            "hidden_fields": list(pool.hidden_fields),
            "return_reasons": [{"key": r.key, "label": text_in(r.label, locale, r.key)} for r in pool.return_reasons],
            "recycle": [{"when": r.text, "reason": text_in(r.reason, locale, "")} for r in pool.recycle],
            "held": pool_rules.held_count(uow, pool, uid, counted_only=False) if uid is not None else 0,
            "held_counted": pool_rules.held_count(uow, pool, uid) if uid is not None else 0,
            "claimed_today": pool_rules.claims_today(uow, pool, uid) if uid is not None else 0,
            "unknown_teams": list(st.unknown_teams),
        })
    return out


def _count_unclaimed(uow: UnitOfWork, pool: Pool) -> int:
    t = pool_rules.table(uow, pool)
    return int(uow.conn.execute(select(func.count()).select_from(t).where(pool_rules.unclaimed(t, pool))).scalar_one())


def records(uow: UnitOfWork, pool_name: str, *, filter: str | None = None, sort: str | None = None,
            limit: int = 50, cursor: str | None = None, count: bool = False,
            fields: Sequence[str] | None = None) -> Page:
    """A page of the pool's unclaimed records (members and admins), hidden fields masked.

    A filter or sort on a hidden field is refused (``masked_field``): every record listed is masked,
    so it could only probe the hidden values.
    """
    pool = pool_rules.get_pool(uow, pool_name)
    pool_rules.require(uow, pool)
    plan = uow.state.plan(pool.entity)
    _refuse_masked(uow, pool, plan, filter, sort)
    within = Within(("pool", pool.name), pool_rules.unclaimed(plan.table, pool))
    page: Page = uow.records.list(pool.entity, filter=filter, sort=sort, limit=limit, cursor=cursor, count=count,
                                  fields=fields, within=within)
    return page


def _refuse_masked(uow: UnitOfWork, pool: Pool, plan: Any, filter: str | None, sort: str | None) -> None:
    hidden = set(pool.hidden_fields)
    used: set[str] = set()
    if isinstance(filter, str) and filter.strip():
        used |= exprs.fields_used(filtering.compiled_filter(uow, plan, filter))
    if isinstance(sort, str):
        used |= {p.strip().lstrip("-+") for p in sort.split(",")}
    bad = sorted(used & hidden)
    if bad:
        raise BadRequest(f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} hidden while records are in pool "
                         f"{pool.name!r}: you cannot filter or sort on {'it' if len(bad) == 1 else 'them'}",
                         code="masked_field", details={"filter": [f"{b} is masked in this pool" for b in bad]},
                         hint="filter on other fields (company, region, source...); the holder sees the values "
                              "once the record is claimed")


def preview(uow: UnitOfWork, pool_name: str | None = None, at: dt.datetime | None = None
            ) -> list[pool_recycle.Preview]:
    """What the next recycle run (at ``at``, default now) would return and warn about, per pool: every
    record for a pool's admins, the actor's own for a member; the pools with recycle rules the actor sees."""
    pools = [pool_rules.get_pool(uow, pool_name)] if pool_name is not None else \
        [p for p in pool_rules.by_name(uow).values() if p.recycle]
    out = []
    for pool in pools:
        st = pool_rules.require(uow, pool) if pool_name is not None else pool_rules.standing(uow, pool)
        if not st.sees:
            continue
        owner = None if st.admin else uow.actor.user_id
        out.append(pool_recycle.preview(uow, pool, at, owner=owner))
    return out


# --------------------------------------------------------------------------- helpers


def _as_seen(uow: UnitOfWork, pool: Pool, record: dict[str, Any]) -> dict[str, Any]:
    """The claimed record as its holder sees it (their field rules; unmasked now), from what the write
    returned; only its pool fields when the holder's roles cannot read the entity."""
    access = uow.guard.access(pool.entity)
    if access.read == "none":
        return {"id": record["id"], "pool": pool.name, "owner_id": uow.actor.user_id}
    return {k: record.get(k) for k in output.visible_keys(uow.state.plan(pool.entity), access)}


def _title(uow: UnitOfWork, pool: Pool, record_id: int) -> str:
    return pool_recycle.record_title(uow, pool, record_id)


def _label(pool: Pool, lang: str) -> str:
    return pool.label.get(lang) or pool.label.get("en") or pool.name
