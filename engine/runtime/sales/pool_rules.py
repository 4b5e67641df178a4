"""What the pool service, its write step, its mask and its recycle job share: finding a pool, who may do
what with it, its SQL forms and the locks that keep claims within their limits.

SQL forms come from the compiled expressions (:func:`engine.runtime.sqlexpr.to_sql`, as list filters):
a pool's unclaimed records are ``pool = :name AND claimed_at IS NULL`` and its held ones ``pool = :name
AND claimed_at IS NOT NULL`` -- both served by the indexes on ``pool`` and ``claimed_at``.

Locks: a claim or an assignment locks the receiving user's row in ``crm_users`` (``FOR NO KEY UPDATE``
on PostgreSQL, which does not block the key-share locks of foreign keys) *before* it counts what the
user holds and claimed today, then locks the record row; every claim of one user is therefore counted
after the previous one committed, and the holding limit and daily cap cannot be exceeded by concurrent
requests.  SQLite serialises writers (every writing unit begins ``IMMEDIATE``).
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, and_, bindparam, func, not_, select
from sqlalchemy.sql.elements import ColumnElement

from engine.dsl.sales.pool import Pool, duration_text, pools_of
from engine.errors import BadRequest, Conflict, NotFound, PermissionDenied
from engine.runtime import teams
from engine.runtime.engine_tables import crm_pool_log, crm_teams, crm_users
from engine.runtime.sqlexpr import to_sql

if TYPE_CHECKING:
    from engine.runtime.runtime import UnitOfWork

MAX_REASON = 500


# --------------------------------------------------------------------------- finding pools


def by_name(uow: UnitOfWork) -> Mapping[str, Pool]:
    """Every pool of the unit's revision, by name (memoised per revision)."""
    return uow.state.memo("pools", "by_name",  # type: ignore[no-any-return]
                          lambda: {p.name: p for p in pools_of(uow.workspace)})


def get_pool(uow: UnitOfWork, name: str) -> Pool:
    """The pool called ``name``; NotFound (``unknown_pool``) naming the pools there are."""
    pools = by_name(uow)
    pool = pools.get(name) if isinstance(name, str) else None
    if pool is None:
        close = difflib.get_close_matches(str(name), list(pools), n=1)
        raise NotFound(f"there is no pool {str(name)[:60]!r}", code="unknown_pool",
                       hint=(f"did you mean {close[0]!r}? " if close else "")
                       + f"the pools: {', '.join(pools) or 'none'} (GET /api/v1/pools lists yours)")
    return pool


def table(uow: UnitOfWork, pool: Pool) -> Table:
    return uow.state.plan(pool.entity).table


# --------------------------------------------------------------------------- who may do what


@dataclass(frozen=True, slots=True)
class Standing:
    """What the unit's actor is to a pool: a member (may claim), an admin (may hand out), and the teams
    the pool names that do not exist (said in refusals, so an administrator can fix the configuration)."""

    member: bool
    admin: bool
    unknown_teams: tuple[str, ...] = ()

    @property
    def sees(self) -> bool:
        return self.member or self.admin


def standing(uow: UnitOfWork, pool: Pool, actor: Any = None) -> Standing:
    """The standing of ``actor`` (default: the unit's) in ``pool``; administrators are admins of every pool."""
    who = actor if actor is not None else uow.actor
    names = set(pool.members.teams) | set(pool.admins.teams)
    teams = _teams(uow, names) if names else {}
    mine = _team_ids_of(uow, who) if names else frozenset()

    def matches(aud: Any) -> bool:
        return (any(r in who.roles for r in aud.roles) or who.username in aud.users
                or any(teams.get(t) in mine for t in aud.teams if t in teams))

    admin = bool(who.is_admin) or matches(pool.admins)
    missing = tuple(sorted(n for n in names if n not in teams))
    return Standing(matches(pool.members), admin, missing)


def _teams(uow: UnitOfWork, names: set[str]) -> dict[str, int]:
    """name -> id of the named teams that exist (found ones remembered per revision: a team's name and
    id do not change; one not found is looked up again next time, it may have been created since)."""
    found = {n: i for n in names if (i := uow.state.cached("pool_teams", n)) is not None}
    missing = sorted(names - set(found))
    if missing:
        for r in uow.conn.execute(select(crm_teams.c.name, crm_teams.c.id).where(crm_teams.c.name.in_(missing))):
            found[r.name] = int(r.id)
            uow.state.store("pool_teams", r.name, int(r.id))
    return found


def _team_ids_of(uow: UnitOfWork, who: Any) -> frozenset[int]:
    """The user's teams, the teams they manage, and the teams below those (as the ``team`` scope)."""
    if who.user_id == uow.actor.user_id:
        return uow.guard.team_ids() if not uow.guard.actor.is_system else _managed(uow, who)
    return _managed(uow, who)


def _managed(uow: UnitOfWork, who: Any) -> frozenset[int]:
    return teams.teams_of(uow.conn, who.user_id, who.team_id)


def require(uow: UnitOfWork, pool: Pool, *, admin: bool = False) -> Standing:
    """The actor's standing, or PermissionDenied: ``not_pool_member`` / ``not_pool_admin``."""
    st = standing(uow, pool)
    if admin and not st.admin:
        raise PermissionDenied(f"only the admins of pool {pool.name!r} may do this ({pool.admins.describe()})",
                               code="not_pool_admin", hint="ask one of them, or an administrator")
    if not st.sees:
        extra = f"; the pool names teams that do not exist: {', '.join(st.unknown_teams)}" \
            if st.unknown_teams else ""
        raise PermissionDenied(f"you are not a member of pool {pool.name!r} (members: {pool.members.describe()})"
                               + extra, code="not_pool_member",
                               hint="an administrator can add you to a member team or role" +
                               (f", or create the team(s) {', '.join(st.unknown_teams)} "
                                f"(pool {pool.name!r} is defined at {pool.location})" if st.unknown_teams else ""),
                               details={"pool": pool.name, "unknown_teams": list(st.unknown_teams)})
    return st


def user_id_of(uow: UnitOfWork) -> int:
    """The actor's user id; BadRequest for the system actor (it holds nothing)."""
    uid = uow.actor.user_id
    if uid is None:
        raise BadRequest("the system actor cannot hold records; act as a user", code="bad_request")
    return uid


# --------------------------------------------------------------------------- SQL forms


def condition(uow: UnitOfWork, pool: Pool, compiled: Any, at: dt.datetime, *, loose: bool = False
              ) -> ColumnElement[bool]:
    """The SQL form of one of the pool's conditions at moment ``at`` (``days_since`` counts to ``at``).
    ``loose``: NULL may stand for false (fine in WHERE, and index-friendly); else always true or false."""
    return to_sql(compiled, uow.schema, pool.entity, user_id=None, now=at, for_filter=loose)


def unclaimed(t: Table, pool: Pool) -> ColumnElement[bool]:
    """The pool's unclaimed live records."""
    return and_(t.c.pool == pool.name, t.c.claimed_at.is_(None), t.c.deleted_at.is_(None))


def held(t: Table, pool: Pool, user_id: Any = None) -> ColumnElement[bool]:
    """The pool's live records someone holds (``user_id``: that user)."""
    parts = [t.c.pool == pool.name, t.c.claimed_at.is_not(None), t.c.owner_id.is_not(None), t.c.deleted_at.is_(None)]
    if user_id is not None:
        parts.append(t.c.owner_id == user_id)
    return and_(*parts)


def held_count(uow: UnitOfWork, pool: Pool, user_id: int, *, counted_only: bool = True) -> int:
    """How many of the pool's records ``user_id`` holds (those ``limit_excludes`` leaves out not counted)."""
    counted = counted_only and pool.limit_excludes is not None

    def make() -> Any:
        t = table(uow, pool)
        where = held(t, pool, bindparam("uid"))
        if counted:
            assert pool.limit_excludes is not None
            where = and_(where, not_(condition(uow, pool, pool.limit_excludes, uow.clock.now())))
        return select(func.count()).select_from(t).where(where)

    stmt = uow.state.memo("pool_held", (pool.name, counted), make) if not _clock_bound(pool, counted) else make()
    return int(uow.conn.execute(stmt, {"uid": user_id}).scalar_one())


def _clock_bound(pool: Pool, counted: bool) -> bool:
    """Whether the held-count statement reads the clock (then it is built per call)."""
    return counted and pool.limit_excludes is not None and bool(pool.limit_excludes.variables_used)


_CLAIMS_TODAY = select(func.count()).select_from(crm_pool_log).where(
    crm_pool_log.c.pool == bindparam("pool"), crm_pool_log.c.user_id == bindparam("uid"),
    crm_pool_log.c.action == "claim", crm_pool_log.c.at >= bindparam("since"))
_LAST_GIVEN_BACK = select(func.max(crm_pool_log.c.at)).where(
    crm_pool_log.c.entity == bindparam("entity"), crm_pool_log.c.record_id == bindparam("rid"),
    crm_pool_log.c.user_id == bindparam("uid"), crm_pool_log.c.action.in_(("return", "recycle", "move")),
    crm_pool_log.c.at > bindparam("since"))


def day_start(now: dt.datetime) -> dt.datetime:
    """Midnight (UTC) of ``now``'s day: the daily claim cap counts claims from here."""
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def claims_today(uow: UnitOfWork, pool: Pool, user_id: int) -> int:
    """How many claims ``user_id`` made from the pool today (UTC)."""
    since = day_start(uow.clock.now())
    return int(uow.conn.execute(_CLAIMS_TODAY, {"pool": pool.name, "uid": user_id, "since": since}).scalar_one())


def cooldown_until(uow: UnitOfWork, pool: Pool, record_id: int, user_id: int) -> dt.datetime | None:
    """Until when ``user_id`` may not claim the record again (it gave it back or lost it), or None."""
    if pool.reclaim_cooldown is None:
        return None
    since = uow.clock.now() - pool.reclaim_cooldown
    last = uow.conn.execute(_LAST_GIVEN_BACK, {"entity": pool.entity, "rid": record_id, "uid": user_id,
                                               "since": since}).scalar()
    return last + pool.reclaim_cooldown if last is not None else None


# --------------------------------------------------------------------------- locks and checks


_LOCK_USER = select(crm_users.c.id, crm_users.c.active).where(crm_users.c.id == bindparam("uid"))
_LOCK_USER_PG = _LOCK_USER.with_for_update(key_share=True)


def lock_user(uow: UnitOfWork, user_id: int) -> bool:
    """Lock ``user_id``'s row until the unit ends (see the module docstring); whether the user is active."""
    stmt = _LOCK_USER_PG if uow.conn.dialect.name == "postgresql" else _LOCK_USER
    row = uow.conn.execute(stmt, {"uid": user_id}).first()
    if row is None:
        raise NotFound(f"no user {user_id}", code="unknown_user")
    return bool(row.active)


@dataclass(frozen=True, slots=True)
class Locked:
    """A record row locked for a pool operation: what the operation checks."""

    id: int
    version: int
    pool: str | None
    claimed_at: dt.datetime | None
    owner_id: int | None


def lock_record(uow: UnitOfWork, entity: str, record_id: Any) -> Locked:
    """Lock the live record's row until the unit ends; NotFound when there is none."""
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        raise BadRequest("id must be a record id (a whole number)", code="bad_request",
                         details={"id": ["must be a whole number"]})
    def make() -> Any:
        t = uow.state.plan(entity).table
        return select(t.c.id, t.c.version, t.c.pool, t.c.claimed_at, t.c.owner_id).where(
            t.c.id == bindparam("rid"), t.c.deleted_at.is_(None)).with_for_update()

    row = uow.conn.execute(uow.state.memo("pool_lock", entity, make), {"rid": record_id}).first()
    if row is None:
        raise NotFound(f"{entity} {record_id} not found", code="not_found")
    return Locked(int(row.id), int(row.version), row.pool, row.claimed_at, row.owner_id)


def require_unclaimed(pool: Pool, row: Locked) -> None:
    """Conflict unless the locked record sits unclaimed in ``pool``."""
    if row.pool != pool.name:
        where = f"pool {row.pool!r}" if row.pool else "no pool"
        raise Conflict(f"{pool.entity} {row.id} is not in pool {pool.name!r} (it is in {where})",
                       code="not_in_pool", details={"id": row.id, "pool": row.pool},
                       hint=f"GET /api/v1/pools/{pool.name}/records lists the records you can claim")
    if row.claimed_at is not None:
        raise Conflict(f"{pool.entity} {row.id} was already claimed from pool {pool.name!r}",
                       code="already_claimed", details={"id": row.id, "claimed_at": row.claimed_at},
                       hint="someone got it first; pick another record of the pool")


def check_limits(uow: UnitOfWork, pool: Pool, user_id: int, *, who: str = "you", claiming: bool = True) -> None:
    """Conflict (``daily_claim_limit`` / ``holding_limit``) when ``user_id`` may not take one more record."""
    if claiming and pool.daily_claim_limit is not None:
        today = claims_today(uow, pool, user_id)
        if today >= pool.daily_claim_limit:
            tomorrow = day_start(uow.clock.now()) + dt.timedelta(days=1)
            raise Conflict(f"{who} claimed {today} records from pool {pool.name!r} today; the daily limit is "
                           f"{pool.daily_claim_limit}", code="daily_claim_limit",
                           hint=f"claim again from {tomorrow:%Y-%m-%d %H:%M} UTC",
                           details={"limit": pool.daily_claim_limit, "claimed_today": today, "until": tomorrow})
    if pool.holding_limit is not None:
        holding = held_count(uow, pool, user_id)
        if holding >= pool.holding_limit:
            raise Conflict(f"{who} hold {holding} records from pool {pool.name!r}; the holding limit is "
                           f"{pool.holding_limit}", code="holding_limit",
                           hint="return or convert some of them first",
                           details={"limit": pool.holding_limit, "held": holding})


def check_cooldown(uow: UnitOfWork, pool: Pool, record_id: int, user_id: int) -> None:
    """Conflict ``reclaim_cooldown`` while ``user_id`` may not claim the record again."""
    until = cooldown_until(uow, pool, record_id, user_id)
    if until is not None:
        raise Conflict(f"you held {pool.entity} {record_id} until recently; you may claim it again from "
                       f"{until:%Y-%m-%d %H:%M} UTC", code="reclaim_cooldown",
                       hint=f"pool {pool.name!r} has a reclaim cool-down of {duration_text(pool.reclaim_cooldown)} "
                            "for the previous holder; another member may claim it meanwhile",
                       details={"until": until, "cooldown_seconds": int(pool.reclaim_cooldown.total_seconds())
                                if pool.reclaim_cooldown else None})


def reason_of(pool: Pool, reason: Any) -> tuple[str, Mapping[str, str]]:
    """(what the log keeps, the text shown per language) of a return reason; BadRequest when missing or not
    listed."""
    if not isinstance(reason, str) or not reason.strip():
        keys = ", ".join(r.key for r in pool.return_reasons)
        raise BadRequest("give a reason for returning the record", code="reason_required",
                         details={"reason": ["is required"]},
                         hint=f"send one of: {keys}" if keys else "send a short text saying why")
    reason = reason.strip()
    if pool.return_reasons:
        found = pool.reason(reason)
        if found is None:
            keys = ", ".join(r.key for r in pool.return_reasons)
            raise BadRequest(f"{reason[:60]!r} is not a return reason of pool {pool.name!r}", code="bad_reason",
                             details={"reason": [f"must be one of: {keys}"]}, hint=f"send one of: {keys}")
        return found.key, found.label
    if len(reason) > MAX_REASON:
        raise BadRequest(f"the reason is too long ({len(reason)} characters; at most {MAX_REASON})",
                         code="bad_reason", details={"reason": [f"at most {MAX_REASON} characters"]})
    return reason, {"en": reason}


def target_pool(uow: UnitOfWork, pool: Pool, record_id: int) -> Pool:
    """Where a record returned or recycled from ``pool`` goes: ``return_to``; else this pool when it has no
    ``when`` (it takes any record) or its ``when`` holds; else the first other pool of the entity whose
    ``when`` holds; else this pool."""
    pools = by_name(uow)
    if pool.return_to is not None and pool.return_to in pools:
        return pools[pool.return_to]
    if pool.when is None or _holds(uow, pool, record_id):
        return pool
    for other in pools.values():
        if other is not pool and other.entity == pool.entity and other.when is not None and \
                _holds(uow, other, record_id):
            return other
    return pool


def _holds(uow: UnitOfWork, pool: Pool, record_id: int) -> bool:
    """Whether the pool's ``when`` holds for the stored record (its SQL form: one-hop names work too)."""
    assert pool.when is not None
    t = table(uow, pool)
    stmt = select(t.c.id).where(t.c.id == record_id, condition(uow, pool, pool.when, uow.clock.now(), loose=True))
    return uow.conn.execute(stmt).first() is not None


def log(uow: UnitOfWork, pool: str, entity: str, record_id: int, action: str, *, user_id: int | None,
        reason: str | None = None) -> None:
    """One row of ``crm_pool_log`` (the actor and the time are the unit's)."""
    uow.conn.execute(_LOG, {"pool": pool, "entity": entity, "record_id": record_id, "user_id": user_id,
                            "action": action, "reason": reason, "actor_id": uow.actor.user_id,
                            "at": uow.clock.now()})


_LOG = crm_pool_log.insert()


def after_return(uow: UnitOfWork, entity: str, record_id: int) -> str | None:
    """Route a record that went back to a pool through the entity's assignment documents that say
    ``on: [..., return]`` (``engine.runtime.sales.assignment.route``, when that module offers it); the
    rule that placed it, or None."""
    wanted = any(o.data.get("entity") == entity and "return" in (o.data.get("on") or ())
                 for o in uow.workspace.objects_of("assignment").values())
    if not wanted:
        return None
    from engine.runtime.sales import assignment

    route = getattr(assignment, "route", None)
    if route is None:
        return None
    with uow.elevated():
        result: str | None = route(uow, entity, record_id, trigger="return")
    return result
