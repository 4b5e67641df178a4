"""Live changes of an approval flow written in YAML, applied as revisions (SQLite and PostgreSQL): a new
revision adds a step; instances already running finish on their version; ``crm plan`` lists them; a
``migrate:`` mapping moves them to the new version as the plan previewed (the worker's job); removing a
step that has waiting tasks is blocked without one."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.runtime import users
from engine.runtime.approvals import service, views
from engine.runtime.context import Actor, FixedClock
from engine.runtime.jobs.worker import Worker
from engine.runtime.runtime import Runtime
from engine.runtime.schema.operations import apply_workspace, compile_workspace, plan_folder
from tests.runtime.approvals_world import FILES

V1 = """
    approval: discount
    entity: quote
    trigger: {on: [submit]}
    steps:
      - {name: manager, assignee: "manager_of(owner)"}
"""
V2 = """
    approval: discount
    entity: quote
    trigger: {on: [submit]}
    steps:
      - {name: manager, assignee: "manager_of(owner)"}
      - {name: director, assignee: {role: sales_director}}
"""
V3 = """
    approval: discount
    entity: quote
    trigger: {on: [submit]}
    steps:
      - {name: check, assignee: {user: r1}}
      - {name: lead, assignee: "manager_of(owner)"}
      - {name: director, assignee: {role: sales_director}}
    migrate: {manager: lead}
"""
V4 = """
    approval: discount
    entity: quote
    trigger: {on: [submit]}
    steps:
      - {name: director, assignee: {role: sales_director}}
"""


class Live:
    def __init__(self, folder: Path, url: str) -> None:
        self.folder, self.url = folder, url
        self.clock = FixedClock()
        self.rt: Runtime | None = None

    def write(self, flow: str) -> None:
        (self.folder / "approvals").mkdir(exist_ok=True)
        (self.folder / "approvals" / "discount.yaml").write_text(textwrap.dedent(flow).lstrip(), "utf-8")

    def apply(self, flow: str, message: str) -> None:
        self.write(flow)
        apply_workspace(compile_workspace(self.folder), self.url, yes=True, allow_destructive=False, purge=False,
                        message=message, author="t", echo=lambda _s: None, confirm=lambda _q: True,
                        export_dir=self.folder / "exports")

    def runtime(self) -> Runtime:
        if self.rt is None:
            self.rt = Runtime.open(self.url, clock=self.clock)
        return self.rt

    def unit(self, who: str, **kw: Any) -> Any:
        rt = self.runtime()
        rt.refresh()
        with rt.engine.connect() as conn:
            actor = Actor.system() if who == "system" else users.actor_for(conn, rt.state.workspace, who)
        return rt.unit(actor, **kw)

    def quote(self) -> int:
        with self.unit("alice") as uow:
            qid = int(uow.records.create("quote", {"name": "Q", "discount_rate": 0.3})["id"])
            return service.submit(uow, "quote", qid)

    def view(self, instance: int) -> dict[str, Any]:
        with self.unit("admin", readonly=True) as uow:
            return dict(views.instance(uow, instance))

    def act(self, who: str, instance: int) -> str:
        [task] = [t for t in self.view(instance)["tasks"] if t["status"] == "ready" and t["assignee"] == who]
        with self.unit(who) as uow:
            service.complete(uow, task["id"], "approve")
        return str(self.view(instance)["status"])


@pytest.fixture(name="live")
def live_fixture(db_url: str, tmp_path: Path) -> Iterator[Live]:
    folder = tmp_path / "ws"
    for name, text in FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text).lstrip(), "utf-8")
    live = Live(folder, db_url)
    live.apply(V1, "v1")
    with live.unit("system") as uow:
        users.create_user(uow, "admin", roles=["admin"])
        east = users.create_team(uow, "east")
        users.create_user(uow, "carol", roles=["manager"], team="east")
        users.set_team_manager(uow, east, "carol")
        users.create_user(uow, "alice", roles=["sales"], team="east", manager="carol")
        users.create_user(uow, "dan", roles=["sales_director"])
        users.create_user(uow, "r1", roles=["reviewer"])
        users.create_user(uow, "r2", roles=["reviewer"])
        users.create_user(uow, "demo", roles=["reviewer"])
    try:
        yield live
    finally:
        if live.rt is not None:
            live.rt.close()


def notes(live: Live) -> list[str]:
    report = plan_folder(live.folder, live.url)
    return [f"{c.safety}: {c.description}" for c in report.plan.changes if c.kind == "feature_data"]


def test_running_instances_finish_on_their_version_and_a_mapping_moves_them(live: Live) -> None:
    on_v1 = live.quote()
    live.write(V2)
    assert notes(live) == ["safe: approval discount: 1 running instance stay on version "
                           f"{live.view(on_v1)['spec_digest'][:12]} and finish on it"]
    live.apply(V2, "v2: a director step")
    on_v2 = live.quote()
    assert live.act("carol", on_v1) == "approved"  # the old version had one step
    assert live.act("carol", on_v2) == "pending"
    assert live.act("dan", on_v2) == "approved"

    waiting = live.quote()  # on v2, waiting for the manager
    live.write(V3)
    [move] = notes(live)
    assert move.startswith("safe: move 1 running instance of approval discount from version ") and \
        move.endswith("(manager -> lead)")
    live.apply(V3, "v3: a check first, manager renamed lead")
    assert live.view(waiting)["tasks"][0]["step"] == "manager"  # the job moves it, not the apply
    live.clock.set(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))  # the job is queued at the apply's time
    worker = Worker(live.runtime(), "w")
    while worker.run_once().ran:
        pass
    view = live.view(waiting)
    assert [(t["step"], t["status"]) for t in view["tasks"]] == [("lead", "ready")]
    assert "migrate" in [h["decision"] for h in view["history"]]
    assert live.act("carol", waiting) == "pending"  # the check step counts as passed; the director is next
    assert live.act("dan", waiting) == "approved"


def test_removing_a_step_with_waiting_tasks_is_blocked_without_a_mapping(live: Live) -> None:
    live.quote()
    live.write(V4)
    [blocked] = notes(live)
    assert blocked.startswith("blocked: approval discount: 1 running instance of version ")
    assert "wait in manager, which the new version removes" in blocked
