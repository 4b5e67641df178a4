"""Shared setup of the collaboration tests: the files folder, and users beyond tests/api/conftest.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.conftest import ApiEnv

#: li.rep (a dotted username) sells in team east under boss; svc1 is customer service (account.annual_revenue
#: hidden, no opportunities)
EXTRA_USERS = {"li.rep": {"roles": ["sales"], "team": "east", "manager": "boss"}, "svc1": {"roles": ["service"]}}


def add_users(env: ApiEnv) -> None:
    """Create :data:`EXTRA_USERS` (once per module database) with a token each."""
    from engine.runtime import users
    from engine.runtime.context import Actor

    if "li.rep" in env.tokens:
        return
    with env.runtime.unit(Actor.system()) as uow:
        for name, spec in EXTRA_USERS.items():
            users.create_user(uow, name, roles=spec["roles"], team=spec.get("team"), manager=spec.get("manager"))
            env.tokens[name] = users.create_token(uow, name, "test")


def make(client: Any, env: ApiEnv, user: str, entity: str, values: dict[str, Any]) -> dict[str, Any]:
    resp = client.post(f"/api/v1/records/{entity}", json=values, headers=env.headers(user))
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]
