"""``GET /api/v1/search`` and ``GET /records/<entity>?q=`` on SQLite and PostgreSQL, with the shipped
manufacturing configuration: found by substring (Chinese included), scoped to the caller, clear 4xx."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from tests.api.conftest import ApiEnv, create


def _mail() -> str:
    return f"m{uuid.uuid4().hex[:10]}@example.com"


def _search(client: Any, env: ApiEnv, user: str, query: str) -> Any:
    return client.get(f"/api/v1/search?{query}", headers=env.headers(user))


def _ids(client: Any, env: ApiEnv, user: str, query: str) -> list[int]:
    """The ids found as substrings (PostgreSQL's similar-records pass left out)."""
    items = _search(client, env, user, query).get_json()["items"]
    return [h["id"] for h in items if h["rank"] != "similar"]


def test_search_finds_substrings_within_the_callers_scope(client: Any, api_env: ApiEnv) -> None:
    tag = uuid.uuid4().hex[:8]
    mine = create(client, api_env, "rep1", "lead", {"company": f"苏州精密机械有限公司{tag}", "email": _mail()})
    theirs = create(client, api_env, "rep3", "lead", {"company": f"Acme {tag}", "email": _mail()})
    resp = _search(client, api_env, "rep1", f"q={quote('精密机械有限公司' + tag)}")
    assert resp.status_code == 200, resp.get_json()
    [hit] = resp.get_json()["items"]
    assert resp.get_json()["truncated"] is False  # fewer records hold it than a search ranks
    assert (hit["entity"], hit["id"], hit["rank"], hit["matched"]) == ("lead", mine["id"], "contains", ["company"])
    assert hit["title"] == f"苏州精密机械有限公司{tag}"
    assert _ids(client, api_env, "rep3", f"q={quote('精密机械有限公司' + tag)}") == []
    assert theirs["id"] in _ids(client, api_env, "rep3", "q=acm&entity=lead&limit=100")
    assert _ids(client, api_env, "rep1", f"q=acme+{tag}") == []
    assert _ids(client, api_env, "boss", f"q={tag}") == [mine["id"]]  # rep1's manager, not rep3's
    assert set(_ids(client, api_env, "admin", f"q={tag}")) == {mine["id"], theirs["id"]}
    twice = _ids(client, api_env, "admin", f"q={tag}&entity=lead,lead, lead")  # an entity named twice: once
    assert sorted(twice) == sorted([mine["id"], theirs["id"]])


def test_q_on_a_list_searches_within_the_entity(client: Any, api_env: ApiEnv) -> None:
    tag = uuid.uuid4().hex[:8]
    a = create(client, api_env, "rep3", "lead", {"company": f"Acme {tag} One", "city": "Suzhou", "email": _mail()})
    create(client, api_env, "rep3", "lead", {"company": f"Acme {tag} Two", "city": "Wuxi", "email": _mail()})
    flt = quote("city == 'Suzhou'")
    resp = client.get(f"/api/v1/records/lead?q=acme+{tag}&filter={flt}"
                      "&fields=company,city", headers=api_env.headers("rep3"))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert [(i["id"], i["company"], i["city"]) for i in body["items"]] == [(a["id"], a["company"], "Suzhou")]
    assert body["next_cursor"] is None and body["truncated"] is False and "email" not in body["items"][0]


def test_bad_search_requests_are_refused_clearly(client: Any, api_env: ApiEnv) -> None:
    assert _search(client, api_env, "rep1", "q=").status_code == 400
    resp = _search(client, api_env, "rep1", "entity=lead")
    assert resp.status_code == 400 and "q=" in resp.get_json()["error"]["message"]
    assert _search(client, api_env, "rep1", "q=acme&entity=nope").status_code == 404
    assert _search(client, api_env, "rep1", "q=acme&limit=1000").status_code == 400
    assert client.get("/api/v1/search?q=acme").status_code == 401
    resp = client.get("/api/v1/records/lead?q=acme&sort=company", headers=api_env.headers("rep1"))
    assert resp.status_code == 400 and "ranked" in resp.get_json()["error"]["message"]


def test_the_openapi_document_describes_search(client: Any, api_env: ApiEnv) -> None:
    doc = client.get("/api/v1/openapi.json", headers=api_env.headers("rep1")).get_json()
    op = doc["paths"]["/search"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"q", "entity", "limit"}
    body = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert body["properties"]["truncated"]["type"] == "boolean"
    assert "q" in {p["name"] for p in doc["paths"]["/records/lead"]["get"]["parameters"]}
