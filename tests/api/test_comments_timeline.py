"""Comments with @mentions and the record timeline through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.collab_world import add_users, make
from tests.api.conftest import ApiEnv


@pytest.fixture
def env(api_env: ApiEnv) -> ApiEnv:
    add_users(api_env)
    return api_env


def comment(client: Any, env: ApiEnv, user: str, entity: str, rid: int, body: str) -> Any:
    return client.post(f"/api/v1/records/{entity}/{rid}/comments", json={"body": body}, headers=env.headers(user))


def mentions_of(client: Any, env: ApiEnv, user: str) -> list[dict[str, Any]]:
    items = client.get("/api/v1/notifications", headers=env.headers(user)).get_json()["items"]
    return [n for n in items if n["kind"] == "mention"]


# --------------------------------------------------------------------------- comments


def test_a_comment_mentioning_li_rep_notifies_her(client: Any, env: ApiEnv):
    opp_acc = make(client, env, "li.rep", "account", {"name": "Li's customer"})
    before = len(mentions_of(client, env, "li.rep"))
    resp = comment(client, env, "boss", "account", opp_acc["id"],
                   "@li.rep please call them this week. cc @rep3 and bob@acme.com, @nobody.")
    assert resp.status_code == 201, resp.get_json()
    made = resp.get_json()
    assert made["mentions"] == ["li.rep"] and made["author"] == "boss"
    assert made["not_notified"] == ["rep3", "nobody"]  # rep3 cannot read the record; nobody does not exist
    got = mentions_of(client, env, "li.rep")
    assert len(got) == before + 1
    assert got[0]["entity"] == "account" and got[0]["record_id"] == opp_acc["id"]
    assert "boss mentioned you" in got[0]["text"] and got[0]["data"]["comment_id"] == made["id"]
    assert not [n for n in mentions_of(client, env, "rep3") if n["record_id"] == opp_acc["id"]]


def test_only_the_author_or_an_admin_edits_or_deletes_and_edits_notify_new_mentions_once(client: Any, env: ApiEnv):
    acc = make(client, env, "li.rep", "account", {"name": "Edit trail Co"})
    made = comment(client, env, "li.rep", "account", acc["id"], "first call done, @boss").get_json()
    url = f"/api/v1/records/account/{acc['id']}/comments/{made['id']}"
    boss_before = len(mentions_of(client, env, "boss"))
    assert client.patch(url, json={"body": "hijacked"}, headers=env.headers("boss")).status_code == 403
    edited = client.patch(url, json={"body": "first call done, @boss and @li.rep"}, headers=env.headers("li.rep"))
    assert edited.status_code == 200 and edited.get_json()["edited_at"] is not None
    assert len(mentions_of(client, env, "boss")) == boss_before  # already told about this comment
    assert client.delete(url, headers=env.headers("boss")).status_code == 403
    assert client.delete(url, headers=env.headers("li.rep")).status_code == 204
    listed = client.get(f"/api/v1/records/account/{acc['id']}/comments", headers=env.headers("li.rep")).get_json()
    assert made["id"] not in [c["id"] for c in listed["items"]]
    other = comment(client, env, "li.rep", "account", acc["id"], "keep me?").get_json()
    assert client.delete(f"/api/v1/records/account/{acc['id']}/comments/{other['id']}",
                         headers=env.headers("admin")).status_code == 204
    history = client.get(f"/api/v1/records/account/{acc['id']}/history", headers=env.headers("li.rep")).get_json()
    actions = [e["action"] for e in history["items"]]
    assert actions.count("comment") == 2 and "comment_edit" in actions and actions.count("comment_delete") == 2


def test_comments_of_a_record_the_caller_cannot_read_are_404(client: Any, env: ApiEnv):
    acc = make(client, env, "rep1", "account", {"name": "Closed doors Ltd"})
    made = comment(client, env, "rep1", "account", acc["id"], "internal note").get_json()
    base = f"/api/v1/records/account/{acc['id']}/comments"
    for user in ("rep2", "rep3"):
        assert client.get(base, headers=env.headers(user)).status_code == 404
        assert comment(client, env, user, "account", acc["id"], "hi").status_code == 404
        assert client.get(f"{base}/{made['id']}", headers=env.headers(user)).status_code == 404
    assert client.get(base, headers=env.headers("boss")).get_json()["items"][0]["body"] == "internal note"
    assert comment(client, env, "rep1", "account", acc["id"], "  ").status_code == 400


# --------------------------------------------------------------------------- timeline


@pytest.fixture
def account_world(client: Any, env: ApiEnv) -> dict[str, Any]:
    """An account of rep1 with a contact and an opportunity of rep1 and one of her manager's (which rep1, with
    ``own`` scope, cannot read), each with an activity; both opportunities moved a stage; a comment on the
    manager's deal; a revenue change."""
    acc = make(client, env, "rep1", "account", {"name": "Timeline Industries", "annual_revenue": 1000})
    contact = make(client, env, "rep1", "contact", {"name": "Wang Wei", "account": acc["id"]})
    mine = make(client, env, "rep1", "opportunity", {"name": "Line A", "account": acc["id"]})
    theirs = make(client, env, "boss", "opportunity", {"name": "Line B", "account": acc["id"]})
    acts = {}
    for user, link, rid, subject in (("rep1", "opportunity", mine["id"], "Demo of line A"),
                                     ("boss", "opportunity", theirs["id"], "Call about line B"),
                                     ("rep1", "contact", contact["id"], "Lunch with Wang")):
        acts[subject] = make(client, env, user, "activity", {"subject": subject, link: rid,
                                                             "occurred_at": "2026-01-10T09:00:00Z"})
    for user, opp in (("rep1", mine), ("boss", theirs)):
        moved = client.post(f"/api/v1/records/opportunity/{opp['id']}/transition", json={"stage": "needs_analysis"},
                            headers=env.headers(user))
        assert moved.status_code == 200, moved.get_json()
    assert comment(client, env, "boss", "opportunity", theirs["id"], "pricing sent").status_code == 201
    now = client.get(f"/api/v1/records/account/{acc['id']}", headers=env.headers("rep1")).get_json()
    assert client.patch(f"/api/v1/records/account/{acc['id']}", json={"annual_revenue": 2000},
                        headers=env.headers("rep1", **{"If-Match": str(now["version"])})).status_code == 200
    return {"account": acc, "contact": contact, "mine": mine, "theirs": theirs, "activities": acts}


def everything(client: Any, env: ApiEnv, user: str, rid: int, limit: int = 200) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        q = f"limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        resp = client.get(f"/api/v1/records/account/{rid}/timeline?{q}", headers=env.headers(user))
        assert resp.status_code == 200, resp.get_json()
        page = resp.get_json()
        out.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def test_the_owner_sees_her_children_and_nothing_of_records_she_cannot_read(client: Any, env: ApiEnv,
                                                                           account_world: dict[str, Any]):
    w = account_world
    items = everything(client, env, "rep1", w["account"]["id"])
    subjects = {(i["entity"], i["record_id"]) for i in items}
    assert ("opportunity", w["theirs"]["id"]) not in subjects  # the manager's deal: rep1 reads only her own
    activities = {i["record"]["subject"] for i in items if i["kind"] == "activity"}
    assert activities == {"Demo of line A", "Lunch with Wang"}
    stages = [i for i in items if i["kind"] == "stage" and i["to_stage"] == "needs_analysis"]
    assert [(s["entity"], s["record_id"]) for s in stages] == [("opportunity", w["mine"]["id"])]
    assert any(i["kind"] == "created" and i["entity"] == "contact" for i in items)
    revenue = [i for i in items if i["kind"] == "update" and i["field"] == "annual_revenue"]
    assert len(revenue) == 1 and str(revenue[0]["new"]).startswith("2000")
    assert not [i for i in items if i["kind"] == "comment"]
    times = [i["at"] for i in items]
    assert times == sorted(times, reverse=True)


def test_the_manager_sees_the_whole_team_and_another_team_sees_nothing(client: Any, env: ApiEnv,
                                                                        account_world: dict[str, Any]):
    w = account_world
    items = everything(client, env, "boss", w["account"]["id"])
    activities = {i["record"]["subject"] for i in items if i["kind"] == "activity"}
    assert activities == {"Demo of line A", "Call about line B", "Lunch with Wang"}
    stages = {i["record_id"] for i in items if i["kind"] == "stage" and i["to_stage"] == "needs_analysis"}
    assert stages == {w["mine"]["id"], w["theirs"]["id"]}
    assert [i["body"] for i in items if i["kind"] == "comment"] == ["pricing sent"]
    resp = client.get(f"/api/v1/records/account/{w['account']['id']}/timeline", headers=env.headers("rep3"))
    assert resp.status_code == 404


def test_hidden_fields_changes_are_left_out(client: Any, env: ApiEnv, account_world: dict[str, Any]):
    """svc1 reads accounts and contacts but not opportunities, and account.annual_revenue is hidden from her."""
    w = account_world
    items = everything(client, env, "svc1", w["account"]["id"])
    assert not [i for i in items if i["entity"] == "opportunity"]
    assert not [i for i in items if i.get("field") == "annual_revenue"]
    created = next(i for i in items if i["kind"] == "created" and i["entity"] == "account")
    assert "annual_revenue" not in created["new"] and created["new"]["name"] == "Timeline Industries"
    assert {i["record"]["subject"] for i in items if i["kind"] == "activity"} <= {"Lunch with Wang"}


def test_pages_walk_the_whole_stream_once(client: Any, env: ApiEnv, account_world: dict[str, Any]):
    w = account_world
    whole = everything(client, env, "boss", w["account"]["id"])
    paged = everything(client, env, "boss", w["account"]["id"], limit=3)
    assert [i["id"] for i in paged] == [i["id"] for i in whole]
    assert len({i["id"] for i in whole}) == len(whole) > 10
    bad = client.get(f"/api/v1/records/account/{w['account']['id']}/timeline?cursor=nonsense",
                     headers=env.headers("boss"))
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_cursor"


def test_comments_and_timeline_are_in_the_openapi_document(client: Any, env: ApiEnv):
    paths = client.get("/api/v1/openapi.json", headers=env.headers("rep1")).get_json()["paths"]
    assert "post" in paths["/records/{entity}/{record_id}/comments"]
    assert "patch" in paths["/records/{entity}/{record_id}/comments/{comment_id}"]
    assert "get" in paths["/records/{entity}/{record_id}/timeline"]

