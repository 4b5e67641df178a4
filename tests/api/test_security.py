"""Security of the REST API: authentication, row scope, hidden and readonly fields, SQL in filters."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ApiEnv, create

ENDPOINTS = [
    ("GET", "/api/v1/meta"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/records/lead"),
    ("POST", "/api/v1/records/lead"),
    ("GET", "/api/v1/records/lead/1"),
    ("PATCH", "/api/v1/records/lead/1"),
    ("DELETE", "/api/v1/records/lead/1"),
    ("GET", "/api/v1/records/lead/1/history"),
    ("GET", "/api/v1/records/no_such_entity"),
]


def lead(company: str, **extra: Any) -> dict[str, Any]:
    """Values of a valid lead."""
    return {"company": company, "phone": "13800000000", "industry": "manufacturing", **extra}


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("auth", [None, "Bearer not-a-token", "Basic YWRtaW46YWRtaW4=", "Bearer "])
def test_every_endpoint_needs_a_valid_token(client: Any, method: str, path: str, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    resp = client.open(path, method=method, headers=headers, json={"company": "x"})
    assert resp.status_code == 401
    body = resp.get_json()
    assert body["error"]["code"] in ("unauthenticated", "invalid_token")
    assert set(body["error"]) == {"code", "message", "details", "docs"}
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_own_scope_hides_other_users_records(client: Any, api_env: ApiEnv) -> None:
    mine = create(client, api_env, "rep1", "lead", lead("Secret Rep1 Co"))
    url = f"/api/v1/records/lead/{mine['id']}"
    for other in ("rep2", "rep3"):
        h = api_env.headers(other)
        assert client.get(url, headers=h).status_code == 404
        assert client.get(url + "/history", headers=h).status_code == 404
        assert client.patch(url, json={"city": "x"}, headers={**h, "If-Match": "1"}).status_code in (403, 404)
        assert client.delete(url, headers=h).status_code in (403, 404)
        listed = client.get("/api/v1/records/lead", query_string={"count": "true", "limit": 500}, headers=h)
        assert mine["id"] not in [r["id"] for r in listed.get_json()["items"]]
        probe = client.get("/api/v1/records/lead", headers=h,
                           query_string={"filter": "company == 'Secret Rep1 Co'", "count": "true"})
        assert probe.status_code == 200
        assert probe.get_json()["items"] == [] and probe.get_json()["total"] == 0
    still = client.get(url, headers=api_env.headers("rep1")).get_json()
    assert still["version"] == mine["version"] and still["company"] == "Secret Rep1 Co"


def test_team_scope_sees_the_team(client: Any, api_env: ApiEnv) -> None:
    mine = create(client, api_env, "rep1", "lead", lead("Team Visible Co"))
    resp = client.get(f"/api/v1/records/lead/{mine['id']}", headers=api_env.headers("boss"))
    assert resp.status_code == 200


def test_no_leak_through_reference_expansion(client: Any, api_env: ApiEnv) -> None:
    account = create(client, api_env, "rep1", "account", {"name": "Hidden Account Ltd"})
    resp = client.post("/api/v1/records/contact", json={"name": "Probe", "account": account["id"]},
                       headers=api_env.headers("rep3"))
    if resp.status_code == 201:  # linking may be allowed; reading through the link must not be
        got = client.get(f"/api/v1/records/contact/{resp.get_json()['id']}", query_string={"expand": "account"},
                         headers=api_env.headers("rep3"))
        assert "Hidden Account Ltd" not in got.get_data(as_text=True)
    else:
        assert resp.status_code in (400, 403, 404)
        assert "Hidden Account Ltd" not in resp.get_data(as_text=True)


@pytest.fixture(scope="module")
def product(api_env: ApiEnv) -> dict[str, Any]:
    """A product with a cost (hidden from sales), created and updated by the admin."""
    client = api_env.app.test_client()
    made = create(client, api_env, "admin", "product", {"code": "SPX1", "name": "Spindle X1", "cost": 1234.5})
    resp = client.patch(f"/api/v1/records/product/{made['id']}", json={"cost": 1500},
                        headers=api_env.headers("admin", **{"If-Match": str(made["version"])}))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_hidden_field_never_appears(client: Any, api_env: ApiEnv, product: dict[str, Any]) -> None:
    h = api_env.headers("rep1")
    pid = product["id"]
    responses = [
        client.get("/api/v1/records/product", headers=h, query_string={"limit": 500}),
        client.get(f"/api/v1/records/product/{pid}", headers=h),
        client.get(f"/api/v1/records/product/{pid}/history", headers=h),
        client.get("/api/v1/meta", headers=h),
    ]
    for resp in responses:
        assert resp.status_code == 200
        assert "cost" not in _keys(resp.get_json()), resp.request.path
        assert "1234.5" not in resp.get_data(as_text=True)
    doc = client.get("/api/v1/openapi.json", headers=h).get_json()
    assert "cost" not in doc["components"]["schemas"]["product_record"]["properties"]
    admin_doc = client.get("/api/v1/openapi.json", headers=api_env.headers("admin")).get_json()
    assert "cost" in admin_doc["components"]["schemas"]["product_record"]["properties"]


def _keys(obj: Any) -> set[str]:
    """Every dict key and every ``field`` value anywhere in ``obj``."""
    out: set[str] = set()
    if isinstance(obj, dict):
        out.update(obj)
        if isinstance(obj.get("field"), str):
            out.add(obj["field"])
        for v in obj.values():
            out |= _keys(v)
    elif isinstance(obj, list):
        for v in obj:
            out |= _keys(v)
    return out


@pytest.mark.parametrize("query", [{"filter": "cost > 0"}, {"sort": "cost"}, {"sort": "-cost"},
                                   {"fields": "name,cost"}])
def test_hidden_field_cannot_be_filtered_or_sorted(client: Any, api_env: ApiEnv, product: dict[str, Any],
                                                   query: dict[str, str]) -> None:
    resp = client.get("/api/v1/records/product", headers=api_env.headers("rep1"), query_string=query)
    assert resp.status_code == 400
    assert "1234.5" not in resp.get_data(as_text=True)


def test_readonly_fields_cannot_be_written(client: Any, api_env: ApiEnv) -> None:
    h = api_env.headers("rep1")
    resp = client.post("/api/v1/records/lead", json=lead("RO Co", score=99), headers=h)
    assert resp.status_code == 400
    assert "score" in resp.get_json()["error"]["details"]
    acc = create(client, api_env, "rep1", "account", {"name": "RO Account"})
    resp = client.patch(f"/api/v1/records/account/{acc['id']}", json={"credit_rating": "high"},
                        headers={**h, "If-Match": str(acc["version"])})
    assert resp.status_code == 400
    assert "credit_rating" in resp.get_json()["error"]["details"]


INJECTIONS = [
    {"filter": "1; DROP TABLE lead"},
    {"filter": "company) OR 1=1 --"},
    {"filter": "company == 'x' OR 1=1 --"},
    {"filter": "company == '' ; DELETE FROM lead; --'"},
    {"sort": "company) OR 1=1 --"},
    {"sort": "company; DROP TABLE lead"},
    {"sort": "(select 1)"},
    {"fields": "company,(select password_hash from crm_users)"},
]


@pytest.mark.parametrize("query", INJECTIONS)
def test_sql_in_filter_or_sort_is_rejected(client: Any, api_env: ApiEnv, query: dict[str, str]) -> None:
    create(client, api_env, "admin", "lead", lead("Survivor Co"))
    resp = client.get("/api/v1/records/lead", headers=api_env.headers("admin"), query_string=query)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]["message"]
    after = client.get("/api/v1/records/lead", headers=api_env.headers("admin"),
                       query_string={"filter": "company == 'Survivor Co'", "count": "1"})
    assert after.status_code == 200 and after.get_json()["total"] >= 1


def test_sql_text_inside_a_string_literal_is_just_text(client: Any, api_env: ApiEnv) -> None:
    resp = client.get("/api/v1/records/lead", headers=api_env.headers("admin"),
                      query_string={"filter": "company == \"x'); DROP TABLE lead; --\""})
    assert resp.status_code == 200
    assert resp.get_json()["items"] == []
