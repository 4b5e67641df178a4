"""The job queue in ``crm_jobs``: enqueue (idempotent by ``dedupe_key``), claim, finish, fail, list, retry.

A job is ``pending`` until a worker claims it: the claim marks it
``running`` with the worker's name and the time (a *lease*), counts the
attempt and commits on its own, so a job that kills its worker still uses
up its attempts.  The worker then runs the job and marks it ``done`` in the
job's own transaction -- a job's database work and its completion commit
together, or not at all.  A job whose lease is older than
:data:`LEASE` (its worker died) is claimed again.  A job that raised goes
back to ``pending`` after a backoff, or to ``dead`` after its last attempt,
keeping the error.

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``, so several workers share
the queue without waiting on each other; SQLite serialises writers anyway.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.errors import BadRequest, NotFound
from engine.runtime.engine_tables import crm_jobs

#: how long a claimed job may run before another worker may take it over
LEASE = dt.timedelta(minutes=10)
#: attempts before a job is dead, unless its kind says otherwise
MAX_ATTEMPTS = 5
#: the longest wait between two attempts
MAX_BACKOFF = dt.timedelta(hours=1)
STATUSES = ("pending", "running", "done", "dead")
MAX_ERROR = 4000


@dataclass(frozen=True, slots=True)
class Job:
    """One row of ``crm_jobs`` as the worker and ``crm jobs`` see it."""

    id: int
    kind: str
    payload: Mapping[str, Any]
    status: str
    attempts: int
    run_at: dt.datetime
    last_error: str | None = None
    locked_by: str | None = None
    dedupe_key: str | None = None
    finished_at: dt.datetime | None = None

    @property
    def state(self) -> str:
        """``retrying`` for a pending job that failed before; else the status."""
        return "retrying" if self.status == "pending" and self.attempts else self.status


def _job(row: Any) -> Job:
    return Job(row.id, row.kind, row.payload or {}, row.status, row.attempts, row.run_at, row.last_error,
               row.locked_by, row.dedupe_key, row.finished_at)


def enqueue(conn: Connection, kind: str, payload: Mapping[str, Any], *, now: dt.datetime,
            run_at: dt.datetime | None = None, dedupe_key: str | None = None) -> bool:
    """Add a job in the caller's transaction; False when a job with ``dedupe_key`` exists already."""
    values = {"kind": kind, "payload": dict(payload), "run_at": run_at or now, "status": "pending",
              "attempts": 0, "created_at": now, "dedupe_key": dedupe_key}
    if dedupe_key is None:
        conn.execute(crm_jobs.insert().values(**values))
        return True
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (dialect_insert(crm_jobs).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(crm_jobs.c.id))  # rowcount is not reliable here across drivers; a returned id is
    return conn.execute(stmt).first() is not None


def claim(conn: Connection, worker: str, *, now: dt.datetime, limit: int = 10) -> list[Job]:
    """Mark up to ``limit`` due jobs ``running`` for ``worker`` and count the attempt (commit right after)."""
    j = crm_jobs
    due = or_(and_(j.c.status == "pending", j.c.run_at <= now),
              and_(j.c.status == "running", j.c.locked_at < now - LEASE))
    pick = select(j.c.id).where(due).order_by(j.c.run_at, j.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (update(j).where(j.c.id.in_(pick.scalar_subquery()))
            .values(status="running", locked_by=worker, locked_at=now, attempts=j.c.attempts + 1)
            .returning(*j.c))
    return sorted((_job(r) for r in conn.execute(stmt)), key=lambda job: (job.run_at, job.id))


def finish(conn: Connection, job: Job, worker: str, *, now: dt.datetime) -> bool:
    """Mark ``job`` done in the transaction that did its work; False when the worker lost its lease."""
    j = crm_jobs
    stmt = update(j).where(j.c.id == job.id, j.c.status == "running", j.c.locked_by == worker).values(
        status="done", finished_at=now, locked_by=None, last_error=None)
    return bool(conn.execute(stmt).rowcount)


def fail(conn: Connection, job: Job, worker: str, error: str, *, now: dt.datetime,
         max_attempts: int = MAX_ATTEMPTS) -> str:
    """Record a failed attempt: back to ``pending`` after a backoff, or ``dead``; returns the new status."""
    j = crm_jobs
    status = "dead" if job.attempts >= max_attempts else "pending"
    backoff = min(dt.timedelta(seconds=2 ** min(job.attempts, 20)), MAX_BACKOFF)
    values: dict[str, Any] = {"status": status, "locked_by": None, "last_error": error[:MAX_ERROR]}
    if status == "pending":
        values["run_at"] = now + backoff
    else:
        values["finished_at"] = now
    conn.execute(update(j).where(j.c.id == job.id, j.c.locked_by == worker).values(**values))
    return status


def list_jobs(conn: Connection, statuses: Sequence[str] = ("pending", "running", "dead"),
              limit: int = 100) -> list[Job]:
    """Jobs in ``statuses``, the ones due first."""
    j = crm_jobs
    stmt = select(j).where(j.c.status.in_(list(statuses))).order_by(j.c.run_at, j.c.id).limit(limit)
    return [_job(r) for r in conn.execute(stmt)]


def counts(conn: Connection) -> dict[str, int]:
    """status -> number of jobs."""
    j = crm_jobs
    return {s: int(n) for s, n in conn.execute(select(j.c.status, func.count()).group_by(j.c.status))}


def retry(conn: Connection, job_id: int, *, now: dt.datetime) -> None:
    """Put a dead (or waiting) job back in the queue now, with a fresh set of attempts."""
    j = crm_jobs
    row = conn.execute(select(j.c.status).where(j.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"there is no job {job_id}", code="not_found", hint="crm jobs lists them")
    if row.status in ("running", "done"):
        raise BadRequest(f"job {job_id} is {row.status}; only pending or dead jobs can be retried",
                         code="bad_request")
    conn.execute(update(j).where(j.c.id == job_id).values(status="pending", attempts=0, run_at=now,
                                                          locked_by=None, finished_at=None))
