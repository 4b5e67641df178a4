"""Bounded work per request: filter cost and depth, a time limit per unit of work, request slots per user.

On SQLite and PostgreSQL.  The time limit is tested by its effect (a stopped
statement answered as 503 ``query_timeout`` with ``Retry-After``), never by
measuring how long anything took.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.api import create_app
from engine.api.views import SLOTS_KEY
from engine.dsl.compiler import compile_folder
from engine.errors import Overloaded, QueryTimeout
from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply
from tests.conftest import insert_rows

FILES = {
    "workspace.yaml": "workspace: limits\n",
    "lead.yaml": """
        entity: lead
        fields:
          company: {type: string, required: true}
          score: {type: integer}
    """,
    "roles.yaml": """
        role: admin
        admin: true
        ---
        role: sales
        permissions:
          lead: {read: own, create: true, update: own, delete: none}
    """,
}
ROWS = 20_000


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    for name, body in FILES.items():
        (tmp_path / name).write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    ws = compile_folder(tmp_path)
    engine = make_engine(db_url)
    try:
        apply(engine, ws, author="t", message="v1")
        insert_rows(engine, ws, "lead", [{"company": f"Company number {i} of the test", "score": i}
                                         for i in range(ROWS)])
    finally:
        engine.dispose()
    runtime = Runtime.open(db_url)
    with runtime.unit(Actor.system()) as uow:
        uid = users.create_user(uow, "boss", roles=["admin"])
        token = users.create_token(uow, "boss", "t")
    try:
        yield {"runtime": runtime, "token": token, "user_id": uid}
    finally:
        runtime.close()


def _get(app: Any, token: str, **query: Any) -> Any:
    return app.test_client().get("/api/v1/records/lead", headers={"Authorization": f"Bearer {token}"},
                                 query_string=query)


def test_filter_with_too_many_calls_is_refused(env: dict[str, Any]) -> None:
    app = create_app(env["runtime"])
    flt = " or ".join(f"contains(lower(company), 'q{i}')" for i in range(110))
    assert len(flt) < 4000
    resp = _get(app, env["token"], filter=flt, count="true")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "filter_too_complex"
    fine = " or ".join(f"contains(lower(company), 'q{i}')" for i in range(8))
    assert _get(app, env["token"], filter=fine, count="true").status_code == 200


def test_filter_nested_deeper_than_sql_allows_is_a_400(env: dict[str, Any]) -> None:
    app = create_app(env["runtime"])
    for depth in (30, 40, 48):
        flt = "lower(" * depth + "company" + ")" * depth + " == 'x'"
        resp = _get(app, env["token"], filter=flt)
        assert resp.status_code == 400, resp.get_json()
        assert resp.get_json()["error"]["code"] == "bad_filter"
        assert "nested more than" in resp.get_json()["error"]["message"]


def test_a_unit_past_its_time_limit_is_stopped(env: dict[str, Any]) -> None:
    runtime = env["runtime"]
    runtime.statement_timeout = 0.05
    slow = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
            "SELECT count(*) FROM c")
    with pytest.raises(QueryTimeout) as info, runtime.unit(Actor.system(), readonly=True) as uow:
        uow.conn.execute(text(slow)).scalar()
    assert info.value.code == "query_timeout"
    runtime.statement_timeout = None
    with runtime.unit(Actor.system(), readonly=True) as uow:  # the connection is usable again, without a limit
        assert uow.conn.execute(text("SELECT 1")).scalar() == 1


def test_an_expensive_list_answers_503_with_retry_after(env: dict[str, Any]) -> None:
    env["runtime"].statement_timeout = 0.001
    app = create_app(env["runtime"])
    flt = " or ".join(f"contains(lower(company), 'q{i}')" for i in range(8))
    resp = _get(app, env["token"], filter=flt, count="true", limit=500)
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json()["error"]["code"] == "query_timeout"
    assert resp.headers["Retry-After"] == "1"


def test_requests_over_the_per_user_limit_get_429(env: dict[str, Any]) -> None:
    app = create_app(env["runtime"], max_requests_per_user=2)
    slots = app.extensions[SLOTS_KEY]
    slots.wait = 0.05
    assert _get(app, env["token"], limit=1).status_code == 200  # learns the token
    slots.acquire(env["user_id"])
    slots.acquire(env["user_id"])  # the user's two slots are taken by "other requests"
    resp = _get(app, env["token"], limit=1)
    assert resp.status_code == 429
    assert resp.get_json()["error"]["code"] == "too_many_requests" and resp.headers["Retry-After"] == "1"
    slots.release(env["user_id"])
    assert _get(app, env["token"], limit=1).status_code == 200
    with pytest.raises(Overloaded):
        slots.acquire(env["user_id"]), slots.acquire(env["user_id"])
