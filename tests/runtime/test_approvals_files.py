"""Drawn BPMN files through the ``approval:`` kind (YAML ``bpmn:`` + ``process:``), applied as a revision
and run to completion (SQLite and PostgreSQL): Camunda's reviewInvoice -- its first task names the
reviewer in the task data (``complete`` with ``data``), the second is assigned from it -- and
spiff-arena's user task with a boundary timer, ended by the timer on the engine's clock."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.errors import BadRequest
from engine.runtime.approvals import service
from engine.runtime.jobs.worker import Worker
from tests.runtime.test_approvals_versions import Live, live_fixture  # noqa: F401  (the fixture)

REAL = Path(__file__).parents[1] / "fixtures" / "realworld" / "bpmn"
REVIEW = """
    approval: discount
    entity: quote
    trigger: {on: [submit]}
    bpmn: flows/review.bpmn
    process: ReviewInvoice
"""
TIMER = """
    approval: discount
    entity: quote
    trigger: {on: [submit]}
    bpmn: flows/timer.bpmn
    process: Process_zaes0vi
"""


def use_file(live: Live, source: str, target: str, flow: str) -> None:
    (live.folder / "approvals" / "flows").mkdir(parents=True, exist_ok=True)
    shutil.copy(REAL / source, live.folder / "approvals" / "flows" / target)
    live.apply(flow, f"flow {target}")


def test_review_invoice_takes_its_reviewer_from_the_first_decision(live: Live) -> None:
    use_file(live, "camunda_reviewInvoice.bpmn", "review.bpmn", REVIEW)
    instance = live.quote()
    [task] = [t for t in live.view(instance)["tasks"] if t["status"] == "ready"]
    assert (task["step"], task["assignee"]) == ("assignReviewer", "demo")
    with pytest.raises(BadRequest) as bad, live.unit("demo") as uow:
        service.complete(uow, task["id"], "approve", data={"nobody": "x"})
    assert bad.value.code == "unknown_variable"
    with live.unit("demo") as uow:
        service.complete(uow, task["id"], "approve", data={"reviewer": "r2"})
    [review] = [t for t in live.view(instance)["tasks"] if t["status"] == "ready"]
    assert (review["step"], review["assignee"]) == ("reviewInvoice", "r2")
    assert live.act("r2", instance) == "approved"


def test_the_spiff_timer_file_ends_by_its_timer(live: Live) -> None:
    use_file(live, "spiff_user_task_with_timer.bpmn", "timer.bpmn", TIMER)
    instance = live.quote()
    [task] = live.view(instance)["tasks"]
    assert task["step"] == "user_task_one" and task["status"] == "ready"
    worker = Worker(live.runtime(), "w")
    worker.run_once()
    live.clock.advance(minutes=11)
    worker.run_once()
    worker.run_once()
    view = live.view(instance)
    assert view["status"] == "approved" and view["tasks"][0]["status"] == "cancelled"
    assert live.view(live.quote())["tasks"][0]["assignee"] == "alice"  # a manual task naming nobody: the owner
