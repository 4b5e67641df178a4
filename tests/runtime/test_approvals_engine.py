"""The approvals runtime under SpiffWorkflow: no workflow text is ever evaluated as Python, script tasks
are refused, specs are parsed once per flow version and stored once, instance state is stored without its
spec with a format version, and the real modeler files run to completion.  SQLite and PostgreSQL."""

from __future__ import annotations

import builtins
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.dsl.approvals.model import ApprovalStep
from engine.errors import WorkflowTextRefused
from engine.runtime.approvals import script, service, spec, views
from engine.runtime.engine_tables import crm_approval_instances, crm_approval_specs, crm_approval_tasks
from engine.runtime.jobs.worker import Worker
from tests.runtime.approvals_world import (
    ApprovalWorld,
    StepDef,
    build,
    definitions,
    file_flow,
    make_flow,
    manager,
    role,
    user,
)

REAL = Path(__file__).parents[1] / "fixtures" / "realworld" / "bpmn"


@pytest.fixture(name="aw")
def aw_fixture(db_url: str, tmp_path: Path) -> Iterator[ApprovalWorld]:
    w = build(db_url, tmp_path / "ws")
    try:
        yield w
    finally:
        w.rt.close()


def quote(aw: ApprovalWorld, **values: Any) -> int:
    with aw.unit("alice") as uow:
        return int(uow.records.create("quote", {"name": "Q", **values})["id"])


def submit(aw: ApprovalWorld, qid: int, flow: str | None = None) -> int:
    with aw.unit("alice") as uow:
        return service.submit(uow, "quote", qid, flow)


def decide_all(aw: ApprovalWorld, instance: int, decision: str = "approve") -> str:
    """Let every ready task's assignee decide until the instance ends; its status."""
    for _ in range(20):
        with aw.unit("admin", readonly=True) as uow:
            view = views.instance(uow, instance)
        ready = [t for t in view["tasks"] if t["status"] == "ready"]
        if view["status"] != "pending" or not ready:
            return str(view["status"])
        with aw.unit(ready[0]["assignee"]) as uow:
            service.complete(uow, ready[0]["id"], decision)
    raise AssertionError("the instance did not end")


def reviewinvoice(aw: ApprovalWorld) -> Any:
    steps = {"assignReviewer": ApprovalStep("assignReviewer", "Assign Reviewer", {}, (user("r1"),)),
             "reviewInvoice": ApprovalStep("reviewInvoice", "Review Invoice", {}, (user("r2"),))}
    return file_flow(aw.ws, "review_invoice", REAL / "camunda_reviewInvoice.bpmn", "ReviewInvoice", steps)


def timer_file(aw: ApprovalWorld) -> Any:
    steps = {"user_task_one": ApprovalStep("user_task_one", "User task one", {}, (user("r3"),))}
    return file_flow(aw.ws, "timer_task", REAL / "spiff_user_task_with_timer.bpmn", "Process_zaes0vi", steps,
                     timers={'"PT10M"': "PT10M"})


def every_flow(aw: ApprovalWorld) -> list[Any]:
    return [
        make_flow(aw.ws, "discount", [StepDef("manager", [manager()]),
                                      StepDef("director", [role("sales_director")], when="discount_rate > 0.35")]),
        make_flow(aw.ws, "big", [StepDef("fl", [role("finance"), role("legal")], mode="all")]),
        make_flow(aw.ws, "seq", [StepDef("chain", [user("r1"), user("r2")], mode="sequential")]),
        reviewinvoice(aw), timer_file(aw)]


def test_no_workflow_text_is_evaluated_as_python(aw: ApprovalWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    aw.use(*every_flow(aw))
    ids = {name: quote(aw, discount_rate=0.4) for name in ("discount", "big", "seq", "review_invoice", "timer_task")}
    calls: list[str] = []

    def refuse(*args: Any, **kw: Any) -> Any:
        calls.append(str(args[0])[:60])
        raise AssertionError(f"eval/exec called with {args[0]!r}")

    monkeypatch.setattr(builtins, "eval", refuse)
    monkeypatch.setattr(builtins, "exec", refuse)
    results = {name: decide_all(aw, submit(aw, qid, name)) for name, qid in ids.items() if name != "timer_task"}
    timed = submit(aw, ids["timer_task"], "timer_task")
    worker = Worker(aw.rt, "w")
    worker.run_once()  # schedules the timers job
    aw.clock.advance(minutes=11)
    worker.run_once()
    worker.run_once()
    monkeypatch.undo()
    assert calls == []
    assert results == {"discount": "approved", "big": "approved", "seq": "approved", "review_invoice": "approved"}
    with aw.unit("admin", readonly=True) as uow:
        assert views.instance(uow, timed)["status"] == "approved"


def test_a_text_the_flow_did_not_compile_is_refused_never_evaluated(aw: ApprovalWorld) -> None:
    flow = make_flow(aw.ws, "evil", [StepDef("manager", [manager()])])
    env = script.FlowEnvironment(flow, lambda: {}, None)
    with pytest.raises(WorkflowTextRefused) as info:
        env.evaluate("__import__('os').listdir('/')", {})
    assert info.value.code == "workflow_text" and "__import__" in info.value.message
    with pytest.raises(WorkflowTextRefused):
        env.execute("x = 1", {})
    with pytest.raises(WorkflowTextRefused):
        env.call_service({}, operation_name="x")


def test_a_gateway_condition_missing_from_the_flow_stops_the_decision_cleanly(aw: ApprovalWorld) -> None:
    flow = make_flow(aw.ws, "broken", [StepDef("manager", [manager()])])
    aw.use(flow.__class__(**{**{f: getattr(flow, f) for f in flow.__dataclass_fields__}, "expressions": {}}))
    instance = submit(aw, quote(aw), "broken")
    with pytest.raises(WorkflowTextRefused):
        decide_all(aw, instance)
    with aw.unit("admin", readonly=True) as uow:
        assert views.instance(uow, instance)["status"] == "pending"  # nothing of the decision was kept


def test_a_script_task_is_refused_by_the_parser(aw: ApprovalWorld) -> None:
    xml = definitions("p_script", ['<bpmn:startEvent id="start"/>',
                                   '<bpmn:scriptTask id="s" scriptFormat="python"><bpmn:script>'
                                   "__import__('os').system('true')</bpmn:script></bpmn:scriptTask>",
                                   '<bpmn:endEvent id="end"/>'],
                      [("a", "start", "s", None), ("b", "s", "end", None)])
    flow = make_flow(aw.ws, "scripted", [StepDef("x", [manager()])])
    flow = flow.__class__(**{**{f: getattr(flow, f) for f in flow.__dataclass_fields__}, "bpmn_xml": xml,
                             "process_id": "p_script", "digest": "scripted-1"})
    with pytest.raises(WorkflowTextRefused) as info:
        spec.parsed(flow)
    assert "script tasks are not allowed" in info.value.message


def test_the_spec_is_stored_once_per_version_and_state_without_it(aw: ApprovalWorld) -> None:
    flow = make_flow(aw.ws, "once", [StepDef("manager", [manager()])])
    aw.use(flow)
    first = submit(aw, quote(aw), "once")
    submit(aw, quote(aw), "once")
    with aw.rt.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(crm_approval_specs)).scalar() == 1
        state = conn.execute(select(crm_approval_instances.c.state).where(
            crm_approval_instances.c.id == first)).scalar()
        stored = conn.execute(select(crm_approval_specs.c.spec)).scalar()
    assert state["format"] == spec.STATE_FORMAT and "spec" not in state["workflow"]
    assert "subprocess_specs" not in state["workflow"] and len(json.dumps(stored["spec"])) > 1000
    assert stored["spec"]["name"] == flow.process_id


def test_a_spec_is_parsed_once_per_digest(aw: ApprovalWorld) -> None:
    flow = make_flow(aw.ws, "cached", [StepDef("manager", [manager()])])
    assert spec.parsed(flow) is spec.parsed(flow)


def test_an_instance_keeps_its_flow_version_when_the_flow_changes(aw: ApprovalWorld) -> None:
    old = make_flow(aw.ws, "live", [StepDef("manager", [manager()])])
    aw.use(old)
    running = submit(aw, quote(aw), "live")
    new = make_flow(aw.ws, "live", [StepDef("manager", [manager()]), StepDef("director", [role("sales_director")])])
    assert new.digest != old.digest
    aw.use(new)
    fresh = submit(aw, quote(aw), "live")
    assert decide_all(aw, running) == "approved"  # one step: the old version
    with aw.unit("admin", readonly=True) as uow:
        assert [t["step"] for t in views.instance(uow, running)["tasks"]] == ["manager"]
    assert decide_all(aw, fresh) == "approved"
    with aw.unit("admin", readonly=True) as uow:
        assert [t["step"] for t in views.instance(uow, fresh)["tasks"]][-1] == "director"


def test_review_invoice_from_camunda_modeler_runs_to_completion(aw: ApprovalWorld) -> None:
    aw.use(reviewinvoice(aw))
    instance = submit(aw, quote(aw))
    assert decide_all(aw, instance) == "approved"
    with aw.unit("admin", readonly=True) as uow:
        view = views.instance(uow, instance)
    assert [(t["step"], t["assignee"], t["status"]) for t in view["tasks"]] == [
        ("assignReviewer", "r1", "approved"), ("reviewInvoice", "r2", "approved")]


def test_review_invoice_rejected_at_its_last_step_ends_rejected(aw: ApprovalWorld) -> None:
    aw.use(reviewinvoice(aw))
    instance = submit(aw, quote(aw))
    with aw.unit("r1") as uow:
        [task] = views.inbox(uow, user_id=aw.ids["r1"])["items"]
        service.complete(uow, task["id"], "approve")
    with aw.unit("r2") as uow:
        [task] = views.inbox(uow, user_id=aw.ids["r2"])["items"]
        service.complete(uow, task["id"], "reject")
    with aw.unit("admin", readonly=True) as uow:
        assert views.instance(uow, instance)["status"] == "rejected"


def test_the_spiff_timer_file_runs_both_ways_on_the_injected_clock(aw: ApprovalWorld) -> None:
    aw.use(timer_file(aw))
    decided = submit(aw, quote(aw))
    assert decide_all(aw, decided) == "approved"
    timed = submit(aw, quote(aw))
    with aw.rt.engine.connect() as conn:
        due = conn.execute(select(crm_approval_instances.c.next_timer_at).where(
            crm_approval_instances.c.id == timed)).scalar()
    assert due == aw.clock.now() + dt.timedelta(minutes=10)
    worker = Worker(aw.rt, "w")
    worker.run_once()
    aw.clock.advance(minutes=9)
    worker.run_once()
    with aw.unit("admin", readonly=True) as uow:
        assert views.instance(uow, timed)["status"] == "pending"
    aw.clock.advance(minutes=2)
    worker.run_once()
    worker.run_once()
    with aw.unit("admin", readonly=True) as uow:
        view = views.instance(uow, timed)
    assert view["status"] == "approved" and [t["status"] for t in view["tasks"]] == ["cancelled"]
    assert "timer" in [h["decision"] for h in view["history"]]
    with aw.rt.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(crm_approval_tasks).where(
            crm_approval_tasks.c.status == "ready")).scalar() == 0
