"""Approval throughput and the inbox query (issue 11, "done when").

* ``approval instances/s``: the shipped ``quote_discount`` flow on a 40 % quote (made beforehand): the
  instance is started (manager, then director), the manager approves, the director approves -- three
  units of work through the approvals service, the workflow state written to the database at each wait
  state with the task rows, the history, the notifications and the outcome write of the quote.
  Baseline: raw SpiffWorkflow on the same generated BPMN with its default engine, the JSON of the whole
  workflow (``serialize_json``) written to a table in a transaction at each of the same wait states.
  The two are measured in alternating rounds (a change of load touches both alike).  Target >= 0.8x.
* ``inbox p95``: ``GET /approvals/tasks?assignee=me``'s query for one user among 100,000 open tasks of
  1,000 users (SQLite; PostgreSQL too when ``CRM_BENCH_PG_URL`` names a server: a scratch database is
  created there and dropped).  Target < 20 ms.

    .venv/bin/python -m bench.bench_approvals [--quick]
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _setup(root: Path, url: str) -> Any:
    from engine.dsl.scaffold import init_workspace
    from engine.runtime import users
    from engine.runtime.context import Actor
    from engine.runtime.runtime import Runtime
    from engine.runtime.schema.operations import apply_workspace, compile_workspace

    ws_dir = root / "acme"
    init_workspace(ws_dir, industry="manufacturing", name="acme", locale="en", currency="CNY", phone_region="CN")
    apply_workspace(compile_workspace(ws_dir), url, yes=True, allow_destructive=False, purge=False, message="bench",
                    author="bench", echo=lambda _s: None, confirm=lambda _q: True, export_dir=ws_dir / "exports")
    rt = Runtime.open(url)
    with rt.unit(Actor.system()) as uow:
        users.create_user(uow, "boss", roles=["sales_manager"])
        users.create_team(uow, "east_sales", manager="boss")
        users.create_user(uow, "li", roles=["sales"], team="east_sales")
        users.create_user(uow, "dan", roles=["sales_director"])
    with rt.engine.connect() as conn:
        li = users.actor_for(conn, rt.state.workspace, "li")
    with rt.unit(li) as uow:
        account = uow.records.create("account", {"name": "bench"})["id"]
    return rt, account


def _ours(rt: Any, account: int, n: int) -> float:
    from engine.runtime import users
    from engine.runtime.approvals import service, views

    with rt.engine.connect() as conn:
        actors = {name: users.actor_for(conn, rt.state.workspace, name) for name in ("li", "boss", "dan")}
    from sqlalchemy import update

    with rt.unit(actors["li"]) as uow:  # quotes below the trigger's threshold, then raised by SQL (no start)
        quotes = [uow.records.create("quote", {"account": account, "discount_rate": 0.1})["id"] for _ in range(n)]
    table = rt.state.schema.table("quote")
    with rt.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id.in_(quotes)).values(discount_rate=0.4))
    start = time.perf_counter()
    for qid in quotes:
        with rt.unit(actors["li"]) as uow:
            service.start_flow(uow, "quote_discount", qid, submitter_id=actors["li"].user_id)
        for who in ("boss", "dan"):
            with rt.unit(actors[who]) as uow:
                [task] = [t for t in views.inbox(uow, user_id=actors[who].user_id, limit=5)["items"]
                          if t["record_id"] == qid]
                service.complete(uow, task["id"], "approve")
    return n / (time.perf_counter() - start)


def _raw(rt: Any, n: int) -> float:
    """Raw SpiffWorkflow: the same BPMN, default engine, whole-workflow JSON stored at each wait state."""
    from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.camunda.parser.CamundaParser import CamundaParser
    from SpiffWorkflow.camunda.serializer import DEFAULT_CONFIG
    from SpiffWorkflow.util.task import TaskState
    from sqlalchemy import Column, Integer, MetaData, Table, Text, insert, update

    flow = rt.state.workspace.objects_of("approval")["quote_discount"].compiled
    xml = flow.bpmn_xml.replace("approved == false", "approved == False")
    for text in flow.expressions:  # the default engine evaluates Python: give it Python
        xml = xml.replace(text.replace(">", "&gt;"), "True" if "0.35" in text else "False") \
            if text != "approved == false" else xml
    parser = CamundaParser()
    parser.add_bpmn_str(xml.encode("utf-8"))
    spec, subs = parser.get_spec(flow.process_id), parser.get_subprocess_specs(flow.process_id)
    ser = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(DEFAULT_CONFIG))
    meta = MetaData()
    table = Table("bench_raw_state", meta, Column("id", Integer, primary_key=True), Column("state", Text))
    meta.create_all(rt.engine)
    start = time.perf_counter()
    for _ in range(n):
        wf = BpmnWorkflow(spec, subs)
        wf.do_engine_steps()
        with rt.engine.begin() as conn:
            rid = conn.execute(insert(table).values(state=ser.serialize_json(wf))).inserted_primary_key[0]
        for _step in range(2):
            with rt.engine.begin() as conn:
                state = conn.execute(table.select().where(table.c.id == rid)).one().state
                wf = ser.deserialize_json(state)
                [task] = wf.get_tasks(state=TaskState.READY, manual=True)
                task.set_data(approved=True)
                task.run()
                wf.do_engine_steps()
                conn.execute(update(table).where(table.c.id == rid).values(state=ser.serialize_json(wf)))
    return n / (time.perf_counter() - start)


def _interleaved(rt: Any, account: int, n: int, rounds: int) -> tuple[float, float]:
    """Instances/s of ours and of the raw baseline, measured in alternating rounds of ``n // rounds``
    instances each, so a change of the machine's load touches both alike."""
    each = max(1, n // rounds)
    ours_t = raw_t = 0.0
    for _ in range(rounds):
        ours_t += each / _ours(rt, account, each)
        raw_t += each / _raw(rt, each)
    total = each * rounds
    return total / ours_t, total / raw_t


def _inbox(rt: Any, tasks: int, runs: int) -> float:
    """p95 (ms) of one user's inbox query among ``tasks`` open tasks of 1,000 users."""
    from sqlalchemy import insert, text

    from engine.runtime.approvals import views
    from engine.runtime.context import Actor
    from engine.runtime.engine_tables import (
        crm_approval_instances,
        crm_approval_specs,
        crm_approval_tasks,
        crm_users,
    )

    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with rt.engine.begin() as conn:
        conn.execute(insert(crm_users), [{"username": f"bench{i}", "display_name": "", "roles": [], "active": True,
                                          "created_at": now} for i in range(1000)])
        first = conn.execute(text("SELECT min(id) FROM crm_users WHERE username LIKE 'bench%'")).scalar_one()
        conn.execute(insert(crm_approval_specs).values(digest="bench", flow="bench", process="p", spec={},
                                                       created_at=now))
        conn.execute(insert(crm_approval_instances), [
            {"flow": "bench", "spec_digest": "bench", "entity": "quote", "record_id": i, "status": "pending",
             "state": {}, "version": 1, "created_at": now, "updated_at": now} for i in range(tasks // 4)])
        low = conn.execute(text("SELECT min(id) FROM crm_approval_instances WHERE flow = 'bench'")).scalar_one()
        for chunk in range(0, tasks, 20_000):
            conn.execute(insert(crm_approval_tasks), [
                {"instance_id": low + i // 4, "step": "s", "wf_task": f"t{i}/1", "assignee_id": first + i % 1000,
                 "status": "ready", "seq": 0, "reminders": 0, "escalated": False, "created_at": now}
                for i in range(chunk, min(chunk + 20_000, tasks))])
        conn.execute(text("ANALYZE"))
    times = []
    for k in range(runs):
        with rt.unit(Actor.system(), readonly=True) as uow:
            t0 = time.perf_counter()
            views.inbox(uow, user_id=first + (k * 37) % 1000, limit=50)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.quantiles(times, n=20)[-1]


def measure(url: str, label: str, root: Path, quick: bool) -> list[dict[str, Any]]:
    rt, account = _setup(root, url)
    try:
        n = 20 if quick else 200
        ours, raw = _interleaved(rt, account, n, rounds=4 if quick else 8)
        p95 = _inbox(rt, 10_000 if quick else 100_000, 50 if quick else 200)
    finally:
        rt.close()
    return [{"name": f"approval instances/s ({label})", "value": round(ours, 1), "unit": "inst/s",
             "baseline": round(raw, 1), "ratio": round(ours / raw, 2), "target": ">= 0.8x"},
            {"name": f"inbox p95 ({label})", "value": round(p95, 2), "unit": "ms", "baseline": None, "ratio": None,
             "target": "< 20 ms"}]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Benchmark rows (see the module docstring)."""
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crm-bench-approvals-") as tmp:
        root = Path(tmp)
        out.extend(measure(f"sqlite:///{root / 'bench.db'}", "sqlite", root / "sqlite", quick))
        pg_url = os.environ.get("CRM_BENCH_PG_URL")
        if pg_url:
            from bench.bench_api import scratch_pg_database

            with scratch_pg_database(pg_url) as url:
                out.extend(measure(url, "postgresql", root / "pg", quick))
    return out


def main(argv: list[str]) -> int:
    for row in run(quick="--quick" in argv):
        print(f"{row['name']}: {row['value']} {row['unit']} (baseline {row['baseline']}, ratio {row['ratio']}; "
              f"target {row['target']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
