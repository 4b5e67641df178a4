"""A recycle run survives a worker killed in its middle (SIGKILL), on SQLite and PostgreSQL; ``crm pools
preview`` names what the run will return beforehand.

A test plugin's write step kills the ``crm worker`` process (a subprocess, the real clock) while it
returns the 70th lead of 120: the first batch of 50 is committed, the second dies with its transaction.
A worker started afterwards (its clock past the dead worker's lease) runs the interrupted batch again and
the last one: every lead is returned exactly once, its holder notified once, and no job is lost.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main
from engine.runtime import users
from engine.runtime.context import Actor, FixedClock
from engine.runtime.engine_tables import crm_jobs, crm_notifications, crm_pool_log
from engine.runtime.jobs.queue import LEASE
from engine.runtime.jobs.worker import Worker
from engine.runtime.runtime import Runtime
from engine.runtime.sales.pool_recycle import BATCH, JOB
from engine.runtime.schema.operations import apply_workspace, compile_workspace
from tests.conftest import Install
from tests.runtime.pool_world import FILES

KILLER = '''
    import os
    import signal

    from engine.plugins import hookimpl


    class Killer:
        """Kills its process (SIGKILL) on the POOLKILLER_AT-th record given back, when that variable is set."""

        name = "poolkiller"
        order = 999
        seen = 0

        def applies_to(self, entity):
            return entity == "lead"

        def before_write(self, ctx, entity, record, old):
            pass

        def after_write(self, ctx, entity, record, old):
            at = os.environ.get("POOLKILLER_AT")
            if at and old is not None and old.get("claimed_at") is not None and record.get("claimed_at") is None:
                Killer.seen += 1
                if Killer.seen >= int(at):
                    os.kill(os.getpid(), signal.SIGKILL)


    @hookimpl
    def crm_write_steps(workspace):
        return [Killer()]
'''
LEADS = 120
KILL_AT = 70


@pytest.fixture
def applied(install_plugin: Install, db_url: str, tmp_path: Path) -> Iterator[tuple[Path, str, list[int]]]:
    """The pool workspace with the killer plugin, 120 leads of bulk_pool held by alice for three days."""
    install_plugin("poolkiller", KILLER)
    folder = tmp_path / "ws"
    files = {**FILES, "workspace.yaml": "workspace: acme\nlocale: en\nphone_region: CN\nplugins: [poolkiller]\n"}
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    apply_workspace(compile_workspace(folder), db_url, yes=True, allow_destructive=False, purge=False,
                    message="v1", author="t", echo=lambda _s: None, confirm=lambda _q: True,
                    export_dir=tmp_path / "exports")
    rt = Runtime.open(db_url)
    try:
        with rt.unit(Actor.system()) as uow:
            users.create_team(uow, "east")
            alice = users.create_user(uow, "alice", roles=["sales"], team="east")
            ids: list[int] = uow.records.create_many("lead", [
                {"company": f"Lead {i}", "phone": "13800138000", "region": "east", "pool": "bulk_pool"}
                for i in range(LEADS)], bypass_readonly=True)
            claimed = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
            uow.records.update_many("lead", "pool == 'bulk_pool'", {"owner_id": alice, "claimed_at": claimed},
                                    bypass_readonly=True)
    finally:
        rt.close()
    yield folder, db_url, ids


def _env(db_url: str, **extra: str) -> dict[str, str]:
    site = next(p for p in sys.path if p.endswith("site"))
    return {**os.environ, "CRM_DATABASE_URL": db_url, "PYTHONPATH": site + os.pathsep + os.environ.get(
        "PYTHONPATH", ""), **extra}


def _count(rt: Runtime, stmt: Any) -> Any:
    with rt.unit(Actor.system(), readonly=True) as uow:
        return uow.conn.execute(stmt).all()


def test_a_worker_killed_mid_run_loses_nothing_and_returns_nothing_twice(applied: tuple[Path, str, list[int]]
                                                                          ) -> None:
    folder, url, ids = applied
    preview = CliRunner().invoke(main, ["pools", "preview", "bulk_pool", str(folder), "--db", url])
    assert preview.exit_code == 0, preview.output
    assert "bulk_pool (a run at " in preview.output and f"{LEADS} records to return, 0 warnings" in preview.output
    assert f"#{ids[0]:<7} Lead 0" in preview.output and "holder alice" in preview.output
    assert "rule 1: Held over a day  [days_since(claimed_at) > 1]" in preview.output

    rt = Runtime.open(url)
    try:
        with rt.unit(Actor.system()) as uow:
            uow.enqueue(JOB, {}, dedupe_key="crash-test-run")
    finally:
        rt.close()
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "worker", str(folder), "--batch", "1"],
                          capture_output=True, text=True, env=_env(url, POOLKILLER_AT=str(KILL_AT)), timeout=300,
                          check=False)
    assert proc.returncode == -9, (proc.stdout, proc.stderr)

    clock = FixedClock(dt.datetime.now(dt.UTC) + LEASE + dt.timedelta(minutes=1))  # the dead worker's lease is over
    rt = Runtime.open(url, clock=clock)
    try:
        log = crm_pool_log
        first = _count(rt, select(func.count()).select_from(log).where(log.c.action == "recycle"))
        assert first == [(BATCH,)]  # the first batch was committed; the killed one left nothing behind
        running = _count(rt, select(crm_jobs.c.payload).where(crm_jobs.c.status == "running"))
        assert [p for (p,) in running] == [{"run": running[0][0]["run"], "part": 1}]

        worker = Worker(rt, "after-restart")
        while worker.run_once().ran:
            pass

        per_record = _count(rt, select(log.c.record_id, func.count()).where(log.c.action == "recycle")
                            .group_by(log.c.record_id))
        assert sorted(r for r, _n in per_record) == sorted(ids) and {n for _r, n in per_record} == {1}
        n = crm_notifications
        sent = _count(rt, select(n.c.record_id, func.count()).where(n.c.kind == "pool_recycle")
                      .group_by(n.c.record_id))
        assert len(sent) == LEADS and {c for _r, c in sent} == {1}
        jobs = _count(rt, select(crm_jobs.c.payload, crm_jobs.c.status, crm_jobs.c.attempts)
                      .where(crm_jobs.c.kind == JOB).order_by(crm_jobs.c.id))
        chain = [(p.get("part", 0), s, a) for p, s, a in jobs if p.get("scheduled_for") is None]
        assert chain == [(0, "done", 1), (1, "done", 2), (2, "done", 1)]  # the killed batch ran again, once
        assert not [1 for _p, s, _a in jobs if s in ("running", "dead")]
        with rt.unit(Actor.system(), readonly=True) as uow:
            page = uow.records.list("lead", filter="pool == 'bulk_pool' and owner_id is null", count=True, limit=1)
            assert page.total == LEADS
    finally:
        rt.close()
