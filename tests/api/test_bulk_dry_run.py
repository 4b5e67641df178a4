"""A bulk PATCH by filter and its dry run on the shipped manufacturing workspace, SQLite and PostgreSQL.

A body that names no field is refused (it would change nothing yet answer a count); a dry run goes through
the same write pipeline as the real run -- the entity's ``checks:``, stage gates, unique values, approval
flows -- inside a savepoint that is rolled back, so it refuses what the real run refuses, reports the same
per-record errors with ``atomic=false``, and leaves nothing behind: no record change, audit row, event,
job, notification or approval."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.errors import BadRequest
from engine.runtime.context import Actor
from engine.runtime.engine_tables import (
    crm_approval_instances,
    crm_audit,
    crm_jobs,
    crm_notifications,
    crm_outbox,
)
from tests.api.conftest import ApiEnv

_SERIAL = itertools.count(1)
WRITTEN_TABLES = (crm_audit, crm_jobs, crm_notifications, crm_outbox, crm_approval_instances)


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


def rows_in(env: ApiEnv) -> dict[str, int]:
    """How many rows each table a write may add to holds."""
    with env.runtime.engine.connect() as conn:
        return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in WRITTEN_TABLES}


@pytest.fixture
def events(api_env: ApiEnv) -> Iterator[list[Any]]:
    """The domain events delivered (after a commit) while the test runs."""
    seen: list[Any] = []
    api_env.runtime.add_listener(seen.append)
    try:
        yield seen
    finally:
        api_env.runtime.listeners.remove(seen.append)


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


def _same_answer(client: Any, env: ApiEnv, user: str, path: str, body: dict[str, Any], status: int) -> Any:
    """The dry run of ``PATCH path`` answers exactly what the real run answers (``status``, body)."""
    dry = call(client, env, user, "PATCH", f"{path}&dry_run=true", body)
    real = call(client, env, user, "PATCH", path, body)
    assert real.status_code == status, real.get_json()
    assert (dry.status_code, dry.get_json()) == (real.status_code, real.get_json())
    return real.get_json()["error"]


def test_a_dry_run_tries_checks_gates_and_unique_values_as_the_real_run(client: Any, api_env: ApiEnv) -> None:
    city = marker()
    made(client, api_env, "rep1", "lead", [{"company": f"{city} {i}", "phone": "13800000002", "city": city}
                                          for i in range(2)])
    # the entity's checks: a lead needs an email or a phone
    error = _same_answer(client, api_env, "rep1", f"/records/lead?filter=city == '{city}'", {"phone": None}, 400)
    assert error["code"] == "validation_failed" and "_record" in error["details"]

    # a stage gate: proposal requires an amount and a close date
    account = call(client, api_env, "admin", "POST", "/records/account", {"name": f"{city} Holding"}).get_json()
    made(client, api_env, "admin", "opportunity", [{"name": f"{city} deal {i}", "account": account["id"],
                                                   "stage": "needs_analysis"} for i in range(2)])
    error = _same_answer(client, api_env, "admin", f"/records/opportunity?filter=account == {account['id']}",
                         {"stage": "proposal"}, 422)
    assert error["code"] == "stage_gate"

    # a unique value: two machines cannot take one serial number
    made(client, api_env, "admin", "equipment", [{"serial_number": f"SN-{city}-{i}", "account": account["id"]}
                                                for i in range(2)])
    error = _same_answer(client, api_env, "admin", f"/records/equipment?filter=account == {account['id']}",
                         {"serial_number": f"SN-{city}-same"}, 409)
    assert error["code"] == "unique_violation"


def test_a_per_record_dry_run_reports_the_refusals_of_the_real_run(client: Any, api_env: ApiEnv) -> None:
    city = marker()
    ids = made(client, api_env, "rep1", "lead", [
        {"company": f"{city} {i}", "phone": "13800000003", "city": city, **({"email": f"{i}@{city}.cn"} if i % 2
                                                                             else {})} for i in range(4)])
    path = f"/records/lead?filter=city == '{city}'&atomic=false"
    dry = call(client, api_env, "rep1", "PATCH", f"{path}&dry_run=true", {"phone": None}).get_json()
    assert [e["id"] for e in dry["errors"]] == [ids[0], ids[2]]  # the two without an email
    assert all(e["code"] == "validation_failed" and "_record" in e["details"] for e in dry["errors"])
    assert (dry["matched"], dry["updated"], dry["failed"], dry["dry_run"]) == (4, 0, 2, True)
    listed = call(client, api_env, "rep1", "GET", f"/records/lead?filter=city == '{city}' and phone is null")
    assert listed.get_json()["items"] == []
    real = call(client, api_env, "rep1", "PATCH", path, {"phone": None}).get_json()
    assert (real["matched"], real["updated"], real["failed"]) == (4, 2, 2) and "dry_run" not in real
    assert real["errors"] == dry["errors"]


def test_a_dry_run_writes_nothing(client: Any, api_env: ApiEnv, events: list[Any]) -> None:
    """A discount over 20 % starts the quote approval flow: the real run writes the change, its audit rows,
    the approval and the approvers' notifications, and emits events; the dry run none of them."""
    city = marker()
    account = call(client, api_env, "rep1", "POST", "/records/account", {"name": f"{city} Works"}).get_json()
    ids = made(client, api_env, "rep1", "quote", [{"account": account["id"]} for _ in range(2)])
    path = f"/records/quote?filter=account == {account['id']}"
    before, seen = rows_in(api_env), len(events)
    for mode in ("", "&atomic=false"):
        dry = call(client, api_env, "rep1", "PATCH", f"{path}{mode}&dry_run=true", {"discount_rate": 0.3})
        assert dry.status_code == 200, dry.get_json()
        assert dry.get_json()["dry_run"] is True and dry.get_json()["updated"] == 0
    assert rows_in(api_env) == before and len(events) == seen
    for rid in ids:
        quote = call(client, api_env, "rep1", "GET", f"/records/quote/{rid}").get_json()
        assert (quote["discount_rate"], quote["approval_status"], quote["version"]) == (0, "not_required", 1)
    real = call(client, api_env, "rep1", "PATCH", path, {"discount_rate": 0.3})
    assert real.get_json() == {"matched": 2, "updated": 2}
    after = rows_in(api_env)
    assert all(after[t] > before[t] for t in ("crm_audit", "crm_notifications", "crm_approval_instances")), after
    assert len(events) > seen


def test_a_delete_dry_run_meets_the_approval_lock_as_the_real_run(client: Any, api_env: ApiEnv) -> None:
    account = call(client, api_env, "rep1", "POST", "/records/account", {"name": f"{marker()} Trading"}).get_json()
    made(client, api_env, "rep1", "quote", [{"account": account["id"]}, {"account": account["id"],
                                                                          "discount_rate": 0.3}])  # pending
    path = f"/records/quote?filter=account == {account['id']}"
    before = rows_in(api_env)
    dry = call(client, api_env, "admin", "DELETE", f"{path}&dry_run=true")
    assert dry.status_code == 423 and dry.get_json()["error"]["code"] == "locked", dry.get_json()
    each = call(client, api_env, "admin", "DELETE", f"{path}&atomic=false&dry_run=true").get_json()
    assert (each["matched"], each["deleted"], each["failed"], each["dry_run"]) == (2, 0, 1, True)
    assert rows_in(api_env) == before
    assert call(client, api_env, "admin", "DELETE", path).get_json() == dry.get_json()
    real = call(client, api_env, "admin", "DELETE", f"{path}&atomic=false").get_json()
    assert real == {"matched": 2, "deleted": 1, "failed": 1, "errors": each["errors"]}
