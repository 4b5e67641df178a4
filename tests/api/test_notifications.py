"""Notifications: written in the unit of the change, listed newest first, one per dedupe key, each user
sees and marks only their own.  Both databases."""

from __future__ import annotations

from typing import Any

from engine.runtime import notify, users
from engine.runtime.context import Actor
from tests.api.conftest import ApiEnv


def _send(env: ApiEnv, user: str, text: str, key: str | None = None) -> bool:
    with env.runtime.unit(Actor.system()) as uow:
        uid = users.user_id(uow.conn, user)
        return notify.send(uow, uid, "test", {"en": text, "zh": f"中文 {text}"}, entity="lead", record_id=1,
                           dedupe_key=key)


def test_list_mark_read_and_dedupe(api_env: ApiEnv, client: Any) -> None:
    assert _send(api_env, "rep1", "first") and _send(api_env, "rep1", "second", key="n:once")
    assert not _send(api_env, "rep1", "second again", key="n:once")  # a retried job notifies once
    _send(api_env, "rep2", "not yours")
    got = client.get("/api/v1/notifications", headers=api_env.headers("rep1")).get_json()
    texts = [n["text"] for n in got["items"]]
    assert texts[:2] == ["second", "first"] and "not yours" not in texts and got["unread"] >= 2
    mine = got["items"][0]["id"]
    theirs = client.get("/api/v1/notifications", headers=api_env.headers("rep2")).get_json()["items"][0]["id"]
    resp = client.post(f"/api/v1/notifications/{theirs}/read", headers=api_env.headers("rep1"))
    assert resp.status_code == 404  # nobody marks another user's notification
    assert client.post(f"/api/v1/notifications/{mine}/read", headers=api_env.headers("rep1")).get_json() == {
        "marked": 1}
    unread = client.get("/api/v1/notifications?unread=true", headers=api_env.headers("rep1")).get_json()
    assert mine not in [n["id"] for n in unread["items"]]
    assert client.post("/api/v1/notifications/read", headers=api_env.headers("rep1")).get_json()["marked"] >= 1
    assert client.get("/api/v1/notifications", headers=api_env.headers("rep1")).get_json()["unread"] == 0
    bad = client.get("/api/v1/notifications?limit=0", headers=api_env.headers("rep1"))
    assert bad.status_code == 400
    assert client.get("/api/v1/notifications").status_code == 401


def test_notifications_are_in_the_openapi(api_env: ApiEnv, client: Any) -> None:
    doc = client.get("/api/v1/openapi.json", headers=api_env.headers("rep1")).get_json()
    assert "/notifications" in doc["paths"] and "/notifications/read" in doc["paths"]
