"""List filters through the API that need the newer parts of the language: dates against datetimes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import update

from tests.api.conftest import ApiEnv, create
from tests.api.test_security import lead

LEADS = "/api/v1/records/lead"


def companies(client: Any, env: ApiEnv, user: str, text: str) -> list[str]:
    resp = client.get(LEADS, headers=env.headers(user), query_string={"filter": text, "sort": "company"})
    assert resp.status_code == 200, resp.get_json()
    return [r["company"] for r in resp.get_json()["items"]]


def _age(env: ApiEnv, record_id: int, days: float) -> None:
    table = env.runtime.state.schema.table("lead")
    at = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with env.runtime.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == record_id).values(created_at=at))


def test_created_in_the_last_30_days(client: Any, api_env: ApiEnv) -> None:
    """The docs/api.md example: a datetime compared with a date compares its UTC calendar day."""
    ids = {name: create(client, api_env, "rep1", "lead", lead(f"Age Co {name}"))["id"]
           for name in ("new", "29d", "31d", "40d")}
    _age(api_env, ids["29d"], 29)
    _age(api_env, ids["31d"], 31)
    _age(api_env, ids["40d"], 40)
    text = "startswith(company, 'Age Co') and owner_id == $user and created_at >= add_days($today, -30)"
    assert companies(client, api_env, "rep1", text) == ["Age Co 29d", "Age Co new"]
    older = "startswith(company, 'Age Co') and created_at < add_days($now, -30)"
    assert companies(client, api_env, "rep1", older) == ["Age Co 31d", "Age Co 40d"]
    assert companies(client, api_env, "rep1", "startswith(company, 'Age Co') and created_at == $today") == [
        "Age Co new"]


def test_filters_through_the_owner(client: Any, api_env: ApiEnv) -> None:
    create(client, api_env, "rep1", "lead", lead("Team Co r1"))
    create(client, api_env, "rep3", "lead", lead("Team Co r3"))
    mine = "startswith(company, 'Team Co') and "
    assert companies(client, api_env, "admin", mine + "owner.team == 'east'") == ["Team Co r1"]
    assert companies(client, api_env, "admin", mine + "owner.team is null") == ["Team Co r3"]
    assert companies(client, api_env, "admin", mine + "owner.name == 'rep3'") == ["Team Co r3"]
    assert companies(client, api_env, "boss", mine + "manager_of(owner) == $user") == ["Team Co r1"]
    assert companies(client, api_env, "admin", mine + "manager_of(manager_of(owner)) is null") == [
        "Team Co r1", "Team Co r3"]
    # a hop never widens what the caller may read: rep3 still sees only their own leads
    assert companies(client, api_env, "rep3", mine + "owner.team == 'east'") == []
    assert companies(client, api_env, "rep3", mine + "owner.username == 'rep3'") == ["Team Co r3"]


def test_unknown_user_attribute_is_a_located_400(client: Any, api_env: ApiEnv) -> None:
    resp = client.get(LEADS, headers=api_env.headers("rep1"), query_string={"filter": "owner.teem == 'east'"})
    assert resp.status_code == 400
    err = resp.get_json()["error"]
    assert err["code"] == "bad_filter"
    assert "unknown user attribute 'teem' of owner; did you mean 'team'?" in err["message"]
    assert "^" in err["details"]["snippet"]
