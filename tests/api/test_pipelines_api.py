"""Pipelines over the REST API of the manufacturing workspace, on SQLite and PostgreSQL.

Done-when of issue 10: moving an opportunity to ``proposal`` without the required budget range fails with
422 via PATCH, the transition endpoint and ``update_many`` alike (the first also against a live server);
stage durations are recorded (injected clock); a lost deal needs a reason. Also: the pipelines endpoints,
playbook tasks, an activity stamping its parents, and the handover endpoint (admins only).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from engine.api import create_app
from engine.errors import GateRefused
from engine.runtime.context import FixedClock
from engine.runtime.runtime import Runtime
from tests.api.conftest import ApiEnv, apply_folder_quietly, create, free_port, make_users


@dataclass
class Env:
    api: ApiEnv
    clock: FixedClock
    client: Any

    def h(self, user: str, **extra: str) -> dict[str, str]:
        return self.api.headers(user, **extra)


@pytest.fixture(scope="module")
def env(api_db_url: str, manufacturing_folder: Path) -> Iterator[Env]:
    """The manufacturing workspace applied, served by an app whose runtime runs on a clock the tests move."""
    ws = apply_folder_quietly(manufacturing_folder, api_db_url)
    clock = FixedClock()
    runtime = Runtime.open(api_db_url, clock=clock)
    try:
        api = ApiEnv(url=api_db_url, runtime=runtime, workspace=ws, tokens=make_users(runtime))
        api.app = create_app(runtime)
        api.app.testing = True
        yield Env(api, clock, api.app.test_client())
    finally:
        runtime.close()


def _opportunity(env: Env, user: str = "rep1", **values: Any) -> dict[str, Any]:
    account = create(env.client, env.api, user, "account", {"name": "苏州精密机械"})
    return create(env.client, env.api, user, "opportunity", {"name": "Line 3", "account": account["id"], **values})


def _patch(env: Env, user: str, opp: dict[str, Any], values: dict[str, Any]) -> Any:
    return env.client.patch(f"/api/v1/records/opportunity/{opp['id']}", json=values,
                            headers=env.h(user, **{"If-Match": str(opp["version"])}))


def _transition(env: Env, user: str, rid: int, stage: str, **body: Any) -> Any:
    return env.client.post(f"/api/v1/records/opportunity/{rid}/transition", json={"stage": stage, **body},
                           headers=env.h(user))


def _at_needs_analysis(env: Env) -> dict[str, Any]:
    opp = _opportunity(env, amount=250000, close_date="2026-06-30", decision_maker="设备部经理")
    resp = _transition(env, "rep1", opp["id"], "needs_analysis")
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()  # type: ignore[no-any-return]


def _assert_budget_refusal(body: dict[str, Any]) -> None:
    err = body["error"]
    assert err["code"] == "stage_gate" and err["docs"] == "docs/errors.md#stage_gate"
    assert err["details"]["missing"] == ["budget_range"] and err["details"]["to"] == "proposal"
    assert "budget_range (Budget range) is required to enter it" in err["message"]
    assert "fill in budget_range" in err["details"]["hint"]


def test_proposal_without_a_budget_range_is_refused_on_every_path(env: Env) -> None:
    opp = _at_needs_analysis(env)
    patched = _patch(env, "rep1", opp, {"stage": "proposal"})
    assert patched.status_code == 422
    _assert_budget_refusal(patched.get_json())
    moved = _transition(env, "rep1", opp["id"], "proposal")
    assert moved.status_code == 422
    _assert_budget_refusal(moved.get_json())
    with env.api.runtime.unit(_actor(env, "rep1")) as uow, pytest.raises(GateRefused) as bulk:
        uow.records.update_many("opportunity", f"id == {opp['id']}", {"stage": "proposal"})
    assert bulk.value.details["missing"] == ["budget_range"]
    got = env.client.get(f"/api/v1/records/opportunity/{opp['id']}", headers=env.h("rep1")).get_json()
    assert got["stage"] == "needs_analysis" and got["version"] == opp["version"]  # nothing was written
    done = _transition(env, "rep1", opp["id"], "proposal", values={"budget_range": "100k_1m"})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["stage"] == "proposal" and done.get_json()["probability"] == 50
    assert done.headers["ETag"] == f'"{done.get_json()["version"]}"'


def test_the_live_server_refuses_it_too(env: Env) -> None:
    import threading

    from waitress.server import create_server

    server = create_server(env.api.app, host="127.0.0.1", port=free_port(), threads=4)
    stopping = threading.Event()

    def serve() -> None:
        try:
            server.run()
        except OSError:  # waitress's loop may poll a socket close() just shut: only then is it expected
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}/api/v1"
    try:
        opp = _at_needs_analysis(env)
        url = f"{base}/records/opportunity/{opp['id']}"
        patched = requests.patch(url, json={"stage": "proposal"}, timeout=10,  # no keep-alive left at shutdown
                                 headers=env.h("rep1", **{"If-Match": str(opp["version"]), "Connection": "close"}))
        assert patched.status_code == 422 and patched.json()["error"]["details"]["missing"] == ["budget_range"]
        moved = requests.post(f"{url}/transition", json={"stage": "proposal"}, timeout=10,
                              headers=env.h("rep1", Connection="close"))
        assert moved.status_code == 422 and moved.json()["error"]["code"] == "stage_gate"
    finally:
        stopping.set()
        server.close()
        thread.join(timeout=5)


def _actor(env: Env, name: str) -> Any:
    from engine.runtime import users

    with env.api.runtime.engine.connect() as conn:
        return users.actor_for(conn, env.api.runtime.state.workspace, name)


def test_stage_durations_and_tasks_of_the_playbook(env: Env) -> None:
    start = env.clock.now()
    opp = _opportunity(env, amount=500000, close_date="2026-07-31", decision_maker="厂长", budget_range="over_1m")
    env.clock.advance(days=3)
    assert _transition(env, "rep1", opp["id"], "needs_analysis").status_code == 200
    env.clock.advance(hours=5)
    assert _transition(env, "rep1", opp["id"], "proposal").status_code == 200
    tasks = env.client.get("/api/v1/records/task", query_string={"filter": f"opportunity == {opp['id']}",
                                                                  "sort": "id"}, headers=env.h("admin")).get_json()
    assert [(t["subject"], t["pipeline_stage"]) for t in tasks["items"]] == [
        ("Survey the customer's site", "needs_analysis"), ("Prepare the technical solution", "proposal"),
        ("Review the quote", "proposal")]
    survey, solution, review = tasks["items"]
    assert survey["due_date"] == (start + dt.timedelta(days=10)).date().isoformat()
    assert review["owner_id"] == _user_id(env, "boss")  # manager_of(owner)
    blocked = _transition(env, "rep1", opp["id"], "negotiation", values={"customer_feedback": "budget_short"})
    assert blocked.status_code == 422 and len(blocked.get_json()["error"]["details"]["open_tasks"]) == 2
    for task, who in ((solution, "rep1"), (review, "boss")):
        r = env.client.patch(f"/api/v1/records/task/{task['id']}", json={"status": "done"},
                             headers=env.h(who, **{"If-Match": str(task["version"])}))
        assert r.status_code == 200, r.get_json()
    env.clock.advance(minutes=10)
    no_feedback = _transition(env, "rep1", opp["id"], "negotiation")
    assert no_feedback.get_json()["error"]["details"]["missing"] == ["customer_feedback"]
    assert "customer_feedback (Customer feedback / objection)" in no_feedback.get_json()["error"]["message"]
    assert _transition(env, "rep1", opp["id"], "negotiation",
                       values={"customer_feedback": "comparing_competitors"}).status_code == 200
    history = env.client.get(f"/api/v1/records/opportunity/{opp['id']}/stages", headers=env.h("rep1")).get_json()
    assert [(i["from"], i["to"], i["duration_seconds"]) for i in history["items"]] == [
        (None, "qualification", 3 * 86400), ("qualification", "needs_analysis", 5 * 3600),
        ("needs_analysis", "proposal", 600), ("proposal", "negotiation", None)]
    assert history["items"][-1]["seconds_so_far"] == 0 and history["items"][0]["actor"] == "rep1"
    other = env.client.get(f"/api/v1/records/opportunity/{opp['id']}/stages", headers=env.h("rep3"))
    assert other.status_code == 404  # rep3 may not read rep1's deal, nor its history
    env.clock.set(start)


def _user_id(env: Env, name: str) -> int:
    return _actor(env, name).user_id  # type: ignore[no-any-return]


def test_a_lost_deal_needs_a_reason(env: Env) -> None:
    opp = _opportunity(env)
    refused = _transition(env, "rep1", opp["id"], "lost")
    assert refused.status_code == 422
    assert refused.get_json()["error"]["details"]["fields"] == {"lost_reason": ["is required to enter stage 'lost'"]}
    lost = _transition(env, "rep1", opp["id"], "lost", values={"lost_reason": "price"})
    assert lost.status_code == 200 and lost.get_json()["closed_at"] is not None
    again = _transition(env, "rep1", opp["id"], "qualification")  # a closed deal is reopened by an admin
    assert again.status_code == 422 and again.get_json()["error"]["details"]["transition"] == "not_allowed"
    assert _transition(env, "admin", opp["id"], "qualification").get_json()["closed_at"] is None


def test_bad_transition_requests(env: Env) -> None:
    opp = _opportunity(env)
    typo = _transition(env, "rep1", opp["id"], "proposl")
    assert typo.status_code == 400
    assert typo.get_json()["error"]["details"]["hint"].startswith("did you mean 'proposal'?")
    extra = env.client.post(f"/api/v1/records/opportunity/{opp['id']}/transition", json={"stage": "won", "x": 1},
                            headers=env.h("rep1"))
    assert extra.status_code == 400 and "unknown key 'x'" in extra.get_json()["error"]["message"]
    stale = env.client.post(f"/api/v1/records/opportunity/{opp['id']}/transition", json={"stage": "won"},
                            headers=env.h("rep1", **{"If-Match": "99"}))
    assert stale.status_code == 409
    none = env.client.post("/api/v1/records/lead/1/transition", json={"stage": "won"}, headers=env.h("admin"))
    assert none.status_code == 404 and "has no pipeline" in none.get_json()["error"]["message"]


def test_the_pipelines_endpoints(env: Env) -> None:
    listed = env.client.get("/api/v1/pipelines", headers=env.h("rep1")).get_json()["items"]
    assert [p["name"] for p in listed] == ["opportunity_sales"]
    one = env.client.get("/api/v1/pipelines/opportunity_sales", headers=env.h("rep1")).get_json()
    stages = {s["key"]: s for s in one["stages"]}
    assert list(stages) == ["qualification", "needs_analysis", "proposal", "negotiation", "won", "lost"]
    proposal = stages["proposal"]
    assert proposal["probability"] == 50 and proposal["requires_tasks_done"] is True
    assert {"field": "budget_range", "label": "Budget range"} in proposal["requires"]
    assert proposal["guidance"]["zh"].startswith("提交技术方案")
    assert proposal["moves"] == ["negotiation", "won", "lost"]
    assert stages["negotiation"]["gate"]["expression"] == "amount > 0"
    assert stages["won"]["moves"] == []
    missing = env.client.get("/api/v1/pipelines/nope", headers=env.h("rep1"))
    assert missing.status_code == 404
    spec = env.client.get("/api/v1/openapi.json", headers=env.h("admin")).get_json()["paths"]
    for path in ("/records/{entity}/{id}/transition", "/records/{entity}/{id}/stages", "/pipelines",
                 "/pipelines/{name}", "/users/{from}/handover"):
        assert path in spec, path


def test_an_activity_stamps_its_opportunity_and_account(env: Env) -> None:
    opp = _opportunity(env)
    when = env.clock.now() - dt.timedelta(hours=3)
    create(env.client, env.api, "rep1", "activity", {"subject": "现场拜访", "type": "visit", "opportunity": opp["id"],
                                                     "account": opp["account"], "occurred_at": when.isoformat(),
                                                     "next_step": "发送报价", "next_step_date": "2026-02-01"})
    got = env.client.get(f"/api/v1/records/opportunity/{opp['id']}", headers=env.h("rep1")).get_json()
    account = env.client.get(f"/api/v1/records/account/{opp['account']}", headers=env.h("rep1")).get_json()
    assert got["last_activity_at"] == account["last_activity_at"] == when.isoformat()
    assert (got["next_step"], got["next_step_date"]) == ("发送报价", "2026-02-01")  # where the record has them


def test_handover_is_for_admins(env: Env) -> None:
    opp = _opportunity(env, user="rep2")
    refused = env.client.post("/api/v1/users/rep2/handover", json={"to": "rep1"}, headers=env.h("rep1"))
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    unknown = env.client.post("/api/v1/users/rep2/handover", json={"to": "nobody"}, headers=env.h("admin"))
    assert unknown.status_code == 404
    itself = env.client.post("/api/v1/users/rep2/handover", json={"to": "rep2"}, headers=env.h("admin"))
    assert itself.status_code == 400
    done = env.client.post("/api/v1/users/rep2/handover", json={"to": "rep1"}, headers=env.h("admin"))
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["moved"]["opportunity"] >= 1 and body["total"] == sum(body["moved"].values())
    got = env.client.get(f"/api/v1/records/opportunity/{opp['id']}", headers=env.h("rep1")).get_json()
    assert got["owner_id"] == _user_id(env, "rep1") and got["stage"] == "qualification"
