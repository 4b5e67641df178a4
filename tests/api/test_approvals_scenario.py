"""Approval scenarios end to end through the REST API of a live server (waitress), on SQLite and
PostgreSQL, with hand-built flows over a quote entity and an injected clock (issue 11, "done when"):

25% -> the manager; 40% -> manager then director; finance and legal 会签 on a large total; 或签 on the first
approval; a 60% ratio step at 3 of 5; a director 转交 to a colleague who approves; a manager 加签 a
colleague before himself; the director 退回 to the manager, who approves again; the submitter 撤回 before
anyone acted (and cannot after); a delegate acts while the manager is out of office but not after the
rule's end; 48 h without a decision -> a reminder, then escalation to a director (worker run once per
step); a rejection sets the discount back and unlocks; 423 while pending except the allowed fields; CC'd
users notified; 403 for a stranger and 409 on a decided task; a retried completion has no second effect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.api import create_app
from engine.dsl.approvals.model import Timeout, Trigger
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.jobs.worker import Worker
from tests.api.conftest import serving
from tests.api.test_live import http_json
from tests.runtime.approvals_world import (
    ApprovalWorld,
    StepDef,
    build,
    expr,
    make_flow,
    manager,
    role,
    set_action,
    user,
)


class Live:
    """A live server over an approval world, with a token per user."""

    def __init__(self, aw: ApprovalWorld, base: str, tokens: dict[str, str]) -> None:
        self.aw, self.base, self.tokens = aw, base, tokens

    def call(self, who: str, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        return http_json(self.base, method, f"/api/v1{path}", self.tokens[who], body, headers or None)

    def ok(self, who: str, method: str, path: str, body: Any = None, status: int = 200, **headers: str) -> Any:
        code, got = self.call(who, method, path, body, **headers)
        assert code == status, got
        return got

    def quote(self, who: str = "alice", **values: Any) -> int:
        return int(self.ok(who, "POST", "/records/quote", {"name": "Q", **values}, status=201)["id"])

    def submit(self, qid: int, who: str = "alice") -> dict[str, Any]:
        return dict(self.ok(who, "POST", f"/records/quote/{qid}/submit", {}, status=201))

    def inbox(self, who: str) -> list[dict[str, Any]]:
        return list(self.ok(who, "GET", "/approvals/tasks?assignee=me")["items"])

    def task(self, who: str) -> int:
        [one] = self.inbox(who)
        return int(one["id"])

    def decide(self, who: str, decision: str = "approve", task: int | None = None, **headers: str) -> dict[str, Any]:
        tid = task if task is not None else self.task(who)
        return dict(self.ok(who, "POST", f"/approvals/tasks/{tid}/complete",
                            {"decision": decision, "comment": f"{who} says {decision}"}, **headers))

    def record(self, qid: int) -> dict[str, Any]:
        return dict(self.ok("admin", "GET", f"/records/quote/{qid}"))

    def notes(self, who: str) -> list[dict[str, Any]]:
        return list(self.ok(who, "GET", "/notifications")["items"])


@pytest.fixture(name="live")
def live_fixture(db_url: str, tmp_path: Path) -> Iterator[Live]:
    aw = build(db_url, tmp_path / "ws")
    ws = aw.ws
    timeout = Timeout(after=dt.timedelta(hours=48), remind_every=dt.timedelta(hours=24), then="escalate",
                      escalate_to=(role("sales_director"),))
    aw.use(
        make_flow(ws, "quote_discount", [
            StepDef("manager", [manager()], timeout=timeout),
            StepDef("director", [role("sales_director")], when="discount_rate > 0.35"),
            StepDef("finance_legal", [role("finance"), role("legal")], when="total >= 1000000", mode="all"),
        ], trigger=Trigger(on=("create", "update"), when=expr(ws, "discount_rate > 0.2", flow_vars=False)),
            cc=[user("cc")], on_rejected=[set_action(ws, discount_rate="0")], editable_while_pending=("notes",)),
    )
    tokens: dict[str, str] = {}
    with aw.rt.unit(Actor.system()) as uow:
        for name in aw.ids:
            tokens[name] = users.create_token(uow, name, "test")
    try:
        with serving(create_app(aw.rt)) as base:
            yield Live(aw, base, tokens)
    finally:
        aw.rt.close()


def test_discounts_route_to_the_manager_and_the_director(live: Live) -> None:
    small = live.quote(discount_rate=0.25)
    assert live.record(small)["approval_status"] == "pending"  # the trigger started it with the create
    big = live.quote(discount_rate=0.4)
    by_record = {t["record_id"]: t for t in live.inbox("carol")}
    assert set(by_record) == {small, big}
    done = live.decide("carol", task=by_record[small]["id"])
    assert done["status"] == "approved" and live.record(small)["approval_status"] == "approved"
    assert live.decide("carol", task=by_record[big]["id"])["status"] == "pending"
    view = live.decide("dan")  # 或签: one director is enough
    assert view["status"] == "approved" and live.inbox("dora") == []
    assert [h["decision"] for h in view["history"]] == ["submit", "approve", "approve", "approved"]
    cc = [n for n in live.notes("cc") if n["kind"] == "approval_cc" and n["record_id"] == big]
    assert sorted(n["data"]["moment"] for n in cc) == ["approved", "start"]
    assert any(n["kind"] == "approval_outcome" and n["record_id"] == big for n in live.notes("alice"))


def test_a_large_total_needs_finance_and_legal_together(live: Live) -> None:
    qid = live.quote(discount_rate=0.25, total=2000000)
    live.decide("carol")
    assert [t["step"] for t in live.inbox("fay")] == ["finance_legal"] == [t["step"] for t in live.inbox("leo")]
    assert live.decide("fay")["status"] == "pending"
    assert live.decide("leo")["status"] == "approved"
    assert live.record(qid)["approval_status"] == "approved"


def test_the_record_is_locked_while_pending_and_a_rejection_resets_the_discount(live: Live) -> None:
    qid = live.quote(discount_rate=0.3)
    version = live.record(qid)["version"]
    code, body = live.call("alice", "PATCH", f"/records/quote/{qid}", {"discount_rate": 0.5},
                           **{"If-Match": str(version)})
    assert code == 423 and body["error"]["details"]["fields"] == ["discount_rate"]
    code, body = live.call("alice", "DELETE", f"/records/quote/{qid}")
    assert code == 423
    code, body = live.call("alice", "PATCH", f"/records/quote/{qid}", {"notes": "customer called"},
                           **{"If-Match": str(version)})
    assert code == 200, body
    assert live.decide("carol", "reject")["status"] == "rejected"
    got = live.record(qid)
    assert (float(got["discount_rate"]), got["approval_status"]) == (0.0, "rejected")
    code, body = live.call("alice", "PATCH", f"/records/quote/{qid}", {"terms": "net 30"},
                           **{"If-Match": str(got["version"])})
    assert code == 200, body


def test_strangers_get_403_a_decided_task_409_and_a_retry_no_second_effect(live: Live) -> None:
    qid = live.quote(discount_rate=0.4)
    task = live.task("carol")
    code, body = live.call("bob", "POST", f"/approvals/tasks/{task}/complete", {"decision": "approve"})
    assert code == 403 and body["error"]["code"] == "not_assignee"
    first = live.decide("carol", task=task, **{"Idempotency-Key": "abc"})
    again = live.decide("carol", task=task, **{"Idempotency-Key": "abc"})
    assert again["history"] == first["history"] and again["version"] == first["version"]
    assert live.decide("carol", task=task)["version"] == first["version"]  # same decision, no key: no effect
    code, body = live.call("carol", "POST", f"/approvals/tasks/{task}/complete", {"decision": "reject"})
    assert code == 409 and body["error"]["code"] == "not_ready"
    assert [h["decision"] for h in first["history"]].count("approve") == 1
    assert live.record(qid)["approval_status"] == "pending"


def test_reassign_add_signer_and_return(live: Live) -> None:
    live.quote(discount_rate=0.4)
    live.ok("carol", "POST", f"/approvals/tasks/{live.task('carol')}/add_signer",
            {"user": "bob", "position": "before"})
    assert live.inbox("carol") == []
    live.decide("bob")  # the added signer first
    live.decide("carol")
    dan = live.task("dan")
    live.ok("dan", "POST", f"/approvals/tasks/{dan}/return", {"to": "manager", "comment": "margin?"})
    assert live.inbox("dan") == [] and len(live.inbox("carol")) == 1
    live.decide("carol")
    live.ok("dan", "POST", f"/approvals/tasks/{live.task('dan')}/reassign", {"to": "r1"})
    view = live.decide("r1")
    assert view["status"] == "approved"
    assert [h["decision"] for h in view["history"]] == [
        "submit", "add_signer", "approve", "approve", "return", "approve", "reassign", "approve", "approved"]


def test_withdraw_before_anyone_acted_and_not_after(live: Live) -> None:
    qid = live.quote(discount_rate=0.3)
    [inst] = live.ok("alice", "GET", f"/records/quote/{qid}/approvals")["items"]
    code, _ = live.call("carol", "POST", f"/approvals/instances/{inst['id']}/withdraw", {})
    assert code == 403
    done = live.ok("alice", "POST", f"/approvals/instances/{inst['id']}/withdraw", {"comment": "wrong price"})
    assert done["status"] == "withdrawn" and live.record(qid)["approval_status"] == "withdrawn"
    qid2 = live.quote(discount_rate=0.3)
    live.decide("carol", "approve")
    [inst2] = live.ok("alice", "GET", f"/records/quote/{qid2}/approvals")["items"]
    code, body = live.call("alice", "POST", f"/approvals/instances/{inst2['id']}/withdraw", {})
    assert code == 409 and body["error"]["code"] in ("already_acted", "approval_closed")


def test_a_delegate_acts_within_the_dates_only(live: Live) -> None:
    now = live.aw.clock.now()
    live.ok("carol", "POST", "/approvals/delegations",
            {"delegate": "bob", "starts_at": (now - dt.timedelta(hours=1)).isoformat(),
             "ends_at": (now + dt.timedelta(days=1)).isoformat()}, status=201)
    live.quote(discount_rate=0.25)
    task = live.task("bob")
    live.aw.clock.advance(days=2)
    code, _ = live.call("bob", "POST", f"/approvals/tasks/{task}/complete", {"decision": "approve"})
    assert code == 403 and live.inbox("bob") == []
    live.aw.clock.advance(days=-2)
    view = live.decide("bob", task=task)
    [approve] = [h for h in view["history"] if h["decision"] == "approve"]
    assert (approve["actor"], approve["on_behalf_of"], view["status"]) == ("bob", "carol", "approved")


def test_48h_without_a_decision_reminds_then_escalates(live: Live) -> None:
    live.quote(discount_rate=0.25)
    worker = Worker(live.aw.rt, "w")
    worker.run_once()
    live.aw.clock.advance(hours=49)
    worker.run_once()
    worker.run_once()
    assert [n["kind"] for n in live.notes("carol")][:1] == ["approval_reminder"]
    live.aw.clock.advance(hours=24)
    worker.run_once()
    worker.run_once()
    assert live.inbox("carol") == []
    assert live.decide("dan")["status"] == "approved"


def test_ratio_and_any_steps(live: Live) -> None:
    ws = live.aw.ws
    live.aw.use(make_flow(ws, "panel", [StepDef("panel", [role("reviewer")], mode="ratio", ratio=0.6)]),
                make_flow(ws, "anyone", [StepDef("anyone", [user("fay"), user("leo")], mode="any")]))
    q1, q2 = live.quote(), live.quote()
    live.ok("alice", "POST", f"/records/quote/{q1}/submit", {"flow": "panel"}, status=201)
    for who in ("r1", "r2"):
        assert live.decide(who)["status"] == "pending"
    live.decide("r4", "reject")
    assert live.decide("r5")["status"] == "approved"  # 3 of 5
    assert live.inbox("r3") == []
    live.ok("alice", "POST", f"/records/quote/{q2}/submit", {"flow": "anyone"}, status=201)
    assert live.decide("leo")["status"] == "approved" and live.inbox("fay") == []


def test_openapi_lists_the_approval_paths(live: Live) -> None:
    doc = live.ok("admin", "GET", "/openapi.json")
    for path in ("/records/{entity}/{record_id}/submit", "/approvals/tasks", "/approvals/tasks/{task_id}/complete",
                 "/approvals/tasks/{task_id}/reassign", "/approvals/tasks/{task_id}/add_signer",
                 "/approvals/tasks/{task_id}/return", "/approvals/instances/{instance_id}/withdraw",
                 "/approvals/instances/{instance_id}", "/approvals/delegations"):
        assert path in doc["paths"], path
