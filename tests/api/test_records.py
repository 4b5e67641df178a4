"""Records through the REST API: CRUD, lists, optimistic locking, bad input, audit history."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ApiEnv, create
from tests.api.test_security import lead

LEADS = "/api/v1/records/lead"


def test_create_get_update_delete(client: Any, api_env: ApiEnv) -> None:
    h = api_env.headers("rep1")
    made = create(client, api_env, "rep1", "lead", lead("苏州精工机械有限公司", budget=250000.5))
    assert made["company"] == "苏州精工机械有限公司" and made["version"] == 1
    assert made["budget"] == 250000.5 and made["status"] == "new"
    url = f"{LEADS}/{made['id']}"
    got = client.get(url, headers=h)
    assert got.status_code == 200 and got.headers["ETag"] == '"1"'
    assert isinstance(got.get_json()["created_at"], str) and "T" in got.get_json()["created_at"]
    upd = client.patch(url, json={"city": "苏州", "status": "working"}, headers={**h, "If-Match": '"1"'})
    assert upd.status_code == 200, upd.get_json()
    assert upd.get_json()["version"] == 2 and upd.get_json()["city"] == "苏州"
    assert client.delete(url, headers=api_env.headers("admin")).status_code == 204
    assert client.get(url, headers=h).status_code == 404


def test_list_filter_sort_cursor_count(client: Any, api_env: ApiEnv) -> None:
    for i in range(7):
        create(client, api_env, "rep2", "lead", lead(f"Paging Co {i}", region="west", budget=1000 * i))
    q = {"filter": "startswith(company, 'Paging Co') and budget >= 2000", "sort": "-budget", "limit": 2,
         "count": "true", "fields": "company,budget"}
    seen: list[float] = []
    cursor = None
    while True:
        resp = client.get(LEADS, headers=api_env.headers("rep2"), query_string={**q, **({"cursor": cursor} if
                                                                                       cursor else {})})
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        seen.extend(r["budget"] for r in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [6000, 5000, 4000, 3000, 2000]
    assert body["total"] == 5


def test_patch_needs_if_match(client: Any, api_env: ApiEnv) -> None:
    made = create(client, api_env, "rep1", "lead", lead("Lock Co"))
    url, h = f"{LEADS}/{made['id']}", api_env.headers("rep1")
    missing = client.patch(url, json={"city": "x"}, headers=h)
    assert missing.status_code == 428
    assert "If-Match" in missing.get_json()["error"]["message"]
    assert client.patch(url, json={"city": "x"}, headers={**h, "If-Match": "abc"}).status_code == 400
    assert client.patch(url, json={"city": "a"}, headers={**h, "If-Match": "1"}).status_code == 200
    stale = client.patch(url, json={"city": "b"}, headers={**h, "If-Match": "1"})
    assert stale.status_code == 409 and stale.get_json()["error"]["code"] == "version_conflict"
    assert client.get(url, headers=h).get_json()["city"] == "a"


BAD_BODIES = [
    ({"company": "x", "phone": "13800000000", "budget": "lots"}, "budget"),
    ({"company": "x", "phone": "13800000000", "score_typo": 1}, "score_typo"),
    ({"phone": "13800000000"}, "company"),
    ({"company": "x" * 201, "phone": "13800000000"}, "company"),
    ({"company": "x", "phone": "13800000000", "industry": "mining"}, "industry"),
    ({"company": 12, "phone": "13800000000", "region": ["east"]}, "region"),
    ({"company": "x", "phone": "13800000000", "budget": -5}, "budget"),
    ({"company": "x", "phone": "13800000000", "owner_id": "me"}, "owner_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_values_get_per_field_messages(client: Any, api_env: ApiEnv, body: dict[str, Any], field: str) -> None:
    resp = client.post(LEADS, json=body, headers=api_env.headers("rep1"))
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert field in error["details"], error
    assert all(isinstance(m, str) and m for m in error["details"][field])


RAW_BODIES = [
    (b'{"company": "x",', "application/json", 400, "invalid_body"),
    (b"\xff\xfe{}", "application/json", 400, "invalid_body"),
    (b'{"company": "\xc3\x28"}', "application/json", 400, "invalid_body"),
    (b"[1, 2]", "application/json", 400, "invalid_body"),
    (b'{"budget": NaN, "company": "x"}', "application/json", 400, "invalid_body"),
    (b"[" * 100000 + b"]" * 100000, "application/json", 400, "invalid_body"),
    (b"company=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"company": "x"}', "text/plain", 415, "unsupported_media_type"),
    (b"", "application/json", 400, "invalid_body"),
]


@pytest.mark.parametrize(("raw", "ctype", "status", "code"), RAW_BODIES,
                         ids=["truncated", "bom-ff", "bad-utf8", "array", "nan", "deep", "form", "text", "empty"])
def test_unreadable_bodies_are_clean_4xx(client: Any, api_env: ApiEnv, raw: bytes, ctype: str, status: int,
                                         code: str) -> None:
    resp = client.post(LEADS, data=raw, headers={**api_env.headers("rep1"), "Content-Type": ctype})
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["error"]["code"] == code


def test_body_too_large_is_413(client: Any, api_env: ApiEnv) -> None:
    raw = b'{"notes": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    resp = client.post(LEADS, data=raw, headers={**api_env.headers("rep1"), "Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(("path", "query", "status"), [
    ("/api/v1/records/nope", {}, 404),
    ("/api/v1/records/nope/1", {}, 404),
    (f"{LEADS}/999999999", {}, 404),
    (f"{LEADS}/abc", {}, 404),
    (LEADS, {"limit": "0"}, 400),
    (LEADS, {"limit": "501"}, 400),
    (LEADS, {"limit": "ten"}, 400),
    (LEADS, {"count": "maybe"}, 400),
    (LEADS, {"filter": "company =="}, 400),
    (LEADS, {"filter": "budget > 'x'"}, 400),
    (LEADS, {"filter": "no_such_field == 1"}, 400),
    (LEADS, {"sort": "no_such_field"}, 400),
    (LEADS, {"cursor": "garbage!!"}, 400),
    ("/api/v1/nothing-here", {}, 404),
])
def test_bad_requests_are_json_errors(client: Any, api_env: ApiEnv, path: str, query: dict[str, str],
                                      status: int) -> None:
    resp = client.get(path, query_string=query, headers=api_env.headers("admin"))
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    error = resp.get_json()["error"]
    assert set(error) == {"code", "message", "details", "docs"}
    assert error["docs"] == f"docs/errors.md#{error['code']}"


def test_history_has_every_field_change_with_actor_and_time(client: Any, api_env: ApiEnv) -> None:
    made = create(client, api_env, "rep1", "lead", lead("Audit Co", city="宁波"))
    url = f"{LEADS}/{made['id']}"
    r1 = client.patch(url, json={"city": "杭州", "status": "working"},
                      headers=api_env.headers("rep1", **{"If-Match": "1"}))
    assert r1.status_code == 200
    r2 = client.patch(url, json={"notes": "called twice"}, headers=api_env.headers("boss", **{"If-Match": "2"}))
    assert r2.status_code == 200, r2.get_json()
    items = client.get(url + "/history", headers=api_env.headers("admin")).get_json()["items"]
    changes = [(i.get("field"), i.get("new")) for i in items]
    for expected in [("city", "杭州"), ("status", "working"), ("notes", "called twice")]:
        assert expected in changes, changes
    created = items[0]
    assert created["action"] == "create" and created["new"]["company"] == "Audit Co"
    assert created["actor"] == "rep1" and [i["actor"] for i in items if i["field"] == "notes"] == ["boss"]
    for item in items:
        assert item["at"] and item.get("actor_id") is not None
    by_field = {i["field"]: i for i in items if i.get("field") in ("city", "notes") and i.get("old") is not None}
    assert by_field["city"]["old"] == "宁波"


def test_meta_describes_fields_and_permissions(client: Any, api_env: ApiEnv) -> None:
    meta = client.get("/api/v1/meta", headers=api_env.headers("rep1")).get_json()
    lead_meta = meta["entities"]["lead"]
    assert lead_meta["permissions"] == {"read": "own", "create": True, "update": "own", "delete": "none"}
    assert lead_meta["fields"]["industry"]["options"][0]["key"] == "manufacturing"
    assert lead_meta["fields"]["score"]["readonly"] is True
    assert meta["user"]["username"] == "rep1"


def test_handover_keeps_history(client: Any, api_env: ApiEnv) -> None:
    from engine.runtime import users
    from engine.runtime.context import Actor

    made = create(client, api_env, "rep3", "lead", lead("Turnover Co"))
    url = f"{LEADS}/{made['id']}"
    assert client.patch(url, json={"city": "成都"}, headers=api_env.headers("rep3", **{"If-Match": "1"})).status_code \
        == 200
    with api_env.runtime.unit(Actor.system()) as uow:
        moved = users.handover(uow, "rep3", "rep2")
    assert moved["lead"] >= 1
    assert client.get(url, headers=api_env.headers("rep3")).status_code == 404
    items = client.get(url + "/history", headers=api_env.headers("rep2")).get_json()["items"]
    assert [i["action"] for i in items][:2] == ["create", "update"]
    assert any(i["field"] == "owner_id" and i["action"] == "handover" for i in items)
    assert any(i["field"] == "city" and i["new"] == "成都" and i["actor"] == "rep3" for i in items)
