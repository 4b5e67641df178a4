"""``crm worker``: deliver durable events and run due jobs, on one or several processes.

One round (:meth:`Worker.run_once`):

1. dispatch pending outbox rows to the handlers of the active revision
   (one ``crm.event`` job per interested handler);
2. make sure every scheduled job kind has its next run queued;
3. claim due jobs (a lease, the attempt counted, committed) and run each in
   its own unit of work as the system actor; the job's work and its
   ``done`` mark commit together.  A job that raises is retried after a
   backoff, then dead with its error.

``run_forever`` repeats rounds until :meth:`stop` (``crm worker`` wires
SIGTERM and Ctrl+C to it; the job in progress finishes first).  The clock is
the runtime's, so tests move time instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import EngineError
from engine.runtime import crypto
from engine.runtime.context import Actor
from engine.runtime.jobs import outbox, queue, schedule

if TYPE_CHECKING:
    from engine.runtime.runtime import Runtime, UnitOfWork

log = logging.getLogger(__name__)
#: rounds of claiming in one ``run_once`` before it returns (a queue that refills forever still yields)
MAX_BATCHES = 1000


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job kind's ``run(ctx, payload)`` gets: the unit of work it runs in, and its job."""

    uow: UnitOfWork
    job: queue.Job
    worker: str


@dataclass
class Round:
    """What one round did."""

    dispatched: int = 0
    scheduled: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ran(self) -> int:
        return self.done + self.retried + self.dead


class EventDelivery:
    """The built-in job kind that hands one stored event to one durable handler."""

    name = outbox.EVENT_JOB
    schedule = None
    max_attempts = queue.MAX_ATTEMPTS

    def run(self, ctx: JobContext, payload: Mapping[str, Any]) -> None:
        wanted = payload.get("handler")
        handlers = {h.name: h for h in ctx.uow.state.host.event_handlers(ctx.uow.workspace)}
        handler = handlers.get(str(wanted))
        if handler is None:
            raise EngineError(f"no event handler {wanted!r} in the active revision (is its plugin still enabled?)",
                              code="unknown_handler")
        sealed = ctx.uow.state.memo("sealed_fields", "all", lambda: crypto.encrypted_fields(ctx.uow.workspace))
        handler.handle(ctx, outbox.opened(payload.get("event") or {}, sealed))


class Worker:
    """One worker process (or thread) of ``runtime``; ``name`` identifies its leases."""

    def __init__(self, runtime: Runtime, name: str | None = None, *, batch: int = 10) -> None:
        self.runtime = runtime
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.batch = batch
        self._stop = threading.Event()

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Finish the job in progress, then return from :meth:`run_forever`."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run_forever(self, interval: float = 1.0) -> None:
        """Rounds until :meth:`stop`; sleeps ``interval`` seconds when a round found nothing to do."""
        while not self._stop.is_set():
            done = self.run_once()
            if not done.ran and not done.dispatched:
                self._stop.wait(interval)

    def run_once(self) -> Round:
        """Dispatch, schedule, and run every job due now (see the module docstring)."""
        report = Round()
        report.dispatched = self._dispatch()
        report.scheduled = self._schedule()
        for _ in range(MAX_BATCHES):
            if self._stop.is_set():
                break
            jobs = self._claim()
            if not jobs:
                break
            for job in jobs:
                self._run(job, report)
            if report.dispatched or any(j.kind == outbox.EVENT_JOB for j in jobs):
                report.dispatched += self._dispatch()  # handlers' writes may have stored new events
        return report

    # ------------------------------------------------------------------ steps

    def _kinds(self) -> dict[str, Any]:
        kinds = dict(self.runtime.state.host.job_kinds())
        kinds[outbox.EVENT_JOB] = EventDelivery()
        return kinds

    def _dispatch(self) -> int:
        with self.runtime.unit(Actor.system()) as uow:
            handlers = uow.state.host.event_handlers(uow.workspace)
            return outbox.dispatch(uow.conn, handlers, now=uow.clock.now())

    def _schedule(self) -> int:
        made = 0
        recurring = [k for k in self._kinds().values() if getattr(k, "schedule", None)]
        if not recurring:
            return 0
        with self.runtime.unit(Actor.system()) as uow:
            now = uow.clock.now()
            for kind in recurring:
                at = schedule.next_run(kind.schedule, now)
                made += queue.enqueue(uow.conn, kind.name, {"scheduled_for": at.isoformat()}, now=now, run_at=at,
                                      dedupe_key=f"schedule:{kind.name}:{at.isoformat()}")
        return made

    def _claim(self) -> list[queue.Job]:
        with self.runtime.unit(Actor.system()) as uow:
            return queue.claim(uow.conn, self.name, now=uow.clock.now(), limit=self.batch)

    def _run(self, job: queue.Job, report: Round) -> None:
        kind = self._kinds().get(job.kind)
        try:
            if kind is None:
                raise EngineError(f"no job kind {job.kind!r} is registered (is its plugin enabled?)",
                                  code="unknown_job_kind")
            with self.runtime.unit(Actor.system()) as uow:
                kind.run(JobContext(uow, job, self.name), job.payload)
                if not queue.finish(uow.conn, job, self.name, now=uow.clock.now()):
                    raise _LeaseLost(job.id)
            report.done += 1
        except _LeaseLost:
            log.warning("job %s: the lease was taken over by another worker; its work was rolled back", job.id)
        except Exception as e:  # a job's failure is recorded on the job, never the end of the worker
            self._failed(job, kind, e, report)

    def _failed(self, job: queue.Job, kind: Any, error: BaseException, report: Round) -> None:
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        limit = getattr(kind, "max_attempts", None) or queue.MAX_ATTEMPTS
        with self.runtime.unit(Actor.system()) as uow:
            status = queue.fail(uow.conn, job, self.name, text, now=uow.clock.now(), max_attempts=limit)
        report.errors.append(f"job {job.id} ({job.kind}): {text}")
        if status == "dead":
            report.dead += 1
            log.error("job %s (%s) is dead after %s attempts: %s", job.id, job.kind, job.attempts, text)
        else:
            report.retried += 1
            log.warning("job %s (%s) failed (attempt %s), retrying: %s", job.id, job.kind, job.attempts, text)


class _LeaseLost(Exception):
    """The job was claimed by another worker while this one ran it (rolled back)."""
