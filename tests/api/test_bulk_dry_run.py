"""A bulk PATCH by filter and its dry run on the shipped manufacturing workspace, SQLite and PostgreSQL.

A body that names no field is refused (it would change nothing yet answer a count)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from engine.errors import BadRequest
from engine.runtime.context import Actor
from tests.api.conftest import ApiEnv

_SERIAL = itertools.count(1)


def marker() -> str:
    """A city (or a name part) no other test uses, to find this test's records by filter."""
    return f"Dry{next(_SERIAL)}x"


def call(client: Any, env: ApiEnv, user: str, method: str, path: str, body: Any = None) -> Any:
    kw = {"json": body} if body is not None else {}
    return client.open(f"/api/v1{path}", method=method, headers=env.headers(user), **kw)


def made(client: Any, env: ApiEnv, user: str, entity: str, rows: list[dict[str, Any]]) -> list[int]:
    resp = call(client, env, user, "POST", f"/records/{entity}/bulk", rows)
    assert resp.status_code == 201, resp.get_json()
    return list(resp.get_json()["ids"])


def test_a_bulk_patch_that_names_no_field_is_refused(client: Any, api_env: ApiEnv) -> None:
    city = marker()
    made(client, api_env, "rep1", "lead", [{"company": f"{city} {i}", "phone": "13800000001", "city": city}
                                          for i in range(2)])
    flt = f"/records/lead?filter=city == '{city}'"
    for mode in ("", "&dry_run=true", "&atomic=false", "&atomic=false&dry_run=true"):
        resp = call(client, api_env, "rep1", "PATCH", flt + mode, {})
        assert resp.status_code == 400, (mode, resp.get_json())
        error = resp.get_json()["error"]
        assert error["code"] == "bad_request", mode
        assert error["message"].startswith("the body names no field to set"), error
        assert '{"status": "contacted"}' in error["details"]["hint"], error
    # the record service refuses it too, for every caller
    with api_env.runtime.unit(Actor.system()) as uow:
        for write in (uow.records.update_many, uow.records.update_each):
            with pytest.raises(BadRequest, match="no field to set"):
                write("lead", f"city == '{city}'", {})
