"""Durable events, the job queue and the worker, on SQLite and PostgreSQL.

* an event whose durable handler is installed is stored with the write; a server killed (SIGKILL) right
  after the commit loses nothing: ``crm worker --once`` delivers it exactly once;
* two workers share 1,000 jobs, none run twice;
* a job failing 5 times is dead with its error, shown by ``crm jobs``; ``--retry`` re-queues it;
* scheduled kinds keep one pending run; idempotent enqueue; a graceful stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.runtime.context import Actor, FixedClock
from engine.runtime.engine_tables import crm_jobs, crm_outbox
from engine.runtime.jobs import queue
from engine.runtime.jobs.worker import Worker
from engine.runtime.runtime import Runtime
from engine.runtime.schema.operations import apply_workspace, compile_workspace
from tests.conftest import Install

PLUGIN = '''
    from engine.plugins import hookimpl


    class Deliver:
        name = "deliver"
        events = ("item.created",)

        def handle(self, ctx, event):
            ctx.uow.records.create("delivery", {"event_key": event["key"], "item": event["record_id"]})


    class Count:
        name = "count"

        def run(self, ctx, payload):
            ctx.uow.records.create("delivery", {"event_key": "job", "job": ctx.job.id})


    class Flaky:
        name = "flaky"
        max_attempts = 5

        def run(self, ctx, payload):
            raise RuntimeError("the partner system said no")


    class Tick:
        name = "tick"
        schedule = "every 5m"

        def run(self, ctx, payload):
            ctx.uow.records.create("delivery", {"event_key": "tick " + payload["scheduled_for"]})


    @hookimpl
    def crm_event_handlers(workspace):
        return [Deliver()]


    @hookimpl
    def crm_job_kinds():
        return [Count(), Flaky(), Tick()]
'''
FILES = {
    "workspace.yaml": "workspace: jobs\nplugins: [jobplug]\n",
    "entities.yaml": """
        entity: item
        fields:
          name: {type: string}
        ---
        entity: delivery
        fields:
          event_key: {type: string}
          item: {type: integer}
          job: {type: integer}
    """,
    "roles.yaml": "role: admin\nadmin: true\n",
}


@pytest.fixture
def folder(install_plugin: Install, tmp_path: Path) -> Path:
    install_plugin("jobplug", PLUGIN)
    root = tmp_path / "ws"
    for name, body in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return root


@pytest.fixture
def applied(folder: Path, db_url: str, tmp_path: Path) -> str:
    apply_workspace(compile_workspace(folder), db_url, yes=True, allow_destructive=False, purge=False, message="v1",
                    author="t", echo=lambda _s: None, confirm=lambda _q: True, export_dir=tmp_path / "exports")
    return db_url


def _deliveries(rt: Runtime, key: str | None = None) -> list[dict[str, Any]]:
    with rt.unit(Actor.system(), readonly=True) as uow:
        page = uow.records.list("delivery", filter=f"event_key == '{key}'" if key else None, limit=1000)
    return page.items


def _crm(*args: str, db_url: str, folder: Path) -> subprocess.CompletedProcess[str]:
    site = next(p for p in sys.path if p.endswith("site"))
    env = {**os.environ, "CRM_DATABASE_URL": db_url,
           "PYTHONPATH": site + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "engine.cli", *args, str(folder)], capture_output=True, text=True,
                          env=env, timeout=180, check=False)


KILLED_SERVER = """
import os, signal, sys
from engine.runtime.context import Actor
from engine.runtime.runtime import Runtime
rt = Runtime.open(sys.argv[1])
with rt.unit(Actor.system()) as uow:
    made = uow.records.create("item", {"name": "killed right after the commit"})
print(made["id"], flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # after the commit: no in-process listener, no cleanup, nothing else
"""


def test_an_event_survives_sigkill_after_commit_and_is_delivered_once(applied: str, folder: Path) -> None:
    site = next(p for p in sys.path if p.endswith("site"))
    env = {**os.environ, "PYTHONPATH": site + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", KILLED_SERVER, applied], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert proc.returncode == -9, proc.stderr
    item_id = int(proc.stdout.strip())
    first = _crm("worker", "--once", db_url=applied, folder=folder)
    assert first.returncode == 0 and "dispatched 1 event; ran 1 job: 1 done" in first.stdout, first.stderr
    again = _crm("worker", "--once", db_url=applied, folder=folder)
    assert again.returncode == 0 and "dispatched 0 events; ran 0 jobs" in again.stdout, again.stderr
    rt = Runtime.open(applied)
    try:
        delivered = _deliveries(rt, "item.created")
        assert [d["item"] for d in delivered] == [item_id]
    finally:
        rt.close()


def test_a_rolled_back_write_stores_no_event(applied: str) -> None:
    rt = Runtime.open(applied)
    try:
        with pytest.raises(RuntimeError), rt.unit(Actor.system()) as uow:
            uow.records.create("item", {"name": "never"})
            raise RuntimeError("the unit fails after the write")
        with rt.unit(Actor.system()) as uow:
            uow.records.update_many("item", None, {"name": "x"})  # updates: no handler wants them
            assert uow.conn.execute(select(func.count()).select_from(crm_outbox)).scalar() == 0
    finally:
        rt.close()


def test_two_workers_share_a_thousand_jobs_none_twice(applied: str) -> None:
    runtimes = [Runtime.open(applied), Runtime.open(applied)]
    try:
        with runtimes[0].unit(Actor.system()) as uow:
            for i in range(1000):
                uow.enqueue("count", {"i": i})
        results: list[Any] = []

        def work(rt: Runtime, name: str) -> None:
            w = Worker(rt, name, batch=25)
            while (done := w.run_once()).ran:
                results.append((name, done.done))

        threads = [threading.Thread(target=work, args=(rt, f"w{i}")) for i, rt in enumerate(runtimes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        jobs = [d["job"] for d in _deliveries(runtimes[0], "job")]
        assert len(jobs) == 1000 and len(set(jobs)) == 1000, "a job ran twice or not at all"
        with runtimes[0].unit(Actor.system(), readonly=True) as uow:
            # the "count" jobs only: the fixture's "every 5m" kind runs too when the test crosses a boundary
            counts = {s: int(n) for s, n in uow.conn.execute(
                select(crm_jobs.c.status, func.count()).where(crm_jobs.c.kind == "count").group_by(crm_jobs.c.status))}
            ticks = int(uow.conn.execute(select(func.count()).select_from(crm_jobs).where(
                crm_jobs.c.kind != "count", crm_jobs.c.status == "done")).scalar_one())
        assert counts == {"done": 1000}, counts
        by_worker = {name: sum(n for w, n in results if w == name) for name in ("w0", "w1")}
        assert sum(by_worker.values()) == 1000 + ticks
    finally:
        for rt in runtimes:
            rt.close()


def test_a_job_failing_five_times_is_dead_with_its_error(applied: str, folder: Path) -> None:
    clock = FixedClock()
    rt = Runtime.open(applied, clock=clock)
    try:
        with rt.unit(Actor.system()) as uow:
            assert uow.enqueue("flaky", {}, dedupe_key="flaky-1")
            assert not uow.enqueue("flaky", {}, dedupe_key="flaky-1")  # idempotent
        worker = Worker(rt, "w")
        for attempt in range(1, 6):
            done = worker.run_once()
            assert done.ran == 1, attempt
            assert worker.run_once().ran == 0  # the backoff: not due again yet
            clock.advance(seconds=2 ** attempt + 1)
        [job] = _dead(rt)
        assert job.attempts == 5 and "RuntimeError: the partner system said no" in (job.last_error or "")
        assert done.dead == 1
    finally:
        rt.close()
    listing = _crm("jobs", db_url=applied, folder=folder)
    assert listing.returncode == 0 and "dead: 1" in listing.stdout and "the partner system said no" in listing.stdout
    retried = _crm("jobs", "--retry", str(job.id), db_url=applied, folder=folder)
    assert retried.returncode == 0 and f"job {job.id} is queued again" in retried.stdout
    rt = Runtime.open(applied)
    try:
        with rt.unit(Actor.system(), readonly=True) as uow:
            row = uow.conn.execute(select(crm_jobs.c.status, crm_jobs.c.attempts).where(crm_jobs.c.id == job.id))
            assert tuple(row.one()) == ("pending", 0)
    finally:
        rt.close()


def _dead(rt: Runtime) -> list[queue.Job]:
    with rt.unit(Actor.system(), readonly=True) as uow:
        return queue.list_jobs(uow.conn, ("dead",))


def test_scheduled_kinds_keep_one_pending_run(applied: str) -> None:
    clock = FixedClock()
    clock.set(clock.now().replace(minute=1, second=0, microsecond=0))
    rt = Runtime.open(applied, clock=clock)
    try:
        worker = Worker(rt, "w")
        # every scheduled kind gets its next run queued once: the fixture's tick and the engine's own
        # (the nightly scoring refresh, the hourly pool recycling, the approvals' timers every 5 minutes)
        kinds = rt.state.host.job_kinds().values()
        recurring = sum(1 for k in kinds if getattr(k, "schedule", None))
        assert worker.run_once().scheduled == recurring and worker.run_once().scheduled == 0
        clock.advance(minutes=4)  # the 5-minute mark
        done = worker.run_once()
        fives = sum(1 for k in kinds if getattr(k, "schedule", None) == "every 5m")  # the tick and approvals'
        assert fives == 2 and done.scheduled == fives and done.done == fives  # the next ones queued, the due ran
        ticks = _deliveries(rt)
        assert [t["event_key"] for t in ticks] == [f"tick {clock.now().isoformat()}"]
    finally:
        rt.close()


def test_run_forever_stops_gracefully(applied: str) -> None:
    rt = Runtime.open(applied)
    try:
        worker = Worker(rt, "w")
        thread = threading.Thread(target=worker.run_forever, kwargs={"interval": 0.05})
        thread.start()
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
    finally:
        rt.close()
