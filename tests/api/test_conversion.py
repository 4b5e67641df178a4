"""Lead conversion through the REST API, on SQLite and PostgreSQL, with the shipped ``lead_to_customer``
conversion of the manufacturing template.

A lead for 苏州精密机械有限公司 reuses the existing account 苏州精密机械; account, contact and opportunity are
created in one transaction (a failure in the opportunity leaves nothing behind); the lead is marked and its
activities become visible from the account; several candidate accounts need a pick; a converted lead
cannot be converted again."""

from __future__ import annotations

import random
from typing import Any

from tests.api.conftest import ApiEnv, create

_rng = random.Random()


def tag() -> str:
    return f"{_rng.randrange(10**8):08d}"


def convert(client: Any, env: ApiEnv, user: str, lead_id: int, body: dict[str, Any] | None = None) -> Any:
    return client.post(f"/api/v1/records/lead/{lead_id}/convert", json=body or {}, headers=env.headers(user))


def count(client: Any, env: ApiEnv, entity: str, filter_: str) -> int:
    resp = client.get(f"/api/v1/records/{entity}", query_string={"filter": filter_, "count": "true"},
                      headers=env.headers("admin"))
    assert resp.status_code == 200, resp.get_json()
    return int(resp.get_json()["total"])


def test_a_lead_reuses_the_account_its_company_matches(api_env: ApiEnv, client: Any) -> None:
    t = tag()
    account = create(client, api_env, "rep1", "account", {"name": f"苏州精密机械{t}"})
    lead = create(client, api_env, "rep1", "lead", {
        "company": f"苏州精密机械{t}有限公司", "contact_name": "李工", "email": f"li{t}@szjm.cn", "budget": 800000,
        "purchase_budget": 600000, "decision_maker_title": "厂长", "industry": "manufacturing"})
    activity = create(client, api_env, "rep1", "activity", {
        "subject": "展会交流", "occurred_at": "2026-01-05T10:00:00Z", "lead": lead["id"]})
    resp = convert(client, api_env, "rep1", lead["id"])
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["reused"] == ["account"] and out["records"]["account"]["id"] == account["id"]
    contact, opp = out["records"]["contact"], out["records"]["opportunity"]
    assert contact["account"] == account["id"] and contact["name"] == "李工" and contact["email"] == lead["email"]
    assert (opp["account"], opp["primary_contact"], opp["lead"]) == (account["id"], contact["id"], lead["id"])
    assert opp["name"] == f"苏州精密机械{t}有限公司 - new" and float(opp["amount"]) == 800000
    assert float(opp["purchase_budget"]) == 600000 and opp["decision_maker"] == "厂长"
    assert opp["budget_range"] == "100k_1m"  # the manufacturing layer's mapping
    converted = out["source"]["record"]
    assert converted["status"] == "converted" and converted["converted_at"] is not None
    assert (converted["converted_account"], converted["converted_contact"], converted["converted_opportunity"]) \
        == (account["id"], contact["id"], opp["id"])
    assert out["relinked"] == {"activity": 1}
    # the lead's follow-up is now visible from the account, the contact and the opportunity
    for field, rid in (("account", account["id"]), ("contact", contact["id"]), ("opportunity", opp["id"])):
        listed = client.get("/api/v1/records/activity", query_string={"filter": f"{field} == {rid}"},
                            headers=api_env.headers("rep1")).get_json()["items"]
        assert [a["id"] for a in listed] == [activity["id"]] and listed[0]["lead"] == lead["id"]
    history = client.get(f"/api/v1/records/lead/{lead['id']}/history", headers=api_env.headers("rep1"))
    assert "convert" in {h["action"] for h in history.get_json()["items"]}
    again = convert(client, api_env, "rep1", lead["id"])
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_converted"
    assert again.get_json()["error"]["details"]["records"]["account"] == account["id"]


def test_a_lead_without_a_matching_account_gets_a_new_one(api_env: ApiEnv, client: Any) -> None:
    t = tag()
    lead = create(client, api_env, "rep1", "lead", {"company": f"全新机电{t}", "phone": f"137{t}"})
    resp = convert(client, api_env, "rep1", lead["id"], {"create_opportunity": False})
    assert resp.status_code == 201, resp.get_json()
    out = resp.get_json()
    assert out["reused"] == [] and out["records"]["account"]["name"] == f"全新机电{t}"
    assert out["records"]["opportunity"] is None and out["source"]["record"]["converted_opportunity"] is None
    assert out["records"]["contact"]["name"] == f"全新机电{t}"  # coalesce(contact_name, company)
    assert out["records"]["account"]["owner_id"] == out["records"]["contact"]["owner_id"]


def test_a_failure_in_the_opportunity_leaves_no_account_or_contact(api_env: ApiEnv, client: Any) -> None:
    t = tag()
    lead = create(client, api_env, "rep1", "lead", {"company": f"原子性测试{t}", "email": f"a{t}@x.cn"})
    for body, field in (({"values": {"opportunity": {"amount": -5}}}, "opportunity.amount"),
                        ({"values": {"opportunity": {"name": ""}}}, "opportunity.name")):
        resp = convert(client, api_env, "rep1", lead["id"], body)
        assert resp.status_code == 400, resp.get_json()
        err = resp.get_json()["error"]
        assert err["code"] == "validation_failed" and field in err["details"], err
        assert "opportunity this conversion makes is invalid" in err["message"]
    assert count(client, api_env, "account", f"name == '原子性测试{t}'") == 0
    assert count(client, api_env, "contact", f"email == 'a{t}@x.cn'") == 0
    got = client.get(f"/api/v1/records/lead/{lead['id']}", headers=api_env.headers("rep1")).get_json()
    assert got["status"] == "new" and got["converted_account"] is None


def test_a_mapping_the_target_refuses_names_the_target_field(api_env: ApiEnv, client: Any) -> None:
    """contact.name holds 100 characters; the shipped mapping gives it the company when the lead has no
    contact name -- a 150-character company cannot become a contact's name."""
    long_name = "长" * 140 + tag()
    lead = create(client, api_env, "rep1", "lead", {"company": long_name, "email": f"l{tag()}@x.cn"})
    resp = convert(client, api_env, "rep1", lead["id"])
    assert resp.status_code == 400
    details = resp.get_json()["error"]["details"]
    assert set(details) - {"hint"} == {"contact.name"} and "200" not in str(details)
    assert count(client, api_env, "account", f"name == '{long_name}'") == 0
    ok = convert(client, api_env, "rep1", lead["id"], {"values": {"contact": {"name": "负责人"}}})
    assert ok.status_code == 201 and ok.get_json()["records"]["contact"]["name"] == "负责人"


def test_several_matching_accounts_need_a_pick(api_env: ApiEnv, client: Any) -> None:
    t = tag()
    one = create(client, api_env, "rep1", "account", {"name": f"宁波模具{t}"})
    two = create(client, api_env, "rep1", "account", {"name": f"宁波模具{t}股份有限公司"})
    lead = create(client, api_env, "rep1", "lead", {"company": f"宁波模具{t}有限公司", "email": f"n{t}@x.cn"})
    resp = convert(client, api_env, "rep1", lead["id"])
    assert resp.status_code == 409
    err = resp.get_json()["error"]
    assert err["code"] == "conversion_ambiguous"
    assert sorted(c["id"] for c in err["details"]["candidates"]) == sorted([one["id"], two["id"]])
    picked = convert(client, api_env, "rep1", lead["id"], {"account_id": two["id"]})
    assert picked.status_code == 201 and picked.get_json()["records"]["account"]["id"] == two["id"]


def test_conversion_follows_the_callers_permissions(api_env: ApiEnv, client: Any) -> None:
    t = tag()
    lead = create(client, api_env, "rep1", "lead", {"company": f"权限测试{t}", "email": f"p{t}@x.cn"})
    assert convert(client, api_env, "rep2", lead["id"]).status_code == 404  # not theirs to see
    theirs = create(client, api_env, "rep2", "account", {"name": f"别人的客户{t}"})
    picked = convert(client, api_env, "rep1", lead["id"], {"account_id": theirs["id"]})
    assert picked.status_code == 404  # an account the caller cannot see cannot be picked
    bad = convert(client, api_env, "rep1", lead["id"], {"values": {"lead": {"company": "x"}}})
    assert bad.status_code == 400
    readonly = convert(client, api_env, "rep1", lead["id"], {"values": {"opportunity": {"lead": 1}}})
    assert readonly.status_code == 400 and readonly.get_json()["error"]["details"] == {
        "opportunity.lead": ["is read-only"]}
    unknown = client.post(f"/api/v1/records/lead/{lead['id']}/convert", json={"acount_id": 1},
                          headers=api_env.headers("rep1"))
    assert unknown.status_code == 400
    assert client.post("/api/v1/records/account/1/convert", json={},
                       headers=api_env.headers("admin")).status_code == 404  # accounts are not converted


def test_the_conversion_endpoint_is_in_the_openapi(api_env: ApiEnv, client: Any) -> None:
    doc = client.get("/api/v1/openapi.json", headers=api_env.headers("rep1")).get_json()
    assert "post" in doc["paths"]["/records/{entity}/{id}/convert"]
