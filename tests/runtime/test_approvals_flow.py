"""Approval flows run on SpiffWorkflow through the approvals service: steps by mode (或签, 会签, ratio,
依次), 转交, 加签, 退回, 撤回, delegation, outcome actions, the record lock, the trigger and CC notices.
SQLite and PostgreSQL; state saved and restored between every step (each action is its own unit)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.dsl.approvals.model import Timeout, Trigger
from engine.errors import Conflict, EngineError, NoAssignee, PermissionDenied, RecordLocked
from engine.runtime import notify
from engine.runtime.approvals import service, views
from engine.runtime.engine_tables import crm_approval_instances
from tests.runtime.approvals_world import (
    ApprovalWorld,
    StepDef,
    build,
    make_flow,
    manager,
    role,
    set_action,
    user,
)


@pytest.fixture(name="aw")
def aw_fixture(db_url: str, tmp_path: Path) -> Iterator[ApprovalWorld]:
    w = build(db_url, tmp_path / "ws")
    try:
        yield w
    finally:
        w.rt.close()


def quote(aw: ApprovalWorld, owner: str = "alice", **values: Any) -> int:
    with aw.unit(owner) as uow:
        return int(uow.records.create("quote", {"name": "Q", **values})["id"])


def submit(aw: ApprovalWorld, qid: int, who: str = "alice") -> int:
    with aw.unit(who) as uow:
        return service.submit(uow, "quote", qid)


def inbox(aw: ApprovalWorld, who: str, status: str = "ready") -> list[dict[str, Any]]:
    with aw.unit(who, readonly=True) as uow:
        return list(views.inbox(uow, user_id=aw.ids[who], status=status)["items"])


def the_task(aw: ApprovalWorld, who: str) -> int:
    [task] = inbox(aw, who)
    return int(task["id"])


def act(aw: ApprovalWorld, who: str, decision: str = "approve", task: int | None = None, **kw: Any) -> int:
    with aw.unit(who) as uow:
        return service.complete(uow, task if task is not None else the_task(aw, who), decision, **kw)


def status(aw: ApprovalWorld, instance: int) -> str:
    with aw.unit("admin", readonly=True) as uow:
        return str(views.instance(uow, instance)["status"])


def record(aw: ApprovalWorld, qid: int) -> dict[str, Any]:
    with aw.unit("admin", readonly=True) as uow:
        return dict(uow.records.get("quote", qid))


def refused(aw: ApprovalWorld, who: str, fn: Any, *args: Any, **kw: Any) -> EngineError:
    with pytest.raises(EngineError) as info, aw.unit(who) as uow:
        fn(uow, *args, **kw)
    return info.value


def notes(aw: ApprovalWorld, who: str) -> list[notify.Notification]:
    with aw.rt.engine.connect() as conn:
        return notify.list_for(conn, aw.ids[who], limit=200)


def discount_flow(aw: ApprovalWorld, **kw: Any) -> Any:
    return make_flow(aw.ws, "quote_discount", [
        StepDef("manager", [manager()]),
        StepDef("director", [role("sales_director")], when="discount_rate > 0.35"),
    ], on_rejected=[set_action(aw.ws, discount_rate="0")], cc=[user("cc")], **kw)


def test_a_25_percent_discount_needs_the_manager_only(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    qid = quote(aw, discount_rate=0.25)
    instance = submit(aw, qid)
    assert record(aw, qid)["approval_status"] == "pending"
    assert [t["step"] for t in inbox(aw, "carol")] == ["manager"]
    act(aw, "carol", comment="fine")
    assert status(aw, instance) == "approved"
    assert record(aw, qid)["approval_status"] == "approved"
    assert inbox(aw, "dan") == []
    kinds = [n.kind for n in notes(aw, "alice")]
    assert "approval_outcome" in kinds
    assert [n.data["moment"] for n in notes(aw, "cc") if n.kind == "approval_cc"] == ["approved", "start"]


def test_a_40_percent_discount_goes_to_the_manager_then_a_director(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    qid = quote(aw, discount_rate=0.4)
    instance = submit(aw, qid)
    act(aw, "carol")
    assert status(aw, instance) == "pending"
    assert [t["step"] for t in inbox(aw, "dan")] == ["director"] == [t["step"] for t in inbox(aw, "dora")]
    act(aw, "dora")  # 或签: the first director's approval completes the step
    assert status(aw, instance) == "approved" and inbox(aw, "dan") == []


def test_rejection_resets_the_discount_and_unlocks_the_record(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    qid = quote(aw, discount_rate=0.4)
    instance = submit(aw, qid)
    with pytest.raises(RecordLocked) as locked, aw.unit("alice") as uow:
        uow.records.update("quote", qid, {"discount_rate": 0.5}, expected_version=None)
    assert locked.value.details["fields"] == ["discount_rate"]
    with aw.unit("alice") as uow:  # a field the flow leaves open
        uow.records.update("quote", qid, {"notes": "call back"}, expected_version=None)
    act(aw, "carol", "reject", comment="too much")
    assert status(aw, instance) == "rejected"
    got = record(aw, qid)
    assert (float(got["discount_rate"]), got["approval_status"]) == (0.0, "rejected")
    with aw.unit("alice") as uow:
        uow.records.update("quote", qid, {"discount_rate": 0.1}, expected_version=None)


def reviewers(aw: ApprovalWorld, mode: str, ratio: float | None = None) -> Any:
    return make_flow(aw.ws, f"review_{mode}", [StepDef("review", [role("reviewer")], mode=mode, ratio=ratio)])


def test_a_60_percent_ratio_step_completes_at_3_of_5(aw: ApprovalWorld) -> None:
    aw.use(reviewers(aw, "ratio", 0.6))
    instance = submit(aw, quote(aw))
    act(aw, "r1")
    act(aw, "r2", "reject")
    act(aw, "r3")
    assert status(aw, instance) == "pending"
    act(aw, "r4")
    assert status(aw, instance) == "approved"
    assert inbox(aw, "r5") == []  # the last reviewer's task was cancelled


def test_a_ratio_step_is_rejected_once_the_ratio_cannot_be_reached(aw: ApprovalWorld) -> None:
    aw.use(reviewers(aw, "ratio", 0.6))
    instance = submit(aw, quote(aw))
    act(aw, "r1", "reject")
    act(aw, "r2", "reject")
    assert status(aw, instance) == "pending"  # 3 of the remaining 3 can still approve
    act(aw, "r3", "reject")
    assert status(aw, instance) == "rejected"


def test_all_must_approve_and_one_rejection_rejects(aw: ApprovalWorld) -> None:
    big = make_flow(aw.ws, "big", [StepDef("finance_legal", [role("finance"), role("legal")], mode="all")])
    aw.use(big)
    first = submit(aw, quote(aw))
    act(aw, "fay")
    assert status(aw, first) == "pending"
    act(aw, "leo")
    assert status(aw, first) == "approved"
    second = submit(aw, quote(aw))
    act(aw, "leo", "reject")
    assert status(aw, second) == "rejected" and inbox(aw, "fay") == []


def test_sequential_approvers_decide_one_after_another(aw: ApprovalWorld) -> None:
    aw.use(make_flow(aw.ws, "seq", [StepDef("chain", [user("r3"), user("r1")], mode="sequential")]))
    instance = submit(aw, quote(aw))
    assert inbox(aw, "r1") == [] and [t["status"] for t in inbox(aw, "r1", "open")] == ["waiting"]
    act(aw, "r3")
    act(aw, "r1")
    assert status(aw, instance) == "approved"


def test_reassign_hands_the_task_to_a_colleague_who_approves(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    instance = submit(aw, quote(aw, discount_rate=0.4))
    act(aw, "carol")
    with aw.unit("dan") as uow:
        service.reassign(uow, the_task(aw, "dan"), "r1", comment="r1 knows this customer")
    assert [t["assignee_id"] for t in inbox(aw, "r1")] == [aw.ids["r1"]] and len(inbox(aw, "dora")) == 1
    act(aw, "r1")
    assert status(aw, instance) == "approved"
    with aw.unit("admin", readonly=True) as uow:
        history = views.instance(uow, instance)["history"]
    assert [(h["decision"], h["actor"]) for h in history if h["decision"] in ("reassign", "approve")] == [
        ("approve", "carol"), ("reassign", "dan"), ("approve", "r1")]


def test_add_a_signer_before_oneself(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    instance = submit(aw, quote(aw, discount_rate=0.25))
    mine = the_task(aw, "carol")
    with aw.unit("carol") as uow:
        service.add_signer(uow, mine, ["r2"], position="before")
    assert inbox(aw, "carol") == []  # carol waits for r2
    act(aw, "r2")
    assert status(aw, instance) == "pending"
    act(aw, "carol", task=mine)
    assert status(aw, instance) == "approved"


def test_add_a_signer_after_oneself(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    instance = submit(aw, quote(aw, discount_rate=0.25))
    with aw.unit("carol") as uow:
        service.add_signer(uow, the_task(aw, "carol"), ["r2"], position="after")
    assert inbox(aw, "r2") == []
    act(aw, "carol")
    assert status(aw, instance) == "pending"
    act(aw, "r2")
    assert status(aw, instance) == "approved"


def test_the_director_returns_to_the_manager_who_approves_again(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    instance = submit(aw, quote(aw, discount_rate=0.4))
    act(aw, "carol")
    with aw.unit("dan") as uow:
        service.return_to(uow, the_task(aw, "dan"), "manager", comment="check the margin")
    assert inbox(aw, "dan") == [] and [t["step"] for t in inbox(aw, "carol")] == ["manager"]
    act(aw, "carol")
    act(aw, "dan")
    assert status(aw, instance) == "approved"


def test_return_to_the_submitter_ends_the_approval_and_unlocks(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    qid = quote(aw, discount_rate=0.25)
    instance = submit(aw, qid)
    with aw.unit("carol") as uow:
        service.return_to(uow, the_task(aw, "carol"), "submitter", comment="add the terms")
    assert status(aw, instance) == "returned" and record(aw, qid)["approval_status"] == "returned"
    with aw.unit("alice") as uow:
        uow.records.update("quote", qid, {"terms": "net 30"}, expected_version=None)
    again = submit(aw, qid)
    assert again != instance and status(aw, again) == "pending"


def test_withdraw_before_anyone_acted_but_not_after(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw, on_withdrawn=[set_action(aw.ws, notes="'withdrawn'")]))
    qid = quote(aw, discount_rate=0.4)
    instance = submit(aw, qid)
    assert isinstance(refused(aw, "carol", service.withdraw, instance), PermissionDenied)
    with aw.unit("alice") as uow:
        service.withdraw(uow, instance)
    got = record(aw, qid)
    assert status(aw, instance) == "withdrawn" and (got["approval_status"], got["notes"]) == ("withdrawn", "withdrawn")
    assert inbox(aw, "carol") == []
    later = submit(aw, qid)
    act(aw, "carol")
    assert refused(aw, "alice", service.withdraw, later).code == "already_acted"


def test_only_the_assignee_their_delegate_in_dates_or_an_admin_may_act(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    instance = submit(aw, quote(aw, discount_rate=0.4))
    task = the_task(aw, "carol")
    assert isinstance(refused(aw, "bob", service.complete, task, "approve"), PermissionDenied)
    now = aw.clock.now()
    with aw.unit("carol") as uow:
        views.add_delegation(uow, delegate="bob", starts_at=now - dt.timedelta(hours=1),
                             ends_at=now + dt.timedelta(days=2))
    assert [t["id"] for t in inbox(aw, "bob")] == [task]
    aw.clock.advance(days=3)  # the rule has ended
    assert inbox(aw, "bob") == []
    assert isinstance(refused(aw, "bob", service.complete, task, "approve"), PermissionDenied)
    aw.clock.advance(days=-2)
    act(aw, "bob", task=task, comment="for carol")
    with aw.unit("admin", readonly=True) as uow:
        [approve] = [h for h in views.instance(uow, instance)["history"] if h["decision"] == "approve"]
    assert (approve["actor"], approve["on_behalf_of"]) == ("bob", "carol")
    director = the_task(aw, "dan")
    act(aw, "admin", task=director)
    assert status(aw, instance) == "approved"


def test_a_decided_task_cannot_be_decided_again_and_a_retry_has_no_second_effect(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    instance = submit(aw, quote(aw, discount_rate=0.4))
    task = the_task(aw, "carol")
    act(aw, "carol", task=task)
    act(aw, "carol", task=task)  # the retried request
    assert isinstance(refused(aw, "carol", service.complete, task, "reject"), Conflict)
    with aw.unit("admin", readonly=True) as uow:
        view = views.instance(uow, instance)
    assert [h["decision"] for h in view["history"]].count("approve") == 1
    assert [t["step"] for t in view["tasks"] if t["status"] == "ready"] == ["director", "director"]
    d1 = the_task(aw, "dan")
    act(aw, "dan", task=d1, key="k-1")
    act(aw, "dan", task=d1, key="k-1")
    assert status(aw, instance) == "approved"


def test_no_manager_is_a_clear_error_at_submit_not_a_stuck_instance(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    qid = quote(aw, "dan", discount_rate=0.25)  # dan has no manager
    err = refused(aw, "dan", service.submit, "quote", qid)
    assert isinstance(err, NoAssignee) and "manager" in err.message
    with aw.rt.engine.connect() as conn:
        assert conn.execute(select(crm_approval_instances.c.id)).all() == []


def test_the_trigger_starts_on_create_and_update_when_its_condition_becomes_true(aw: ApprovalWorld) -> None:
    from tests.runtime.approvals_world import expr

    aw.use(discount_flow(aw, trigger=Trigger(on=("create", "update"), when=expr(aw.ws, "discount_rate > 0.2",
                                                                                flow_vars=False))))
    small = quote(aw, discount_rate=0.1)
    big = quote(aw, discount_rate=0.3)
    assert record(aw, big)["approval_status"] == "pending" and record(aw, small)["approval_status"] is None
    assert [t["record_id"] for t in inbox(aw, "carol")] == [big]
    with aw.unit("alice") as uow:
        uow.records.update("quote", small, {"discount_rate": 0.3}, expected_version=None)
    assert sorted(t["record_id"] for t in inbox(aw, "carol")) == sorted([big, small])
    with aw.unit("alice") as uow:  # an allowed edit while pending starts nothing more
        uow.records.update("quote", big, {"notes": "x"}, expected_version=None)
    act(aw, "carol", task=next(t["id"] for t in inbox(aw, "carol") if t["record_id"] == big))
    assert record(aw, big)["approval_status"] == "approved"  # the outcome write did not start it again
    with aw.unit("alice") as uow:
        uow.records.update("quote", big, {"notes": "after"}, expected_version=None)
    assert [t["record_id"] for t in inbox(aw, "carol")] == [small]


def test_a_pending_record_cannot_be_deleted_and_step_editable_fields_are_open_to_its_approver(
        aw: ApprovalWorld) -> None:
    flow = make_flow(aw.ws, "edit", [StepDef("manager", [manager()], editable=("terms",))])
    aw.use(flow)
    qid = quote(aw)
    submit(aw, qid)
    assert isinstance(refused(aw, "alice", lambda uow: uow.records.delete("quote", qid)), RecordLocked)
    assert isinstance(refused(aw, "alice", lambda uow: uow.records.update("quote", qid, {"terms": "a"},
                                                                           expected_version=None)), RecordLocked)
    with aw.unit("carol") as uow:
        uow.records.update("quote", qid, {"terms": "net 60"}, expected_version=None)
    assert record(aw, qid)["terms"] == "net 60"


def test_no_decision_in_48h_reminds_then_escalates_to_the_director(aw: ApprovalWorld) -> None:
    from engine.runtime.jobs.worker import Worker

    timeout = Timeout(after=dt.timedelta(hours=48), remind_every=dt.timedelta(hours=24), then="escalate",
                      escalate_to=(role("sales_director"),))
    aw.use(make_flow(aw.ws, "slow", [StepDef("manager", [manager()], timeout=timeout)]))
    instance = submit(aw, quote(aw))
    worker = Worker(aw.rt, "w")
    worker.run_once()
    aw.clock.advance(hours=47)
    worker.run_once()
    assert [n.kind for n in notes(aw, "carol")] == ["approval"]
    aw.clock.advance(hours=2)
    worker.run_once()
    worker.run_once()
    assert [n.kind for n in notes(aw, "carol")] == ["approval_reminder", "approval"]
    assert inbox(aw, "dan") == []
    aw.clock.advance(hours=24)
    worker.run_once()
    worker.run_once()
    assert inbox(aw, "carol") == [] and len(inbox(aw, "dan")) == 1
    assert "approval_escalated" in [n.kind for n in notes(aw, "carol")]
    act(aw, "dan")
    assert status(aw, instance) == "approved"


def test_signers_added_after_a_task_follow_it_when_it_is_reassigned(aw: ApprovalWorld) -> None:
    aw.use(discount_flow(aw))
    instance = submit(aw, quote(aw, discount_rate=0.25))
    mine = the_task(aw, "carol")
    with aw.unit("carol") as uow:
        service.add_signer(uow, mine, ["r2"], position="after")
    with aw.unit("carol") as uow:
        service.reassign(uow, mine, "bob")
    act(aw, "bob")
    assert status(aw, instance) == "pending" and len(inbox(aw, "r2")) == 1
    act(aw, "r2")
    assert status(aw, instance) == "approved"


def test_two_submits_at_once_start_one_instance(aw: ApprovalWorld) -> None:
    import threading

    aw.use(discount_flow(aw))
    qid = quote(aw, discount_rate=0.25)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def go() -> None:
        barrier.wait()
        try:
            submit(aw, qid)
            outcomes.append("started")
        except Conflict as e:
            outcomes.append(e.code)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["approval_pending", "started"]
    with aw.rt.engine.connect() as conn:
        assert len(conn.execute(select(crm_approval_instances.c.id)).all()) == 1
