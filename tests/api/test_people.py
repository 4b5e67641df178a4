"""People administration through the API and the CLI (SQLite and PostgreSQL): nested teams in the ``team``
scope, extra memberships, the ``transfer: own_team`` rule, revocation and deactivation biting on the very next
request of another server process, the open records of a deactivated user, audit rows, the OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from engine.api import create_app
from engine.cli import main
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_api_tokens, crm_audit, crm_users
from engine.runtime.people import admin
from engine.runtime.runtime import Runtime
from tests.api.conftest import apply_folder_quietly

LEADS = "/api/v1/records/lead"
TRANSFER_RULE = ("role: sales\nextend: true\ntransfer: own_team\n---\n"
                 "role: sales_manager\nextend: true\ntransfer: own_team\n")


@dataclass
class People:
    url: str
    folder: Path
    runtime: Any
    other: Any  # a second runtime: another server process's worth
    app: Any
    app2: Any
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture(scope="module")
def people(api_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    """Teams: sales_dept (director) holds east (mgr_e: rep_e1, rep_e2) and north (mgr_n: rep_n); sales reps
    may give records only inside their team."""
    from engine.dsl.scaffold import init_workspace

    folder = tmp_path_factory.mktemp("people") / "acme"
    init_workspace(folder, industry="manufacturing", name="acme", locale="en", currency="CNY", phone_region="CN")
    (folder / "roles").mkdir(exist_ok=True)
    (folder / "roles" / "transfer.yaml").write_text(TRANSFER_RULE, "utf-8")
    apply_folder_quietly(folder, api_db_url)
    rt, rt2 = Runtime.open(api_db_url), Runtime.open(api_db_url)
    env = People(api_db_url, folder, rt, rt2, create_app(rt), create_app(rt2))
    with rt.unit(Actor.system()) as uow:
        for name, role in (("admin", "admin"), ("director", "sales_manager"), ("mgr_e", "sales_manager"),
                           ("mgr_n", "sales_manager")):
            env.ids[name] = users.create_user(uow, name, roles=[role])
        admin.create_team(uow, "sales_dept", manager="director")
        admin.create_team(uow, "east", manager="mgr_e", parent="sales_dept")
        admin.create_team(uow, "north", manager="mgr_n")
        admin.set_parent(uow, "north", "sales_dept")
        for name, team in (("rep_e1", "east"), ("rep_e2", "east"), ("rep_n", "north"), ("floater", None)):
            env.ids[name] = users.create_user(uow, name, roles=["sales"], team=team)
        for name in env.ids:
            env.tokens[name] = users.create_token(uow, name, "test")
    try:
        yield env
    finally:
        rt.close()
        rt2.close()


def _lead(env: People, user: str, company: str, **extra: Any) -> dict[str, Any]:
    resp = env.app.test_client().post(LEADS, json={"company": company, "phone": "13800000000", **extra},
                                      headers=env.h(user))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def _companies(env: People, user: str, prefix: str) -> set[str]:
    resp = env.app.test_client().get(LEADS, query_string={"filter": f"startswith(company, '{prefix}')",
                                                          "limit": 100}, headers=env.h(user))
    assert resp.status_code == 200, resp.get_json()
    return {r["company"] for r in resp.get_json()["items"]}


def test_a_director_over_two_teams_sees_both_with_team_scope(people: People) -> None:
    _lead(people, "rep_e1", "Scope East")
    _lead(people, "rep_n", "Scope North")
    _lead(people, "floater", "Scope Elsewhere")
    assert _companies(people, "director", "Scope ") == {"Scope East", "Scope North"}
    assert _companies(people, "mgr_e", "Scope ") == {"Scope East"}  # a team's manager: that team only
    assert _companies(people, "rep_e1", "Scope ") == {"Scope East"}  # own scope unchanged
    # a user in two teams: an extra membership brings the floater's leads into north's scope
    c = people.app.test_client()
    resp = c.post("/api/v1/teams/north/members", json={"user": "floater"}, headers=people.h("admin"))
    assert resp.status_code == 201 and "floater" in resp.get_json()["members"]
    assert _companies(people, "mgr_n", "Scope ") == {"Scope North", "Scope Elsewhere"}
    assert _companies(people, "director", "Scope ") == {"Scope East", "Scope North", "Scope Elsewhere"}
    resp = c.delete("/api/v1/teams/north/members/floater", headers=people.h("admin"))
    assert resp.status_code == 200 and "floater" not in resp.get_json()["members"]
    assert _companies(people, "mgr_n", "Scope ") == {"Scope North"}


def test_a_rep_cannot_hand_a_lead_outside_their_team(people: People) -> None:
    c = people.app.test_client()
    lead = _lead(people, "rep_e1", "Transfer Co")
    resp = c.patch(f"{LEADS}/{lead['id']}", json={"owner_id": people.ids["rep_n"]},
                   headers={**people.h("rep_e1"), "If-Match": str(lead["version"])})
    assert resp.status_code == 403, resp.get_json()
    err = resp.get_json()["error"]
    assert err["code"] == "transfer_refused" and "rep_n" in err["message"] and "own_team" in err["message"]
    assert err["details"]["to"] == "rep_n"
    resp = c.post(LEADS, json={"company": "Born Elsewhere", "phone": "13800000001",
                               "owner_id": people.ids["rep_n"]}, headers=people.h("rep_e1"))
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "transfer_refused"
    resp = c.patch(f"{LEADS}/{lead['id']}", json={"owner_id": people.ids["rep_e2"]},
                   headers={**people.h("rep_e1"), "If-Match": str(lead["version"])})
    assert resp.status_code == 200 and resp.get_json()["owner_id"] == people.ids["rep_e2"]
    # the director's role has no rule of its own, and admins pass: a handover moves it across teams
    resp = c.post("/api/v1/users/rep_e2/handover", json={"to": "rep_n"}, headers=people.h("admin"))
    assert resp.status_code == 200 and resp.get_json()["moved"].get("lead", 0) >= 1


def test_the_rule_also_holds_for_pool_assignment_and_the_service(people: People) -> None:
    from engine.errors import TransferRefused
    from engine.runtime.sales import pools

    rt = people.runtime
    with rt.engine.connect() as conn:
        rep, mgr = (users.actor_for(conn, rt.state.workspace, u) for u in ("rep_e1", "mgr_e"))
    with rt.unit(rep) as uow:
        lead = uow.records.create("lead", {"company": "Service Path", "phone": "13800000002"})
        with pytest.raises(TransferRefused, match="rep_n"):
            uow.records.update("lead", lead["id"], {"owner_id": people.ids["rep_n"]},
                               expected_version=lead["version"])
    with rt.unit(rep) as uow, pytest.raises(TransferRefused):
        uow.records.update_many("lead", f"id == {lead['id']}", {"owner_id": people.ids["rep_n"]})
    with rt.unit(Actor.system()) as uow:
        pooled = uow.records.create("lead", {"company": "Pool Path", "phone": "13800000005", "region": "north",
                                             "pool": "general_pool"}, bypass_readonly=True)
    with rt.unit(mgr) as uow, pytest.raises(TransferRefused, match="own_team"):
        pools.assign(uow, "general_pool", pooled["id"], "rep_n")
    with rt.unit(mgr) as uow:
        assert pools.assign(uow, "general_pool", pooled["id"], "rep_e1")["owner_id"] == people.ids["rep_e1"]


def test_creating_a_token_names_only_what_the_body_lacks(people: People) -> None:
    c = people.app.test_client()
    for body, details in (({"user": "rep_e2"}, {"name": ["is required"]}),
                          ({"name": "laptop"}, {"user": ["is required"]}),
                          ({}, {"user": ["is required"], "name": ["is required"]}),
                          ({"user": "rep_e2", "name": 7}, {"name": ["must be text"]})):
        resp = c.post("/api/v1/tokens", json=body, headers=people.h("admin"))
        assert resp.status_code == 400, (body, resp.get_json())
        error = resp.get_json()["error"]
        assert error["details"] == details, (body, error)
    assert "needs name" in c.post("/api/v1/tokens", json={"user": "rep_e2"},
                                  headers=people.h("admin")).get_json()["error"]["message"]


def test_revoked_token_refused_on_the_very_next_request_of_another_process(people: People) -> None:
    c, other = people.app.test_client(), people.app2.test_client()
    resp = c.post("/api/v1/tokens", json={"user": "rep_e2", "name": "laptop"}, headers=people.h("admin"))
    assert resp.status_code == 201, resp.get_json()
    token, prefix = resp.get_json()["token"], resp.get_json()["prefix"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert other.get(LEADS, headers=bearer).status_code == 200
    assert other.get(LEADS, headers=bearer).status_code == 200  # cached in that process now
    listed = c.get("/api/v1/tokens", query_string={"user": "rep_e2"}, headers=people.h("admin")).get_json()
    assert prefix in {t["prefix"] for t in listed["items"]} and "token" not in listed["items"][0]
    resp = c.post(f"/api/v1/tokens/{prefix}/revoke", headers=people.h("admin"))
    assert resp.status_code == 200 and resp.get_json() == {"revoked": 1}
    resp = other.get(LEADS, headers=bearer)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_token"
    assert c.post(f"/api/v1/tokens/{prefix}/revoke", headers=people.h("admin")).status_code == 404
    assert _audit(people, "crm_api_tokens", "revoke")


def test_deactivated_user_cannot_call_the_api_and_their_open_records_are_listed(people: People) -> None:
    c, other = people.app.test_client(), people.app2.test_client()
    with people.runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "leaver", roles=["sales"], team="east")
        token = users.create_token(uow, "leaver", "t")
    bearer = {"Authorization": f"Bearer {token}"}
    made = [other.post(LEADS, json={"company": f"Leaver {i}", "phone": "13800000003"}, headers=bearer).get_json()
            for i in range(3)]
    assert other.get(LEADS, headers=bearer).status_code == 200
    resp = c.post("/api/v1/users/leaver/deactivate", headers=people.h("admin"))
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["open_records"]["lead"] == {"count": 3, "ids": [m["id"] for m in made]}
    resp = other.get(LEADS, headers=bearer)
    assert resp.status_code == 401
    shown = c.get("/api/v1/users/leaver", headers=people.h("admin")).get_json()
    assert shown["active"] is False and shown["team"] == "east"
    assert _audit(people, "crm_users", "deactivate")
    resp = c.post("/api/v1/users/leaver/handover", json={"to": "rep_e1"}, headers=people.h("admin"))
    assert resp.get_json()["moved"] == {"lead": 3}
    assert c.post("/api/v1/users/leaver/deactivate", headers=people.h("admin")).get_json()["open_records"] == {}
    assert c.post("/api/v1/users/leaver/reactivate", headers=people.h("admin")).get_json()["active"] is True
    assert other.get(LEADS, headers=bearer).status_code == 401  # deactivation revoked it for good


def test_user_and_team_administration_is_admin_only_audited_and_documented(people: People) -> None:
    c = people.app.test_client()
    for method, path in (("get", "/api/v1/users"), ("post", "/api/v1/teams"), ("get", "/api/v1/tokens"),
                         ("post", "/api/v1/users/rep_n/deactivate"), ("patch", "/api/v1/users/rep_n")):
        resp = getattr(c, method)(path, json={}, headers=people.h("director"))
        assert resp.status_code == 403, (path, resp.get_json())
    resp = c.post("/api/v1/users", json={"username": "newbie", "roles": ["sales"], "team": "north",
                                         "password": "short"}, headers=people.h("admin"))
    assert resp.status_code == 400 and "password" in resp.get_json()["error"]["details"]
    resp = c.post("/api/v1/users", json={"username": "newbie", "roles": ["sales"], "team": "north",
                                         "password": "long enough 1"}, headers=people.h("admin"))
    assert resp.status_code == 201 and resp.get_json()["has_password"] is True
    resp = c.patch("/api/v1/users/newbie", json={"roles": ["sales_manager"], "manager": "mgr_n"},
                   headers=people.h("admin"))
    assert resp.status_code == 200 and resp.get_json()["roles"] == ["sales_manager"]
    resp = c.patch("/api/v1/users/newbie", json={"roles": ["salse"]}, headers=people.h("admin"))
    assert resp.status_code == 400 and "did you mean 'sales'" in str(resp.get_json())
    resp = c.post("/api/v1/teams", json={"name": "west", "parent": "sales_dept", "manager": "newbie"},
                  headers=people.h("admin"))
    assert resp.status_code == 201 and resp.get_json()["parent"] == "sales_dept"
    resp = c.patch("/api/v1/teams/sales_dept", json={"parent": "west"}, headers=people.h("admin"))
    assert resp.status_code == 400 and "loop" in str(resp.get_json())
    teams = {t["name"]: t for t in c.get("/api/v1/teams", headers=people.h("admin")).get_json()["items"]}
    assert teams["sales_dept"]["teams"] == ["east", "north", "west"]
    assert _audit(people, "crm_users", "update") and _audit(people, "crm_teams", "create")
    doc = c.get("/api/v1/openapi.json", headers=people.h("admin")).get_json()
    for path in ("/users", "/users/{name}", "/users/{name}/deactivate", "/teams", "/teams/{name}/members",
                 "/tokens", "/tokens/{prefix}/revoke"):
        assert any(p.endswith(path) for p in doc["paths"]), path


def test_the_cli_manages_users_teams_and_tokens(people: People) -> None:
    def crm(*args: str, stdin: str | None = None) -> str:
        result = CliRunner().invoke(main, [*args, str(people.folder), "--db", people.url], input=stdin)
        assert result.exit_code == 0, (args, result.output)
        return result.output

    crm("user", "add", "cli_rep", "--role", "sales")
    crm("team", "add", "south", "--manager", "mgr_n", "--parent", "sales_dept")
    crm("team", "add-member", "south", "cli_rep")
    listed = crm("team", "list")
    assert "south" in listed and "cli_rep" in listed
    crm("team", "set-manager", "south", "director")
    crm("user", "set-role", "cli_rep", "--role", "sales", "--role", "finance")
    crm("user", "set-password", "cli_rep", "--stdin", stdin="a good one 42\n")
    shown = crm("user", "show", "cli_rep")
    assert "sales, finance" in shown and "south" in shown and "has_password: yes" in shown
    out = crm("token", "create", "cli_rep")
    token = out.strip().splitlines()[-1]
    bearer = {"Authorization": f"Bearer {token}"}
    other = people.app2.test_client()
    with people.runtime.engine.connect() as conn:  # the CLI's token is audited as the API's is
        [tid] = conn.execute(select(crm_api_tokens.c.id).where(crm_api_tokens.c.prefix == token[:12])).scalars()
        actions = conn.execute(select(crm_audit.c.action).where(crm_audit.c.entity == "crm_api_tokens",
                                                                crm_audit.c.record_id == tid)).scalars().all()
        assert actions == ["create"]
    assert other.get(LEADS, headers=bearer).status_code == 200
    assert token[:12] in crm("token", "list", "--user", "cli_rep")
    assert "revoked 1 token" in crm("token", "revoke", token[:10])
    assert other.get(LEADS, headers=bearer).status_code == 401
    token = crm("token", "create", "cli_rep").strip().splitlines()[-1]
    bearer = {"Authorization": f"Bearer {token}"}
    assert other.get(LEADS, headers=bearer).status_code == 200
    _lead_as(people, token, "CLI Leaver")
    out = crm("user", "deactivate", "cli_rep")
    assert "lead: 1" in out and "crm handover cli_rep" in out
    assert other.get(LEADS, headers=bearer).status_code == 401
    assert "active:       no" in crm("user", "show", "cli_rep")
    crm("user", "reactivate", "cli_rep")
    assert "cli_rep" in crm("user", "list")
    bad = CliRunner().invoke(main, ["user", "set-role", "cli_rep", "--role", "nope", str(people.folder),
                                    "--db", people.url])
    assert bad.exit_code == 1 and "unknown role 'nope'" in bad.output


def _lead_as(env: People, token: str, company: str) -> None:
    resp = env.app2.test_client().post(LEADS, json={"company": company, "phone": "13800000004"},
                                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 201, resp.get_json()


def _audit(env: People, table: str, action: str) -> bool:
    with env.runtime.engine.connect() as conn:
        return conn.execute(select(crm_audit.c.id).where(crm_audit.c.entity == table,
                                                         crm_audit.c.action == action)).first() is not None


def test_crm_serve_workers_refuse_a_revoked_token_and_a_deactivated_user_on_the_next_request(people: People) -> None:
    """``crm serve --workers 2``: every worker has the tokens cached; a revoke and a deactivation made by
    another process are refused by whichever worker answers next."""
    import http.client
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.api.conftest import free_port

    with people.runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "served", roles=["sales"], team="east")
        revoked, deactivated = users.create_token(uow, "rep_e1", "served"), users.create_token(uow, "served", "t")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", str(people.folder), "--port", str(port),
                             "--workers", "2"], env={**os.environ, "CRM_DATABASE_URL": people.url},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def status(token: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/api/v1/meta", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            return int(resp.status)
        finally:
            conn.close()

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = status(revoked)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert first == 200
        assert {status(t) for t in (revoked, deactivated) for _ in range(8)} == {200}  # cached in both workers
        c = people.app.test_client()
        assert c.post(f"/api/v1/tokens/{revoked[:12]}/revoke", headers=people.h("admin")).status_code == 200
        assert c.post("/api/v1/users/served/deactivate", headers=people.h("admin")).status_code == 200
        assert {status(t) for t in (revoked, deactivated) for _ in range(8)} == {401}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_a_revoke_text_longer_than_the_prefix_must_be_the_whole_token(people: People) -> None:
    c = people.app.test_client()
    resp = c.post("/api/v1/tokens", json={"user": "rep_e2", "name": "phone"}, headers=people.h("admin"))
    token, prefix = resp.get_json()["token"], resp.get_json()["prefix"]
    bearer = {"Authorization": f"Bearer {token}"}
    wrong = prefix + "WRONGWRONG"  # starts like the token, but is not it
    resp = c.post(f"/api/v1/tokens/{wrong}/revoke", headers=people.h("admin"))
    assert resp.status_code == 404 and wrong in resp.get_json()["error"]["message"], resp.get_json()
    assert c.get(LEADS, headers=bearer).status_code == 200  # still valid
    assert c.post(f"/api/v1/tokens/{token}/revoke", headers=people.h("admin")).get_json() == {"revoked": 1}
    assert c.get(LEADS, headers=bearer).status_code == 401


def _cli(env: People, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, str(env.folder), "--db", env.url])


def test_no_token_is_created_for_a_deactivated_user(people: People) -> None:
    c = people.app.test_client()
    with people.runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "dormant", roles=["sales"], team="east")
        admin.deactivate(uow, "dormant")
    resp = c.post("/api/v1/tokens", json={"user": "dormant", "name": "laptop"}, headers=people.h("admin"))
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "inactive_user" and "'dormant' is deactivated" in error["message"], error
    assert "crm user reactivate dormant" in error["details"]["hint"], error
    out = _cli(people, "token", "create", "dormant")
    assert out.exit_code == 1 and "'dormant' is deactivated" in out.output, out.output
    assert f"crm user reactivate dormant {people.folder}" in out.output, out.output  # names the workspace
    assert "Traceback" not in out.output
    with people.runtime.engine.connect() as conn:
        assert admin.list_tokens(conn, user="dormant", include_revoked=True) == []
    assert _cli(people, "user", "reactivate", "dormant").exit_code == 0
    assert _cli(people, "token", "create", "dormant").exit_code == 0


def test_deactivation_revokes_the_tokens_so_a_reactivated_user_needs_a_new_one(people: People) -> None:
    c, other = people.app.test_client(), people.app2.test_client()
    with people.runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "returner", roles=["sales"], team="east")
        old = [users.create_token(uow, "returner", name) for name in ("laptop", "phone")]
    assert all(other.get(LEADS, headers={"Authorization": f"Bearer {t}"}).status_code == 200 for t in old)
    out = _cli(people, "user", "deactivate", "returner")
    assert out.exit_code == 0 and "revoked their 2 tokens" in out.output, out.output
    assert "crm token create returner" in out.output
    out = _cli(people, "user", "reactivate", "returner")
    assert out.exit_code == 0 and "crm token create returner" in out.output, out.output
    assert all(other.get(LEADS, headers={"Authorization": f"Bearer {t}"}).status_code == 401 for t in old)
    listed = c.get("/api/v1/tokens", query_string={"user": "returner", "all": "true"}, headers=people.h("admin"))
    assert [t["revoked_at"] is not None for t in listed.get_json()["items"]] == [True, True]
    with people.runtime.engine.connect() as conn:
        revoked = set(conn.execute(select(crm_audit.c.record_id).where(
            crm_audit.c.entity == "crm_api_tokens", crm_audit.c.action == "revoke",
            crm_audit.c.record_id.in_([t["id"] for t in listed.get_json()["items"]]))).scalars())
    assert len(revoked) == 2
    # through the API: deactivate answers how many tokens it revoked
    new = users_token(people, "returner")
    resp = c.post("/api/v1/users/returner/deactivate", headers=people.h("admin"))
    assert resp.get_json()["revoked_tokens"] == 1, resp.get_json()
    c.post("/api/v1/users/returner/reactivate", headers=people.h("admin"))
    assert other.get(LEADS, headers={"Authorization": f"Bearer {new}"}).status_code == 401
    assert other.get(LEADS, headers={"Authorization": f"Bearer {users_token(people, 'returner')}"}).status_code == 200


def users_token(env: People, user: str) -> str:
    with env.runtime.unit(Actor.system()) as uow:
        return users.create_token(uow, user, "again")


def test_reactivation_revokes_tokens_an_older_engine_left_to_a_deactivated_user(people: People) -> None:
    """A user deactivated before deactivation revoked tokens still holds active ones: reactivating them must
    not bring those back."""
    with people.runtime.unit(Actor.system()) as uow:
        uid = users.create_user(uow, "veteran", roles=["sales"])
        token = users.create_token(uow, "veteran", "old")
        uow.conn.execute(update(crm_users).where(crm_users.c.id == uid).values(active=False))  # as before
    other = people.app2.test_client()
    with people.runtime.unit(Actor.system()) as uow:
        admin.reactivate(uow, "veteran")
    assert other.get(LEADS, headers={"Authorization": f"Bearer {token}"}).status_code == 401

