"""Scoring and assignment through the REST API of the shipped manufacturing workspace, on SQLite and
PostgreSQL: an exhibition lead "manufacturing + clear demand" with a budget is scored A, its score endpoint
explains every rule, it is assigned round robin to the senior sales team; explicit and rule-based
reassigns; and against a live server, 1,000 concurrent creates spread over 7 reps evenly (±1)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from engine.runtime import users
from engine.runtime.context import Actor
from tests.api.conftest import ApiEnv
from tests.api.test_live import http_json

SENIOR = [f"senior{i}" for i in range(1, 8)]
A_LEAD = {"company": "苏州精密机械有限公司", "industry": "manufacturing", "demand": "clear", "source": "exhibition",
          "budget": 2_000_000, "purchase_budget": 800_000, "decision_maker_title": "总经理"}
_SERIAL = iter(range(10**7))


def a_lead(**extra: Any) -> dict[str, Any]:
    """An A lead with a phone of its own (so no duplicate rule of the shipped configuration objects)."""
    return {**A_LEAD, "phone": f"+86 139{next(_SERIAL):08d}", **extra}


@pytest.fixture(scope="module")
def senior(api_env: ApiEnv) -> dict[str, int]:
    """Team senior_sales with seven reps (and their tokens); username -> id."""
    ids = {}
    with api_env.runtime.unit(Actor.system()) as uow:
        users.create_team(uow, "senior_sales")
        for name in SENIOR:
            ids[name] = users.create_user(uow, name, roles=["sales"], team="senior_sales")
            api_env.tokens[name] = users.create_token(uow, name, "test")
    return ids


def post(client: Any, env: ApiEnv, user: str, path: str, body: Any) -> Any:
    return client.post(f"/api/v1{path}", json=body, headers=env.headers(user))


def test_an_a_lead_is_scored_explained_and_assigned_round_robin(client: Any, api_env: ApiEnv,
                                                                 senior: dict[str, int]):
    resp = post(client, api_env, "admin", "/records/lead", a_lead())
    assert resp.status_code == 201, resp.get_json()
    lead = resp.get_json()
    assert lead["grade"] == "A" and lead["score"] == 100  # 40 + 25 + 20 + 15 + 5 = 105, capped at 100
    owner = lead["owner_id"]
    assert owner in senior.values()
    got = client.get(f"/api/v1/records/lead/{lead['id']}/score", headers=api_env.headers("admin"))
    assert got.status_code == 200
    [quality] = got.get_json()["scorings"]
    rules = {r["key"]: r for r in quality["rules"]}
    assert list(rules) == ["manufacturing_clear_demand", "clear_demand", "big_budget", "purchase_budget",
                           "decision_maker", "budget", "referral", "exhibition", "gone_quiet"]
    assert {k for k, r in rules.items() if r["fired"]} == {"manufacturing_clear_demand", "big_budget",
                                                          "purchase_budget", "decision_maker", "exhibition"}
    assert rules["manufacturing_clear_demand"]["reasons"] == {"en": "Manufacturing with a clear demand",
                                                            "zh": "制造业且需求明确"}
    assert rules["manufacturing_clear_demand"]["reason"] == "Manufacturing with a clear demand"  # locale en
    assert (quality["raw_total"], quality["score"], quality["grade"]) == (105, 100, "A")
    assert quality["grades"][0] == {"grade": "A", "min": 60}
    rep = next(n for n, i in senior.items() if i == owner)
    notes = client.get("/api/v1/notifications", headers=api_env.headers(rep)).get_json()["items"]
    mine = [n for n in notes if n["record_id"] == lead["id"]]
    assert mine and mine[0]["kind"] == "assignment" and mine[0]["data"]["rule_name"] == "grade_a"
    history = client.get(f"/api/v1/records/lead/{lead['id']}/history", headers=api_env.headers("admin")).get_json()
    assert any(e["action"] == "assign" and e["new"]["assignment"] == "lead_routing" for e in history["items"])
    second = post(client, api_env, "admin", "/records/lead", a_lead()).get_json()
    assert second["owner_id"] in senior.values() and second["owner_id"] != owner  # the next one's turn


def test_reps_keep_their_own_leads_and_cannot_read_others_scores(client: Any, api_env: ApiEnv,
                                                                  senior: dict[str, int]):
    own = post(client, api_env, "rep1", "/records/lead", a_lead()).get_json()
    assert own["grade"] == "A"
    assert own["owner_id"] not in senior.values()  # created by a rep: not routed
    assert client.get(f"/api/v1/records/lead/{own['id']}/score", headers=api_env.headers("rep1")).status_code == 200
    hidden = client.get(f"/api/v1/records/lead/{own['id']}/score", headers=api_env.headers("rep3"))
    assert hidden.status_code == 404
    none = client.get(f"/api/v1/records/account/{own['id']}/score", headers=api_env.headers("admin"))
    assert none.status_code == 404 and none.get_json()["error"]["code"] in ("no_scoring", "not_found")


def test_assign_endpoint_explicit_and_by_rules(client: Any, api_env: ApiEnv, senior: dict[str, int]):
    lead = post(client, api_env, "rep1", "/records/lead", a_lead()).get_json()
    path = f"/records/lead/{lead['id']}/assign"
    assert post(client, api_env, "rep3", path, {"to": "rep2"}).status_code == 404  # may not see it
    bad = post(client, api_env, "rep1", path, {"who": "rep2"})
    assert bad.status_code == 400 and "unknown key 'who'" in bad.get_json()["error"]["message"]
    assert post(client, api_env, "rep1", path, {"to": "nobody"}).get_json()["error"]["code"] == "unknown_user"
    moved = post(client, api_env, "rep1", path, {"to": "rep2"})
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["owner_id"] == client.get("/api/v1/records/lead/" + str(lead["id"]),
                                                      headers=api_env.headers("admin")).get_json()["owner_id"]
    by_rules = post(client, api_env, "admin", path, {})
    assert by_rules.status_code == 200, by_rules.get_json()
    body = by_rules.get_json()
    assert body["owner_id"] in senior.values() and body["rule"].startswith("lead_routing grade_a")
    low = post(client, api_env, "admin", "/records/lead", {"company": "Small", "phone": "+86 137 0000 0001"}).get_json()
    refused = post(client, api_env, "admin", f"/records/lead/{low['id']}/assign", {})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "not_assigned"


def test_the_openapi_document_lists_score_and_assign(client: Any, api_env: ApiEnv):
    paths = client.get("/api/v1/openapi.json", headers=api_env.headers("admin")).get_json()["paths"]
    assert "get" in paths["/records/{entity}/{id}/score"]
    assert "post" in paths["/records/{entity}/{id}/assign"]


def test_a_thousand_concurrent_creates_spread_evenly_over_seven_reps(live_server: str, api_env: ApiEnv,
                                                                      senior: dict[str, int]):
    """Done when: 1,000 creates from 16 threads at once, each assigned round robin; every rep gets 142 or 143
    of them (the cursor is atomic under concurrency), and each lead notified its owner once."""
    with api_env.runtime.unit(Actor.system()) as uow:  # 16 admins: one request each at a time (no 429)
        tokens = [users.create_token(uow, users.create_user(uow, f"importer{i}", roles=["admin"]), "t")
                  for i in range(16)]
    barrier = threading.Barrier(16)
    lock = threading.Lock()
    owners: list[int] = []
    statuses: list[int] = []

    def one(i: int) -> None:
        if i < 16:
            barrier.wait()
        status, made = http_json(live_server, "POST", "/api/v1/records/lead", tokens[i % 16],
                                 {**A_LEAD, "company": f"Concurrent {i}", "phone": f"+86 136{i:08d}"})
        with lock:
            statuses.append(status)
            if status == 201:
                owners.append(made["owner_id"])

    with api_env.runtime.engine.connect() as conn:
        from sqlalchemy import select

        from engine.runtime.engine_tables import crm_notifications

        before = len(conn.execute(select(crm_notifications.c.id)).all())
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(1000)))
    assert statuses.count(201) == 1000, Counter(statuses)
    counts = Counter(owners)
    assert set(counts) == set(senior.values())
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    with api_env.runtime.engine.connect() as conn:
        after = len(conn.execute(select(crm_notifications.c.id)).all())
    assert after - before == 1000
