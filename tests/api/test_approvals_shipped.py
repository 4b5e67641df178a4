"""The shipped approval flows (``configs/base/approvals``: the ``quote_discount`` shorthand and the
``contract_risk`` BPMN file), compiled from YAML with the manufacturing template and applied, end to end
through the REST API of a live server on SQLite and PostgreSQL (issue 11, "done when"):

a 25 % quote goes to the owner's manager; 40 % to the manager, then a sales director; a quote of a
million or more to finance and legal together (会签) -- and one rejection there rejects the quote, sets
the discount back to 0 and unlocks it; the quote is locked while pending except ``notes``; the team's
sales manager is CC'd; a contract with a low credit rating or a payment term over 90 days goes to legal
(the lane of the drawn file); 48 h without a decision reminds, then escalates to a sales director.
"""

from __future__ import annotations

import http.client
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest

from engine.api import create_app
from engine.runtime import users
from engine.runtime.context import Actor, FixedClock
from engine.runtime.jobs.worker import Worker
from engine.runtime.runtime import Runtime
from tests.api.conftest import apply_folder_quietly, serving
from tests.api.test_live import http_json
from tests.conftest import fresh_database

PEOPLE = {"boss": ["sales_manager"], "li": ["sales"], "dan": ["sales_director"], "fay": ["finance"],
          "leo": ["legal"], "admin": ["admin"]}


@dataclass
class Scene:
    runtime: Any
    clock: FixedClock
    base: str
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)
    account: int = 0

    def call(self, who: str, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        return http_json(self.base, method, f"/api/v1{path}", self.tokens[who], body, headers=headers or None)

    def ok(self, who: str, method: str, path: str, body: Any = None, status: int = 200, **headers: str) -> Any:
        got, answer = self.call(who, method, path, body, **headers)
        assert got == status, (method, path, got, answer)
        return answer

    def quote(self, discount: float, subtotal: float = 100000) -> int:
        """A quote of ``li``'s (the subtotal is read-only: set as the system, as the lines would)."""
        with self.runtime.unit(self.actor("li")) as uow:
            made = uow.records.create("quote", {"account": self.account, "discount_rate": discount,
                                                "subtotal": subtotal}, bypass_readonly=True)
        return int(made["id"])

    def actor(self, name: str) -> Actor:
        with self.runtime.engine.connect() as conn:
            return users.actor_for(conn, self.runtime.state.workspace, name)

    def inbox(self, who: str, record: int) -> list[dict[str, Any]]:
        items = self.ok(who, "GET", "/approvals/tasks?assignee=me")["items"]
        return [t for t in items if t["record_id"] == record]

    def decide(self, who: str, record: int, decision: str = "approve") -> dict[str, Any]:
        [task] = self.inbox(who, record)
        return dict(self.ok(who, "POST", f"/approvals/tasks/{task['id']}/complete", {"decision": decision}))

    def get(self, entity: str, rid: int) -> dict[str, Any]:
        return dict(self.ok("admin", "GET", f"/records/{entity}/{rid}"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          manufacturing_folder: Path) -> Iterator[Scene]:
    folder = tmp_path_factory.mktemp("approvals") / "acme"
    shutil.copytree(manufacturing_folder, folder)
    with fresh_database(request, request.param, tmp_path_factory.mktemp("db"), "crm_appr") as url:
        apply_folder_quietly(folder, url)
        clock = FixedClock()
        runtime = Runtime.open(url, clock=clock)
        try:
            tokens, ids = {}, {}
            with runtime.unit(Actor.system()) as uow:
                ids["boss"] = users.create_user(uow, "boss", roles=PEOPLE["boss"])
                users.create_team(uow, "east_sales", manager="boss")
                for name, roles in PEOPLE.items():
                    if name != "boss":
                        team = "east_sales" if name == "li" else None
                        ids[name] = users.create_user(uow, name, roles=roles, team=team)
                for name in PEOPLE:
                    tokens[name] = users.create_token(uow, name, "approvals")
            with serving(create_app(runtime)) as base:
                s = Scene(runtime, clock, base, tokens, ids)
                s.account = int(s.ok("li", "POST", "/records/account", {"name": "苏州精密机械"}, status=201)["id"])
                yield s
        finally:
            runtime.close()


def test_a_25_percent_quote_needs_the_manager_and_cc_goes_to_the_sales_manager(scene: Scene) -> None:
    qid = scene.quote(0.25)
    assert scene.get("quote", qid)["approval_status"] == "pending"
    view = scene.decide("boss", qid)
    assert view["status"] == "approved" and scene.get("quote", qid)["approval_status"] == "approved"
    notes = scene.ok("boss", "GET", "/notifications")["items"]
    assert {n["data"]["moment"] for n in notes if n["kind"] == "approval_cc" and n["record_id"] == qid} == {
        "start", "approved"}


def test_a_40_percent_quote_needs_the_manager_then_the_director(scene: Scene) -> None:
    qid = scene.quote(0.4)
    assert scene.inbox("dan", qid) == []
    assert scene.decide("boss", qid)["status"] == "pending"
    assert scene.decide("dan", qid)["status"] == "approved"


def _svg(scene: Scene, who: str, instance: int) -> tuple[int, str, dict[str, str]]:
    parts = urlsplit(scene.base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("GET", f"/api/v1/approvals/instances/{instance}/diagram.svg",
                     headers={"Authorization": f"Bearer {scene.tokens[who]}"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), dict(resp.getheaders())
    finally:
        conn.close()


def _marked(svg: str) -> dict[str, str]:
    """Element id -> the state class its shape is drawn with (from the SVG, parsed as XML)."""
    ns = {"s": "http://www.w3.org/2000/svg"}
    out = {}
    for g in ElementTree.fromstring(svg).iterfind(".//s:g", ns):
        for shape in g:
            cls = set((shape.get("class") or "").split())
            state = cls & {"current", "done", "rejected"}
            if state:
                out[g.get("data-element") or ""] = state.pop()
    return out


def test_the_diagram_marks_the_step_done_and_the_step_waiting(scene: Scene) -> None:
    qid = scene.quote(0.4)
    scene.decide("boss", qid)
    items = scene.ok("li", "GET", f"/records/quote/{qid}/approvals")["items"]
    [mine] = [a for a in items if a["status"] == "pending"]
    view = scene.ok("li", "GET", f"/approvals/instances/{mine['id']}")
    assert _marked(view["diagram"]["svg"]) == {"manager": "done", "director": "current"}
    status, svg, headers = _svg(scene, "li", mine["id"])
    assert status == 200 and headers["Content-Type"].startswith("image/svg+xml")
    assert "default-src 'none'" in headers["Content-Security-Policy"] and "<script" not in svg and "http" not in \
        svg.replace("http://www.w3.org/2000/svg", "")  # nothing loaded from anywhere
    assert _svg(scene, "li", 10**9)[0] == 404
    scene.decide("dan", qid)
    assert _marked(_svg(scene, "li", mine["id"])[1]) == {"manager": "done", "director": "done"}


def test_the_drawn_contract_flow_is_drawn_with_its_lane(scene: Scene) -> None:
    made = scene.ok("li", "POST", "/records/contract", {"name": "Drawn", "account": scene.account,
                                                         "start_date": "2026-02-01", "amount": 1000,
                                                         "payment_term_days": 100}, status=201)
    [inst] = scene.ok("li", "GET", f"/records/contract/{made['id']}/approvals")["items"]
    svg = scene.ok("leo", "GET", f"/approvals/instances/{inst['id']}")["diagram"]["svg"]
    assert _marked(svg) == {"legal_review": "current"}
    assert 'class="pool"' in svg and ">legal<" in svg.lower()
    scene.decide("leo", int(made["id"]))


def test_a_large_quote_needs_finance_and_legal_and_a_rejection_resets_and_unlocks(scene: Scene) -> None:
    qid = scene.quote(0.25, subtotal=2000000)
    version = scene.get("quote", qid)["version"]
    code, body = scene.call("li", "PATCH", f"/records/quote/{qid}", {"discount_rate": 0.3},
                            **{"If-Match": str(version)})
    assert code == 423 and body["error"]["code"] == "locked"
    ok = scene.ok("li", "PATCH", f"/records/quote/{qid}", {"notes": "urgent"}, **{"If-Match": str(version)})
    scene.decide("boss", qid)
    assert scene.inbox("fay", qid) and scene.inbox("leo", qid)
    assert scene.decide("fay", qid)["status"] == "pending"
    view = scene.decide("leo", qid, "reject")  # one branch of the 会签 group rejects: the quote is rejected
    assert view["status"] == "rejected"
    assert [t["status"] for t in view["tasks"] if t["step"] in ("finance", "legal")] == ["approved", "rejected"]
    got = scene.get("quote", qid)
    assert (float(got["discount_rate"]), got["approval_status"]) == (0.0, "rejected")
    scene.ok("li", "PATCH", f"/records/quote/{qid}", {"notes": "lower price"}, **{"If-Match": str(got["version"])})
    assert ok["notes"] == "urgent"


def test_a_risky_contract_goes_to_legal_from_the_drawn_file(scene: Scene) -> None:
    made = scene.ok("li", "POST", "/records/contract", {"name": "Long terms", "account": scene.account,
                                                         "start_date": "2026-02-01", "amount": 50000,
                                                         "payment_term_days": 120}, status=201)
    cid = int(made["id"])
    assert scene.get("contract", cid)["approval_status"] == "pending"
    [task] = scene.inbox("leo", cid)
    assert task["step"] == "legal_review"
    assert scene.decide("leo", cid)["status"] == "approved"
    assert scene.get("contract", cid)["approval_status"] == "approved"
    safe = scene.ok("li", "POST", "/records/contract", {"name": "Safe", "account": scene.account,
                                                         "start_date": "2026-02-01", "amount": 50000}, status=201)
    assert scene.get("contract", int(safe["id"]))["approval_status"] == "not_required"
    version = scene.get("contract", int(safe["id"]))["version"]
    scene.ok("fay", "PATCH", f"/records/contract/{safe['id']}", {"credit_rating": "low"},
             **{"If-Match": str(version)})  # finance rates the customer low: legal must look
    assert scene.decide("leo", int(safe["id"]), "reject")["status"] == "rejected"
    assert scene.get("contract", int(safe["id"]))["approval_status"] == "rejected"


def test_no_decision_in_48h_reminds_then_escalates_to_a_sales_director(scene: Scene) -> None:
    qid = scene.quote(0.3)
    worker = Worker(scene.runtime, "w")
    worker.run_once()
    scene.clock.advance(hours=49)
    worker.run_once()
    worker.run_once()
    reminders = [n for n in scene.ok("boss", "GET", "/notifications")["items"]
                 if n["kind"] == "approval_reminder" and n["record_id"] == qid]
    assert len(reminders) == 1
    scene.clock.advance(hours=24)
    worker.run_once()
    worker.run_once()
    assert scene.inbox("boss", qid) == []
    assert scene.decide("dan", qid)["status"] == "approved"
