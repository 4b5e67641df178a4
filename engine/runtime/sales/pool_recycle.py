"""Recycling: held records that a pool's rules say were neglected go back to the pool, with the rule's
reason; their holders are warned ``warn_before`` ahead.

One SQL statement per pool finds them: the pool's held records (``pool = :p AND claimed_at IS NOT
NULL``, index-served) where one of the recycle rules holds at the moment of the run and
``never_recycle`` does not; a ``CASE`` names the first rule that holds.  Warnings are the records for
which a rule holds at *run + warn_before* but none yet at the run, and whose holder was not warned since
the record was last written.

The job (``pools.recycle``, hourly) works in batches of :data:`BATCH` records, each batch one job in
one transaction: a batch that fills up queues the next one (idempotent by key) in the same transaction,
so a worker killed mid-run loses only its uncommitted batch, which the next worker runs again once the
lease expires; records it returned are no longer held, so none is returned twice.  On PostgreSQL the
batch locks its records ``FOR UPDATE SKIP LOCKED``: two workers running the job at once take different
records, and a record another worker returned in between no longer matches when its lock is granted.
Every notification carries a dedupe key (record and version), so a retried batch never notifies twice.
:func:`preview` runs the same statements without writing (``crm pools preview``, ``GET
/pools/<pool>/preview``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, and_, case, exists, not_, or_, select

from engine.dsl.model import text_in
from engine.dsl.sales.pool import Pool, RecycleRule, duration_text
from engine.runtime import notify
from engine.runtime.engine_tables import crm_pool_log, crm_users
from engine.runtime.sales import pool_rules
from engine.runtime.sales.pool_rules import condition, held

if TYPE_CHECKING:
    from engine.runtime.jobs.worker import JobContext
    from engine.runtime.runtime import UnitOfWork

#: records returned or warned per job (one transaction); a full batch queues the next one
BATCH = 50
JOB = "pools.recycle"
MAX_PREVIEW = 1000


@dataclass(frozen=True, slots=True)
class Candidate:
    """A held record a recycle run would return (or warn about), and the rule that fires for it."""

    pool: str
    id: int
    owner_id: int
    version: int
    claimed_at: dt.datetime
    rule: RecycleRule
    title: str

    def to_dict(self, locale: str) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "holder_id": self.owner_id, "claimed_at": self.claimed_at,
                "rule": self.rule.index, "when": self.rule.text, "reason": text_in(self.rule.reason, locale, ""),
                "reason_label": dict(self.rule.reason)}


def _rules_at(uow: UnitOfWork, pool: Pool, at: dt.datetime) -> list[Any]:
    return [condition(uow, pool, r.when, at) for r in pool.recycle]


def _statement(uow: UnitOfWork, pool: Pool, at: dt.datetime, *, warn: bool, owner: int | None) -> Select[Any]:
    t = pool_rules.table(uow, pool)
    now_rules = _rules_at(uow, pool, at)
    where = [held(t, pool, owner)]
    if pool.never_recycle is not None:
        where.append(not_(condition(uow, pool, pool.never_recycle, at)))
    if warn:
        assert pool.warn_before is not None
        later = _rules_at(uow, pool, at + pool.warn_before)
        log = crm_pool_log
        warned = exists().where(log.c.entity == pool.entity, log.c.record_id == t.c.id, log.c.action == "warn",
                                log.c.at >= t.c.updated_at)
        where += [or_(*later), not_(or_(*now_rules)), not_(warned)]
        fires = later
    else:
        where.append(or_(*now_rules))
        fires = now_rules
    rule = case(*((c, i) for i, c in enumerate(fires)), else_=-1).label("rule")
    titles = [uow.schema.field_expr(pool.entity, f).label(f"t_{f}") for f in _title_fields(uow, pool)]
    # (created_at, id) is the tail of the engine's field indexes: ix_<entity>_pool serves this order
    return (select(t.c.id, t.c.owner_id, t.c.version, t.c.claimed_at, rule, *titles)
            .where(and_(*where)).order_by(t.c.created_at, t.c.id))


def _title_fields(uow: UnitOfWork, pool: Pool) -> list[str]:
    entity = uow.state.plan(pool.entity).entity
    return [n for n in dict.fromkeys(re.findall(r"\{([a-z][a-z0-9_]*)\}", entity.title or ""))
            if n in entity.fields and entity.fields[n].stored]


def _title(uow: UnitOfWork, pool: Pool, row: Any) -> str:
    entity = uow.state.plan(pool.entity).entity
    text = entity.title or ""
    for f in _title_fields(uow, pool):
        value = row._mapping[f"t_{f}"]
        text = text.replace("{" + f + "}", "" if value is None else str(value))
    return text or f"{pool.entity} {row.id}"


def record_title(uow: UnitOfWork, pool: Pool, record_id: int) -> str:
    """The record's display title (the entity's ``title`` template), for notifications."""
    t = pool_rules.table(uow, pool)
    cols = [uow.schema.field_expr(pool.entity, f).label(f"t_{f}") for f in _title_fields(uow, pool)]
    row = uow.conn.execute(select(t.c.id, *cols).where(t.c.id == record_id)).first()
    return _title(uow, pool, row) if row is not None else f"{pool.entity} {record_id}"


def candidates(uow: UnitOfWork, pool: Pool, at: dt.datetime, *, warn: bool = False, owner: int | None = None,
               limit: int = BATCH, lock: bool = False) -> list[Candidate]:
    """The records a run at ``at`` would return (``warn``: would warn about), the first ``limit`` (oldest first).

    ``lock`` locks them (PostgreSQL: ``FOR UPDATE SKIP LOCKED``) for the run's transaction.
    """
    if not pool.recycle or (warn and pool.warn_before is None):
        return []
    stmt = _statement(uow, pool, at, warn=warn, owner=owner).limit(limit)
    if lock and uow.conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=pool_rules.table(uow, pool))
    return [Candidate(pool.name, int(r.id), int(r.owner_id), int(r.version), r.claimed_at, pool.recycle[r.rule],
                      _title(uow, pool, r))
            for r in uow.conn.execute(stmt) if r.rule >= 0]


# --------------------------------------------------------------------------- the run


def recycle_one(uow: UnitOfWork, pool: Pool, c: Candidate) -> str:
    """Return one candidate to its pool (through the record service), log it and notify the holder;
    returns the name of the pool it went to."""
    target = pool_rules.target_pool(uow, pool, c.id)
    with uow.elevated():
        uow.records.update(pool.entity, c.id, {"pool": target.name, "claimed_at": None},
                           expected_version=c.version, bypass_readonly=True, audit_action="recycle")
    locale = uow.workspace.locale
    pool_rules.log(uow, pool.name, pool.entity, c.id, "recycle", user_id=c.owner_id,
                   reason=text_in(c.rule.reason, locale, c.rule.text))
    notify.send(uow, c.owner_id, "pool_recycle", _texts(c, target, "recycle"), entity=pool.entity,
                record_id=c.id, data={"pool": pool.name, "to_pool": target.name, "rule": c.rule.index},
                dedupe_key=f"pool:recycle:{pool.entity}:{c.id}:v{c.version}")
    pool_rules.after_return(uow, pool.entity, c.id)
    return target.name


def warn_one(uow: UnitOfWork, pool: Pool, c: Candidate) -> bool:
    """Warn the holder that the record will be recycled within ``warn_before``; False when already warned."""
    sent = notify.send(uow, c.owner_id, "pool_recycle_warning", _texts(c, pool, "warn"), entity=pool.entity,
                       record_id=c.id, data={"pool": pool.name, "rule": c.rule.index,
                                             "within_seconds": int(pool.warn_before.total_seconds())
                                             if pool.warn_before else None},
                       dedupe_key=f"pool:warn:{pool.entity}:{c.id}:v{c.version}")
    if sent:
        pool_rules.log(uow, pool.name, pool.entity, c.id, "warn", user_id=c.owner_id,
                       reason=text_in(c.rule.reason, uow.workspace.locale, c.rule.text))
    return sent


def _texts(c: Candidate, pool: Pool, what: str) -> dict[str, str]:
    en_reason, zh_reason = c.rule.reason.get("en") or c.rule.text, c.rule.reason.get("zh") or c.rule.reason.get(
        "en") or c.rule.text
    en_pool, zh_pool = pool.label.get("en") or pool.name, pool.label.get("zh") or pool.label.get("en") or pool.name
    if what == "warn":
        left = duration_text(pool.warn_before) or ""
        return {"en": f"{c.title} goes back to {en_pool} within {left} unless you follow it up ({en_reason})",
                "zh": f"{c.title} 将在{left}内退回{zh_pool}，请及时跟进（{zh_reason}）"}
    return {"en": f"{c.title} went back to {en_pool}: {en_reason}", "zh": f"{c.title} 已退回{zh_pool}：{zh_reason}"}


def run_batch(uow: UnitOfWork, pools: Sequence[Pool], budget: int = BATCH) -> dict[str, int]:
    """Recycle, then warn, up to ``budget`` records of ``pools`` in the unit's transaction; the counts."""
    done = {"recycled": 0, "warned": 0}
    now = uow.clock.now()
    for pool in pools:
        for c in candidates(uow, pool, now, limit=budget - sum(done.values()), lock=True):
            recycle_one(uow, pool, c)
            done["recycled"] += 1
        if sum(done.values()) >= budget:
            break
        for c in candidates(uow, pool, now, warn=True, limit=budget - sum(done.values()), lock=True):
            done["warned"] += warn_one(uow, pool, c)
        if sum(done.values()) >= budget:
            break
    return done


class RecycleJob:
    """The ``pools.recycle`` job kind: one batch per job, the next batch queued while batches fill up."""

    name = JOB
    schedule = "hourly"
    max_attempts = 5

    def run(self, ctx: JobContext, payload: Mapping[str, Any]) -> None:
        uow = ctx.uow
        pools = [p for p in pool_rules.by_name(uow).values() if p.recycle]
        if not pools:
            return
        done = run_batch(uow, pools)
        if sum(done.values()) >= BATCH:
            run = str(payload.get("run") or f"job{ctx.job.id}")
            part = int(payload.get("part") or 0) + 1
            uow.enqueue(JOB, {"run": run, "part": part}, dedupe_key=f"{JOB}:{run}:{part}")


# --------------------------------------------------------------------------- the dry run


@dataclass(frozen=True, slots=True)
class Preview:
    """What the next run would do to one pool: the records it returns and those whose holders it warns."""

    pool: Pool
    at: dt.datetime
    returns: list[Candidate]
    warnings: list[Candidate]
    to_pools: Mapping[int, str]
    #: user id -> username of the holders named
    holders: Mapping[int, str]

    def to_dict(self, locale: str) -> dict[str, Any]:
        def one(c: Candidate) -> dict[str, Any]:
            return c.to_dict(locale) | {"holder": self.holders.get(c.owner_id)}

        return {"pool": self.pool.name, "at": self.at,
                "returns": [one(c) | {"to_pool": self.to_pools.get(c.id, self.pool.name)} for c in self.returns],
                "warnings": [one(c) for c in self.warnings],
                "rules": [{"index": r.index, "when": r.text, "reason": text_in(r.reason, locale, "")}
                          for r in self.pool.recycle]}


def preview(uow: UnitOfWork, pool: Pool, at: dt.datetime | None = None, *, owner: int | None = None,
            limit: int = MAX_PREVIEW) -> Preview:
    """The dry run of ``pool`` at ``at`` (default now); ``owner`` limits it to one holder's records."""
    at = at or uow.clock.now()
    returns = candidates(uow, pool, at, owner=owner, limit=limit)
    warnings = candidates(uow, pool, at, warn=True, owner=owner, limit=limit)
    targets = {c.id: pool_rules.target_pool(uow, pool, c.id).name for c in returns}
    ids = sorted({c.owner_id for c in (*returns, *warnings)})
    u = crm_users
    holders = {int(r.id): r.username for r in uow.conn.execute(select(u.c.id, u.c.username).where(u.c.id.in_(ids)))}
    return Preview(pool, at, returns, warnings, targets, holders)
