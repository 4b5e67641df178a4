"""Pools through the REST API of a live server (waitress), on SQLite and PostgreSQL, with the shipped
manufacturing configuration and an injected clock.

* 16 threads claim the same 100 pool leads: each is claimed exactly once and no rep's holding limit or
  daily cap is exceeded (both limits bind for some reps);
* the refusals are clear: holding limit, daily cap, cool-down, already claimed (409), not a member (403);
* the done-when sequence: a claimed East-pool lead without follow-up is named by the preview, its holder
  is warned 2 days ahead and after 7 days the worker returns it to the East pool; the masked phone is
  not visible to a non-holder; the previous holder cannot reclaim during the cool-down.
"""

from __future__ import annotations

import random
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from engine.api import create_app
from engine.runtime import users
from engine.runtime.context import Actor, FixedClock
from engine.runtime.engine_tables import crm_pool_log
from engine.runtime.jobs.worker import Worker
from engine.runtime.runtime import Runtime
from engine.runtime.sales import pools
from tests.api.conftest import apply_folder_quietly, serving
from tests.api.test_live import http_json
from tests.conftest import fresh_database

RACE_POOL = """\
pool: race_pool
entity: lead
label: {en: Race pool}
members: {teams: [east_sales]}
admins: {roles: [sales_manager]}
holding_limit: 15
daily_claim_limit: 13
hidden_fields: [phone]
"""
REPS = [f"r{i}" for i in range(8)]
PHONE = "+8613800138000"


@dataclass
class PoolEnv:
    url: str
    runtime: Any
    clock: FixedClock
    base: str
    tokens: dict[str, str] = field(default_factory=dict)

    def call(self, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http_json(self.base, method, f"/api/v1{path}", self.tokens[user], body)


def _people(runtime: Any) -> dict[str, str]:
    tokens = {}
    with runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "boss", roles=["sales_manager"])
        users.create_team(uow, "east_sales", manager="boss")
        users.create_user(uow, "admin", roles=["admin"])
        users.create_user(uow, "director", roles=["sales_director"])
        users.create_user(uow, "outsider", roles=["sales"])
        for rep in REPS:
            users.create_user(uow, rep, roles=["sales"], team="east_sales", manager="boss")
        for name in ("boss", "admin", "director", "outsider", *REPS):
            tokens[name] = users.create_token(uow, name, "test")
    return tokens


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        manufacturing_folder: Path) -> Iterator[PoolEnv]:
    folder = tmp_path_factory.mktemp("pools") / "acme"
    shutil.copytree(manufacturing_folder, folder)
    (folder / "pools").mkdir(exist_ok=True)
    (folder / "pools" / "race_pool.yaml").write_text(RACE_POOL, "utf-8")
    with fresh_database(request, request.param, tmp_path_factory.mktemp("db"), "crm_pools") as url:
        apply_folder_quietly(folder, url)
        clock = FixedClock()
        runtime = Runtime.open(url, clock=clock)
        try:
            tokens = _people(runtime)
            with serving(create_app(runtime)) as base:
                yield PoolEnv(url, runtime, clock, base, tokens)
        finally:
            runtime.close()


def _pooled(env: PoolEnv, pool: str, n: int, **values: Any) -> list[int]:
    with env.runtime.unit(Actor.system()) as uow:
        ids: list[int] = uow.records.create_many("lead", [
            {"company": f"{pool} {i}", "phone": "13800138000", "region": "east", "industry": "other",
             "pool": pool, **values} for i in range(n)], bypass_readonly=True)
    return ids


def test_the_openapi_document_lists_the_pool_endpoints(env: PoolEnv) -> None:
    status, doc = env.call("r0", "GET", "/openapi.json")
    assert status == 200
    for path, method in (("/pools", "get"), ("/pools/{pool}/records", "get"), ("/pools/{pool}/claim", "post"),
                         ("/pools/{pool}/return", "post"), ("/pools/{pool}/assign", "post"),
                         ("/pools/{pool}/move", "post"), ("/pools/{pool}/reveal", "post"),
                         ("/pools/{pool}/preview", "get")):
        assert method in doc["paths"][path], path
    assert "409" in doc["paths"]["/pools/{pool}/claim"]["post"]["responses"]


def test_sixteen_threads_claim_a_hundred_leads_each_once_within_the_limits(env: PoolEnv) -> None:
    leads = _pooled(env, "race_pool", 100)
    extra = _pooled(env, "race_pool", 12)
    with env.runtime.unit(Actor.system()) as uow:  # r4..r7 already hold 3 each: their holding limit binds first
        for i, rid in enumerate(extra):
            pools.assign(uow, "race_pool", rid, REPS[4 + i // 3])
    claimed: list[tuple[str, int]] = []
    refusals: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def claim_all(rep: str, seed: int) -> None:
        order = list(leads)
        random.Random(seed).shuffle(order)
        barrier.wait()
        for rid in order:
            status, body = env.call(rep, "POST", "/pools/race_pool/claim", {"id": rid})
            code = None if status == 200 else body["error"]["code"]
            with lock:
                if status == 200:
                    claimed.append((rep, rid))
                else:
                    refusals[code] = refusals.get(code, 0) + 1
            if code in ("holding_limit", "daily_claim_limit"):
                return
            assert status in (200, 409), body

    threads = [threading.Thread(target=claim_all, args=(REPS[i % 8], i)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert sorted(rid for _rep, rid in claimed) == sorted(leads)  # every lead claimed, none twice
    per_rep = {rep: sum(1 for r, _ in claimed if r == rep) for rep in REPS}
    assert per_rep == {**{r: 13 for r in REPS[:4]}, **{r: 12 for r in REPS[4:]}}, per_rep
    assert refusals.get("already_claimed", 0) > 0
    with env.runtime.unit(Actor.system(), readonly=True) as uow:
        for rep in REPS:
            uid = users.user_id(uow.conn, rep)
            pool = pools.pool_rules.get_pool(uow, "race_pool")
            assert pools.pool_rules.held_count(uow, pool, uid) <= 15
            assert pools.pool_rules.claims_today(uow, pool, uid) <= 13
        log = crm_pool_log
        claims = uow.conn.execute(select(func.count()).select_from(log).where(
            log.c.pool == "race_pool", log.c.action == "claim")).scalar_one()
        assert claims == 100

    [spare] = _pooled(env, "race_pool", 1)
    status, body = env.call("r4", "POST", "/pools/race_pool/claim", {"id": spare})
    assert status == 409 and body["error"]["code"] == "holding_limit"
    assert "you hold 15 records from pool 'race_pool'; the holding limit is 15" in body["error"]["message"]
    assert body["error"]["details"]["limit"] == 15 and body["error"]["details"]["held"] == 15
    status, body = env.call("r0", "POST", "/pools/race_pool/claim", {"id": spare})
    assert status == 409 and body["error"]["code"] == "daily_claim_limit"
    assert "the daily limit is 13" in body["error"]["message"] and body["error"]["docs"].endswith("#daily_claim_limit")
    status, body = env.call("r1", "POST", "/pools/race_pool/claim", {"id": leads[0]})
    assert status == 409 and body["error"]["code"] in ("already_claimed", "daily_claim_limit")


def test_refusals_of_the_pool_endpoints(env: PoolEnv) -> None:
    [lead] = _pooled(env, "east_pool", 1)
    status, body = env.call("outsider", "POST", "/pools/east_pool/claim", {"id": lead})
    assert status == 403 and body["error"]["code"] == "not_pool_member"
    assert "team east_sales" in body["error"]["message"]
    status, body = env.call("r5", "POST", "/pools/eastpool/claim", {"id": lead})
    assert status == 404 and body["error"]["code"] == "unknown_pool" and "did you mean 'east_pool'" in \
        body["error"]["details"]["hint"]
    status, body = env.call("r5", "GET", "/pools/east_pool/records?filter=" + quote("phone == '13800138000'"))
    assert status == 400 and body["error"]["code"] == "masked_field"
    status, body = env.call("r5", "POST", "/pools/east_pool/claim", {})
    assert status == 400 and body["error"]["details"]["id"] == ["is required"]
    status, body = env.call("r5", "POST", "/pools/east_pool/claim", {"id": lead})
    assert status == 200 and body["record"]["phone"] == PHONE
    status, body = env.call("r5", "POST", "/pools/east_pool/return", {"id": lead})
    assert status == 400 and body["error"]["code"] == "reason_required"
    status, body = env.call("r6", "POST", "/pools/east_pool/return", {"id": lead, "reason": "unreachable"})
    assert status == 403 and body["error"]["code"] == "not_holder"
    status, body = env.call("r5", "POST", "/pools/east_pool/reveal", {"id": lead, "field": "phone"})
    assert status == 403 and body["error"]["code"] == "not_pool_admin"
    status, mine = env.call("r5", "GET", "/pools")
    east = next(p for p in mine["items"] if p["name"] == "east_pool")
    assert status == 200 and east["held"] == 1 and east["claimed_today"] == 1 and east["holding_limit"] == 30
    assert {p["name"] for p in mine["items"]} == {"east_pool", "general_pool", "race_pool"}


def test_done_when_a_neglected_lead_is_warned_then_returned_as_the_preview_said(env: PoolEnv) -> None:
    values = {"company": "无锡华泰电子科技", "phone": "+86 138-0013-8000", "region": "east", "industry": "other"}
    status, made = env.call("admin", "POST", "/records/lead", values)
    assert status == 201, made
    lead = made["id"]
    status, back = env.call("admin", "POST", "/pools/east_pool/return", {"id": lead, "reason": "other"})
    assert status == 200 and back["pool"] == "east_pool"
    status, seen = env.call("director", "GET", f"/records/lead/{lead}")  # reads every lead: masked while unclaimed
    assert status == 200 and seen["phone"] == "+86 138****8000" and seen["owner_id"] is None
    status, page = env.call("r1", "GET", "/pools/east_pool/records?filter=" + quote("company == '无锡华泰电子科技'"))
    assert status == 200 and [(r["id"], r["phone"]) for r in page["items"]] == [(lead, "+86 138****8000")]

    status, got = env.call("r7", "POST", "/pools/east_pool/claim", {"id": lead})
    assert status == 200 and got["record"]["phone"] == PHONE and got["record"]["claimed_at"] is not None
    status, _ = env.call("r1", "GET", f"/records/lead/{lead}")
    assert status == 404  # a non-holder rep does not see it at all once claimed
    worker = Worker(env.runtime, "w")
    worker.run_once()  # the worker queues its next hourly recycle run

    env.clock.advance(days=6, hours=1)  # day 6: a run in 2 days would return it
    status, dry = env.call("boss", "GET", "/pools/east_pool/preview")
    assert status == 200 and dry["returns"] == []
    [warn] = [w for w in dry["warnings"] if w["id"] == lead]
    assert warn["reason"] == "No follow-up for 7 days" and warn["holder"] == "r7"
    assert worker.run_once().done >= 1
    status, notes = env.call("r7", "GET", "/notifications")
    assert [n["kind"] for n in notes["items"] if n["record_id"] == lead] == ["pool_recycle_warning"]

    env.clock.advance(days=2)  # day 8
    status, dry = env.call("boss", "GET", "/pools/east_pool/preview")
    [due] = [r for r in dry["returns"] if r["id"] == lead]
    assert (due["rule"], due["reason"], due["to_pool"]) == (1, "No follow-up for 7 days", "east_pool")
    assert "days_since(max(last_activity_at, claimed_at)) > 7" in due["when"]
    assert worker.run_once().done >= 1
    status, seen = env.call("director", "GET", f"/records/lead/{lead}")
    assert (seen["pool"], seen["owner_id"], seen["claimed_at"], seen["phone"]) == (
        "east_pool", None, None, "+86 138****8000")
    status, notes = env.call("r7", "GET", "/notifications")
    kinds = [n["kind"] for n in notes["items"] if n["record_id"] == lead]
    assert kinds == ["pool_recycle", "pool_recycle_warning"]
    assert "went back to East China pool: No follow-up for 7 days" in notes["items"][0]["text"]

    status, body = env.call("r7", "POST", "/pools/east_pool/claim", {"id": lead})
    assert status == 409 and body["error"]["code"] == "reclaim_cooldown" and "until" in body["error"]["details"]
    status, got = env.call("r2", "POST", "/pools/east_pool/claim", {"id": lead})
    assert status == 200, got
    status, back = env.call("r2", "POST", "/pools/east_pool/return", {"id": lead, "reason": "unreachable"})
    assert status == 200 and back == {"id": lead, "pool": "east_pool", "reason": "unreachable", "routed": None}
    status, history = env.call("admin", "GET", f"/records/lead/{lead}/history")
    actions = [e["action"] for e in history["items"] if e["field"] == "owner_id"]
    assert actions == ["return", "claim", "recycle", "claim", "return"]
