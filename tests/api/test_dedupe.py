"""Duplicate rules through the REST API, on SQLite and PostgreSQL, with the shipped configuration (lead,
account and contact rules with ``action: warn``) and a variant whose contact rule blocks.

A second lead with the same phone written differently is flagged beside the record it creates; leads meet
accounts and contacts; keys follow updates, deletes and restores; the caller only sees matches they may
read; a block rule answers 409; a merge re-points every reference and keeps the survivor's history."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from engine.api import create_app
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_dedupe_keys
from tests.api.conftest import ApiEnv, apply_folder_quietly, create, make_users
from tests.conftest import fresh_database

_rng = random.Random()


def mobile() -> str:
    """A fresh mainland mobile number (the module's tests share one database)."""
    return f"139{_rng.randrange(10**8):08d}"


def dotted(number: str) -> str:
    return f"+86 {number[:3]}-{number[3:7]}-{number[7:]}"


def keys_of(env: ApiEnv, entity: str, record_id: int) -> set[tuple[str, str]]:
    with env.runtime.engine.connect() as conn:
        rows = conn.execute(select(crm_dedupe_keys.c.kind, crm_dedupe_keys.c.key).where(
            crm_dedupe_keys.c.entity == entity, crm_dedupe_keys.c.record_id == record_id))
        return {(r.kind, r.key) for r in rows}


def dups(record: dict[str, Any]) -> list[tuple[str, int, list[str]]]:
    """(entity, id, fields matched) of the ``_duplicates`` beside a written record."""
    return [(d["entity"], d["id"], sorted({f for m in d["matched_by"] for f in m["fields"]}))
            for d in record["_duplicates"]]


# ---------------------------------------------------------------------------- warn (shipped rules)


def test_a_second_lead_with_the_same_phone_written_differently_is_flagged(api_env: ApiEnv, client: Any) -> None:
    number = mobile()
    first = create(client, api_env, "rep1", "lead", {"company": "甲公司", "phone": dotted(number)})
    assert "_duplicates" not in first
    second = create(client, api_env, "rep1", "lead", {"company": "乙公司", "phone": number})
    assert second["phone"] == first["phone"] == f"+86{number}"
    assert dups(second) == [("lead", first["id"], ["phone"])]
    assert second["_duplicates"][0]["title"] == "甲公司" and second["_duplicates_hidden"] == 0
    got = client.get(f"/api/v1/records/lead/{second['id']}/duplicates", headers=api_env.headers("rep1"))
    assert got.status_code == 200
    assert [(i["entity"], i["id"], i["score"]) for i in got.get_json()["items"]] == [("lead", first["id"], 100.0)]
    assert ("phone", f"+86{number}") in keys_of(api_env, "lead", second["id"])


def test_matches_the_caller_may_not_read_are_only_counted(api_env: ApiEnv, client: Any) -> None:
    email = f"buyer{_rng.randrange(10**9)}@example.com"
    mine = create(client, api_env, "rep1", "lead", {"company": "丙公司", "email": email})
    theirs = create(client, api_env, "rep3", "lead", {"company": "丁公司", "email": f"  {email.upper()} "})
    assert theirs["_duplicates"] == [] and theirs["_duplicates_hidden"] == 1  # rep3 may not read rep1's leads
    as_rep3 = client.get(f"/api/v1/records/lead/{theirs['id']}/duplicates", headers=api_env.headers("rep3"))
    assert as_rep3.get_json() == {"items": [], "hidden": 1}
    as_admin = client.get(f"/api/v1/records/lead/{theirs['id']}/duplicates", headers=api_env.headers("admin"))
    assert [i["id"] for i in as_admin.get_json()["items"]] == [mine["id"]]
    assert client.get(f"/api/v1/records/lead/{mine['id']}/duplicates",
                      headers=api_env.headers("rep3")).status_code == 404  # not theirs to ask about


def test_a_lead_is_checked_against_accounts_and_contacts(api_env: ApiEnv, client: Any) -> None:
    tag = f"{_rng.randrange(10**6):06d}"
    account = create(client, api_env, "rep1", "account", {"name": f"苏州精密机械{tag}"})
    number = mobile()
    contact = create(client, api_env, "rep1", "contact", {"name": "王工", "mobile": number})
    lead = create(client, api_env, "rep1", "lead", {"company": f"苏州精密机械{tag}有限公司", "phone": dotted(number)})
    assert sorted(dups(lead)) == sorted([("account", account["id"], ["company"]),
                                         ("contact", contact["id"], ["phone"])])
    near = create(client, api_env, "rep1", "lead", {"company": f"苏州精密机械{tag}厂", "email": "x@y.cn"})
    match = next(d for d in near["_duplicates"] if d["entity"] == "account")
    assert match["id"] == account["id"] and 90 <= match["score"] < 100  # fuzzy, within the blocked candidates
    far = create(client, api_env, "rep1", "lead", {"company": f"苏州精密{tag}电子设备", "email": "z@y.cn"})
    assert all(d["entity"] != "account" or d["id"] != account["id"] for d in far.get("_duplicates", []))


def test_keys_follow_updates_deletes_and_restores(api_env: ApiEnv, client: Any) -> None:
    a, b = mobile(), mobile()
    first = create(client, api_env, "rep1", "lead", {"company": "戊公司", "phone": a})
    second = create(client, api_env, "rep1", "lead", {"company": "己公司", "phone": b})
    assert "_duplicates" not in second
    resp = client.patch(f"/api/v1/records/lead/{second['id']}", json={"phone": dotted(a)},
                        headers=api_env.headers("rep1", **{"If-Match": str(second["version"])}))
    assert resp.status_code == 200 and dups(resp.get_json()) == [("lead", first["id"], ["phone"])]
    assert ("phone", f"+86{b}") not in keys_of(api_env, "lead", second["id"])
    assert ("phone", f"+86{a}") in keys_of(api_env, "lead", second["id"])
    assert client.delete(f"/api/v1/records/lead/{first['id']}", headers=api_env.headers("admin")).status_code == 204
    assert keys_of(api_env, "lead", first["id"]) == set()
    listed = client.get(f"/api/v1/records/lead/{second['id']}/duplicates", headers=api_env.headers("rep1"))
    assert listed.get_json() == {"items": [], "hidden": 0}
    with api_env.runtime.unit(Actor.system()) as uow:
        uow.records.restore("lead", first["id"])
    listed = client.get(f"/api/v1/records/lead/{second['id']}/duplicates", headers=api_env.headers("rep1"))
    assert [i["id"] for i in listed.get_json()["items"]] == [first["id"]]


def test_bulk_creates_and_bulk_updates_keep_keys(api_env: ApiEnv) -> None:
    a, b = mobile(), mobile()
    with api_env.runtime.unit(Actor.system()) as uow:
        ids = uow.records.create_many("lead", [{"company": "庚公司", "phone": a}, {"company": "辛公司", "phone": b}])
        assert uow.records.update_many("lead", f"id == {ids[1]}", {"phone": dotted(a)}) == 1
    assert ("phone", f"+86{a}") in keys_of(api_env, "lead", ids[0]) & keys_of(api_env, "lead", ids[1])
    with api_env.runtime.unit(Actor.system()) as uow:
        from engine.runtime.sales.dedupe import matches

        found = matches(uow, "lead", {"phone": a})
    assert {m.record_id for m in found if m.entity == "lead"} == set(ids)


def test_the_openapi_document_describes_duplicates(api_env: ApiEnv, client: Any) -> None:
    doc = client.get("/api/v1/openapi.json", headers=api_env.headers("rep1")).get_json()
    assert {"/records/{entity}/{id}/duplicates", "/records/{entity}/{id}/merge"} <= set(doc["paths"])
    created = doc["paths"]["/records/lead"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["allOf"][1]["properties"]["_duplicates"]["items"] == {"$ref": "#/components/schemas/DuplicateMatch"}
    assert "DuplicateMatch" in doc["components"]["schemas"]


# ---------------------------------------------------------------------------- merge


def test_merge_repoints_references_and_keeps_history(api_env: ApiEnv, client: Any) -> None:
    survivor = create(client, api_env, "rep1", "account", {"name": f"合并客户{_rng.randrange(10**6)}"})
    loser = create(client, api_env, "rep2", "account", {"name": survivor["name"] + "有限公司", "phone": mobile(),
                                                        "city": "苏州"})
    assert loser["_duplicates"] == [] and loser["_duplicates_hidden"] == 1  # rep1's account: not rep2's to see
    contact = create(client, api_env, "rep2", "contact", {"name": "赵工", "account": loser["id"]})
    opp = create(client, api_env, "rep2", "opportunity", {"name": "产线", "account": loser["id"]})
    act = create(client, api_env, "rep2", "activity", {"subject": "拜访", "occurred_at": "2026-01-05T10:00:00Z",
                                                       "account": loser["id"], "opportunity": opp["id"]})
    body = {"loser": loser["id"], "fields": {"phone": "loser", "city": "loser", "name": "survivor"}}
    url = f"/api/v1/records/account/{survivor['id']}/merge"
    refused = client.post(url, json=body, headers=api_env.headers("rep1"))
    assert refused.status_code in (403, 404)  # a rep may neither see rep2's account nor delete accounts
    resp = client.post(url, json=body, headers=api_env.headers("admin"))
    assert resp.status_code == 200, resp.get_json()
    out = resp.get_json()
    assert out["record"]["phone"] == loser["phone"] and out["record"]["city"] == "苏州"
    assert out["record"]["name"] == survivor["name"] and out["fields_taken"] == ["city", "phone"]
    assert out["repointed"] == {"contact.account": 1, "opportunity.account": 1, "activity.account": 1}
    admin = api_env.headers("admin")
    for entity, rid in (("contact", contact["id"]), ("opportunity", opp["id"]), ("activity", act["id"])):
        assert client.get(f"/api/v1/records/{entity}/{rid}", headers=admin).get_json()["account"] == survivor["id"]
    assert client.get(f"/api/v1/records/account/{loser['id']}", headers=admin).status_code == 404
    history = client.get(f"/api/v1/records/account/{survivor['id']}/history", headers=admin).get_json()["items"]
    assert history[0]["action"] == "create" and "merge" in [h["action"] for h in history]
    assert {h["field"] for h in history if h["action"] == "merge"} >= {"phone", "city"}
    lost = client.get(f"/api/v1/records/account/{loser['id']}/history", headers=admin).get_json()["items"]
    assert [h["action"] for h in lost][-2:] == ["delete", "merge"]
    moved = client.get(f"/api/v1/records/contact/{contact['id']}/history", headers=admin).get_json()["items"]
    assert moved[-1]["action"] == "merge" and moved[-1]["field"] == "account"
    assert keys_of(api_env, "account", loser["id"]) == set()


def test_merge_refuses_what_it_cannot_do(api_env: ApiEnv, client: Any) -> None:
    a = create(client, api_env, "admin", "account", {"name": f"甲{_rng.randrange(10**6)}"})
    b = create(client, api_env, "admin", "account", {"name": f"乙{_rng.randrange(10**6)}"})
    url, admin = f"/api/v1/records/account/{a['id']}/merge", api_env.headers("admin")
    same = client.post(url, json={"loser": a["id"]}, headers=admin)
    assert same.status_code == 400 and "cannot be merged into itself" in same.get_json()["error"]["message"]
    bad = client.post(url, json={"loser": b["id"], "fields": {"nmae": "loser", "city": "both"}}, headers=admin)
    assert bad.status_code == 400
    assert bad.get_json()["error"]["details"] == {"nmae": ["unknown field"], "city": ['must be "loser" or "survivor"']}
    assert client.post(url, json={}, headers=admin).status_code == 400
    assert client.post(url, json={"loser": 10**12}, headers=admin).status_code == 404
    assert client.get(f"/api/v1/records/account/{b['id']}", headers=admin).status_code == 200  # nothing happened


# ---------------------------------------------------------------------------- block (a variant workspace)

BLOCK_RULE = """\
# contacts are unique by e-mail and phone: a duplicate is refused
dedupe: contact_duplicates
extend: true
action: block
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def block_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              manufacturing_folder: Path) -> Iterator[ApiEnv]:
    from engine.runtime.runtime import Runtime

    folder = tmp_path_factory.mktemp("block") / "acme"
    shutil.copytree(manufacturing_folder, folder)
    (folder / "dedupe").mkdir(exist_ok=True)
    (folder / "dedupe" / "contact_block.yaml").write_text(BLOCK_RULE, "utf-8")
    with fresh_database(request, request.param, tmp_path_factory.mktemp("db"), "crm_block") as url:
        ws = apply_folder_quietly(folder, url)
        runtime = Runtime.open(url)
        try:
            env = ApiEnv(url=url, runtime=runtime, workspace=ws, tokens=make_users(runtime))
            env.app = create_app(runtime)
            env.app.testing = True
            yield env
        finally:
            runtime.close()


def test_a_block_rule_refuses_a_duplicate_with_409(block_env: ApiEnv) -> None:
    client = block_env.app.test_client()
    number = mobile()
    first = create(client, block_env, "rep1", "contact", {"name": "钱工", "phone": number})
    resp = client.post("/api/v1/records/contact", json={"name": "钱工2", "mobile": dotted(number)},
                       headers=block_env.headers("rep1"))
    assert resp.status_code == 409
    err = resp.get_json()["error"]
    assert err["code"] == "duplicate" and err["docs"] == "docs/errors.md#duplicate"
    assert [(m["entity"], m["id"], m["title"]) for m in err["details"]["matches"]] == [
        ("contact", first["id"], "钱工")]
    assert err["details"]["rules"] == ["contact_duplicates"] and "钱工" in err["message"]
    other = client.post("/api/v1/records/contact", json={"name": "钱工3", "phone": number},
                        headers=block_env.headers("rep3"))
    assert other.status_code == 409  # refused even when the caller may not see the record it duplicates
    hidden = other.get_json()["error"]
    assert hidden["details"]["matches"] == [] and hidden["details"]["hidden"] == 1
    assert "钱工" not in hidden["message"] and "1 match you cannot see" in hidden["message"]
    # an update that makes a duplicate is refused too; one that does not touch the keys is not
    second = create(client, block_env, "rep1", "contact", {"name": "孙工", "phone": mobile()})
    moved = client.patch(f"/api/v1/records/contact/{second['id']}", json={"phone": number},
                         headers=block_env.headers("rep1", **{"If-Match": str(second["version"])}))
    assert moved.status_code == 409
    renamed = client.patch(f"/api/v1/records/contact/{first['id']}", json={"title": "经理"},
                           headers=block_env.headers("rep1", **{"If-Match": str(first["version"])}))
    assert renamed.status_code == 200


def test_a_block_rule_acts_within_one_bulk_create(block_env: ApiEnv) -> None:
    """Two rows of one request with the same key: the later one is refused -- the whole request in the
    atomic mode (the rows named), that row alone with ``atomic=false`` (the error a duplicate of a stored
    record gets)."""
    client = block_env.app.test_client()
    number, tag = mobile(), f"{_rng.randrange(10**8)}"
    rows = [{"name": f"周工{tag}", "phone": number}, {"name": f"吴工{tag}", "phone": mobile()},
            {"name": f"郑工{tag}", "mobile": dotted(number)}]
    listed = f"/api/v1/records/contact?filter=endswith(name, '{tag}')&count=true"
    resp = client.post("/api/v1/records/contact/bulk", json=rows, headers=block_env.headers("rep1"))
    assert resp.status_code == 409, resp.get_json()
    err = resp.get_json()["error"]
    assert err["code"] == "duplicate" and err["details"]["row"] == 2, err
    assert err["message"] == "row 2: this contact duplicates row 0 of this request by mobile; nothing was created"
    assert [m["row"] for m in err["details"]["matches"]] == [0] and err["details"]["rules"] == ["contact_duplicates"]
    assert "hint" in err["details"]
    assert client.get(listed, headers=block_env.headers("admin")).get_json()["total"] == 0

    resp = client.post("/api/v1/records/contact/bulk?atomic=false", json=rows, headers=block_env.headers("rep1"))
    body = resp.get_json()
    assert resp.status_code == 200 and (body["created"], body["failed"]) == (2, 1), body
    first = body["results"][0]["id"]
    refused = body["results"][2]["error"]
    assert refused["code"] == "duplicate", refused
    assert refused["message"] == f"this contact duplicates existing records: contact {first} (周工{tag}) by mobile"
    single = client.post("/api/v1/records/contact", json=rows[2], headers=block_env.headers("rep1"))
    assert single.status_code == 409 and single.get_json()["error"]["message"] == refused["message"]
    # the row's details as the single create gives them: JSON objects, not their Python text, and the hint
    assert refused["details"] == single.get_json()["error"]["details"], (refused, single.get_json())
    assert [m["id"] for m in refused["details"]["matches"]] == [first] and refused["details"]["hint"]
    assert client.get(listed, headers=block_env.headers("admin")).get_json()["total"] == 2


def test_a_fuzzy_block_key_compares_the_rows_of_one_batch(block_env: ApiEnv) -> None:
    """The in-batch comparison uses the rule's normalisers and fuzzy similarity, as the stored lookup does."""
    import dataclasses

    from engine.runtime.sales.dedupe_batch import refusals
    from engine.runtime.sales.dedupe_keys import index_of

    idx = index_of(block_env.workspace)
    rule = dataclasses.replace(idx.rules["lead"][0], action="block")
    idx = dataclasses.replace(idx, rules={**idx.rules, "lead": (rule,)})
    rows = [(0, {"company": "苏州精密机械有限公司"}), (1, {"company": "杭州机床厂"}),
            (2, {"company": "苏州精密机械厂"}), (3, {"company": "ACME Co., Ltd.", "email": "Buyer@Acme.test"}),
            (5, {"company": "Zeta", "email": " buyer@acme.TEST"})]
    found = refusals(idx, "lead", rows)
    assert sorted(found) == [2, 5]
    assert found[2].details["matches"][0]["row"] == 0 and 90 <= found[2].details["matches"][0]["score"] < 100
    assert found[5].message == "this lead duplicates row 3 of this request by email"
    assert refusals(index_of(block_env.workspace), "lead", rows) == {}  # the shipped lead rule only warns


def test_merge_repoints_lines_through_their_parent(api_env: ApiEnv, client: Any) -> None:
    t = _rng.randrange(10**8)
    admin = api_env.headers("admin")
    keep = create(client, api_env, "admin", "product", {"code": f"P-{t}", "name": "数控车床"})
    drop = create(client, api_env, "admin", "product", {"code": f"P-{t}-dup", "name": "数控车床 (重复)"})
    account = create(client, api_env, "admin", "account", {"name": f"报价客户{t}"})
    quote = create(client, api_env, "admin", "quote", {"account": account["id"], "lines": [
        {"product": drop["id"], "quantity": 2, "unit_price": 1000},
        {"product": keep["id"], "quantity": 1, "unit_price": 500}]})
    resp = client.post(f"/api/v1/records/product/{keep['id']}/merge", json={"loser": drop["id"]}, headers=admin)
    assert resp.status_code == 200, resp.get_json()
    assert [k for k in resp.get_json()["repointed"] if k.endswith(".product")] and \
        sum(resp.get_json()["repointed"].values()) == 1
    lines = client.get(f"/api/v1/records/quote/{quote['id']}", headers=admin).get_json()["lines"]
    assert [line["product"] for line in lines] == [keep["id"], keep["id"]]
    assert [float(line["amount"]) for line in lines] == [2000.0, 500.0]  # the lines are otherwise unchanged
