"""The bulk API and the recycle bin on the shipped manufacturing workspace, SQLite and PostgreSQL (one module,
so one applied workspace per back end).

Bulk: 1,000 leads in one request go through checks, dedupe, scoring, assignment and audit; a bulk PATCH /
DELETE by filter reaches only the caller's permitted rows and reports the count (a dry run writes nothing);
the atomic mode leaves nothing behind when one row fails, ``atomic=false`` answers per row; the limits
answer 413.  Recycle bin: ``deleted=only`` lists what the caller may restore; a restore brings the record
back with its history; a restore whose unique value was taken since is refused with 409 naming the field
and the record."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from engine.runtime import users
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_audit
from tests.api.conftest import ApiEnv

SENIOR = ("senior1", "senior2", "senior3")
_SERIAL = itertools.count(1)


@pytest.fixture(scope="module")
def senior(api_env: ApiEnv) -> dict[str, int]:
    """Team senior_sales (where the routing rule sends grade-A leads) with three reps; username -> id."""
    with api_env.runtime.unit(Actor.system()) as uow:
        users.create_team(uow, "senior_sales")
        return {name: users.create_user(uow, name, roles=["sales"], team="senior_sales") for name in SENIOR}


def marker() -> str:
    """A city no other test uses, to find this test's leads by filter."""
    return f"City{next(_SERIAL)}x"


def lead(i: int, city: str, **extra: Any) -> dict[str, Any]:
    return {"company": f"{city} Works {i}", "phone": f"+86 137{next(_SERIAL):08d}", "city": city, **extra}


def call(client: Any, env: ApiEnv, user: str, method: str, path: str, body: Any = None) -> Any:
    kw = {"json": body} if body is not None else {}
    return client.open(f"/api/v1{path}", method=method, headers=env.headers(user), **kw)


def count(client: Any, env: ApiEnv, user: str, entity: str, flt: str, *, deleted: bool = False) -> int:
    extra = "&deleted=only" if deleted else ""
    resp = call(client, env, user, "GET", f"/records/{entity}?filter={flt}&count=true&limit=1{extra}")
    assert resp.status_code == 200, resp.get_json()
    return int(resp.get_json()["total"])


@contextmanager
def config(env: ApiEnv, **values: Any) -> Iterator[None]:
    old = {k: env.app.config.get(k) for k in values}
    env.app.config.update(values)
    try:
        yield
    finally:
        env.app.config.update(old)


def test_a_thousand_leads_in_one_request_are_checked_scored_assigned_and_audited(
        client: Any, api_env: ApiEnv, senior: dict[str, int]):
    city = marker()
    rows = [lead(i, city, industry="manufacturing", demand="clear", budget=2_000_000) if i % 2 == 0
            else lead(i, city, industry="services", demand="none") for i in range(1000)]
    resp = call(client, api_env, "admin", "POST", "/records/lead/bulk", rows)
    assert resp.status_code == 201, resp.get_json()
    ids = resp.get_json()["ids"]
    assert resp.get_json()["created"] == 1000 and len(set(ids)) == 1000

    # scoring: the even rows are grade A, the odd ones are not
    assert count(client, api_env, "admin", "lead", f"city == '{city}' and grade == 'A'") == 500
    assert count(client, api_env, "admin", "lead", f"city == '{city}' and score is null") == 0
    # assignment: the A leads went round robin through the senior team; the others stay with the creator
    listed = call(client, api_env, "admin", "GET",
                  f"/records/lead?filter=city == '{city}' and grade == 'A'&limit=500&fields=owner_id").get_json()
    owners = Counter(r["owner_id"] for r in listed["items"])
    assert set(owners) == set(senior.values()) and max(owners.values()) - min(owners.values()) <= 1

    # audit: a create row for every one of the 1,000, an assign row for every A lead
    with api_env.runtime.unit(Actor.system(), readonly=True) as uow:
        def audited(action: str) -> int:
            return int(uow.conn.execute(select(func.count(func.distinct(crm_audit.c.record_id))).where(
                crm_audit.c.entity == "lead", crm_audit.c.action == action,
                crm_audit.c.record_id.in_(ids))).scalar_one())

        assert audited("create") == 1000
        assert audited("assign") == 500
    history = call(client, api_env, "admin", "GET", f"/records/lead/{ids[0]}/history").get_json()["items"]
    assert [e["action"] for e in history] == ["create", "assign"]
    assert history[0]["new"]["grade"] == "A" and history[0]["new"]["city"] == city

    # dedupe: the bulk rows' keys are stored, so a later lead with the same phone is told about its twin
    twin = call(client, api_env, "admin", "POST", "/records/lead", {"company": "Another name entirely",
                                                                     "phone": rows[3]["phone"]}).get_json()
    assert ids[3] in [d["id"] for d in twin["_duplicates"]]


def test_the_atomic_mode_leaves_nothing_behind_when_one_row_fails(client: Any, api_env: ApiEnv):
    city = marker()
    rows = [lead(i, city) for i in range(40)]
    rows[37]["budget"] = -5  # below min: 0
    resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk", rows)
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == "validation_failed" and "nothing was created" in error["message"]
    assert list(error["details"]) == ["[37].budget"]
    assert count(client, api_env, "admin", "lead", f"city == '{city}'") == 0

    # a row the database refuses (a unique serial number twice in the batch): nothing either
    account = call(client, api_env, "admin", "POST", "/records/account", {"name": f"{city} Holding"}).get_json()
    serial = f"SN-{city}"
    kit = [{"serial_number": f"{serial}-{i}", "account": account["id"]} for i in range(5)] + [
        {"serial_number": f"{serial}-2", "account": account["id"]}]
    resp = call(client, api_env, "admin", "POST", "/records/equipment/bulk", kit)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "unique_violation"
    assert resp.get_json()["error"]["message"] == "1 row repeats a unique value; nothing was created"
    assert set(resp.get_json()["error"]["details"]) == {"[5].serial_number", "hint"}
    assert count(client, api_env, "admin", "equipment", f"account == {account['id']}") == 0

    # a row a write step refuses (a stage gate): its status and code, the row named, nothing created
    deals = [{"name": f"{city} deal", "account": account["id"]},
             {"name": f"{city} lost deal", "account": account["id"], "stage": "lost"}]
    resp = call(client, api_env, "admin", "POST", "/records/opportunity/bulk", deals)
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "stage_gate" and error["message"].startswith("row 1: ") and error["details"]["row"] == 1
    assert count(client, api_env, "admin", "opportunity", f"account == {account['id']}") == 0

    # atomic=false: every good row is kept, the bad ones answered by index
    resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk?atomic=false", rows)
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["created"], body["failed"]) == (39, 1)
    assert body["results"][37]["error"]["code"] == "validation_failed"
    assert "budget" in body["results"][37]["error"]["details"]
    assert all("id" in r for i, r in enumerate(body["results"]) if i != 37)
    assert count(client, api_env, "admin", "lead", f"city == '{city}'") == 39
    resp = call(client, api_env, "admin", "POST", "/records/equipment/bulk?atomic=false", kit)
    assert resp.get_json()["created"] == 5 and resp.get_json()["results"][5]["error"]["code"] == "unique_violation"


def test_a_bulk_patch_by_filter_touches_only_the_callers_permitted_rows(client: Any, api_env: ApiEnv):
    city = marker()
    for user in ("rep1", "rep2"):
        resp = call(client, api_env, user, "POST", "/records/lead/bulk", [lead(i, city) for i in range(4)])
        assert resp.status_code == 201, resp.get_json()
    flt = f"/records/lead?filter=city == '{city}'"

    dry = call(client, api_env, "rep1", "PATCH", f"{flt}&dry_run=true", {"title": "CTO"})
    assert dry.get_json() == {"matched": 4, "updated": 0, "dry_run": True}
    assert count(client, api_env, "admin", "lead", f"city == '{city}' and title == 'CTO'") == 0

    resp = call(client, api_env, "rep1", "PATCH", flt, {"title": "CTO"})
    assert resp.status_code == 200 and resp.get_json() == {"matched": 4, "updated": 4}
    assert count(client, api_env, "rep2", "lead", f"city == '{city}' and title == 'CTO'") == 0  # rep2's untouched
    assert count(client, api_env, "rep1", "lead", f"city == '{city}' and title == 'CTO'") == 4
    mine = call(client, api_env, "rep1", "GET", f"{flt}&limit=1").get_json()["items"][0]
    changes = call(client, api_env, "rep1", "GET", f"/records/lead/{mine['id']}/history").get_json()["items"]
    assert [(e["action"], e["field"], e["new"]) for e in changes][-1] == ("update", "title", "CTO")

    # the manager's team scope reaches both reps' leads
    resp = call(client, api_env, "boss", "PATCH", flt, {"title": "CEO"})
    assert resp.get_json() == {"matched": 8, "updated": 8}
    # field rules hold per record: a rep may not set the score
    resp = call(client, api_env, "rep1", "PATCH", flt, {"score": 99})
    assert resp.status_code == 400 and "score" in resp.get_json()["error"]["details"]
    # rep3 (no team) may update none of them: the count says so
    assert call(client, api_env, "rep3", "PATCH", flt, {"title": "x"}).get_json() == {"matched": 0, "updated": 0}
    # a filter is required; a bad one is a 400
    resp = call(client, api_env, "rep1", "PATCH", "/records/lead", {"title": "x"})
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "bad_filter"
    assert call(client, api_env, "rep1", "PATCH", "/records/lead?filter=nosuch == 1", {"title": "x"}).status_code == 400


def test_a_bulk_patch_dry_run_checks_the_body_as_the_real_run_does(client: Any, api_env: ApiEnv):
    city = marker()
    resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk", [lead(i, city) for i in range(2)])
    assert resp.status_code == 201, resp.get_json()
    flt = f"/records/lead?filter=city == '{city}'"
    for user, body in (("rep1", {"id": 3}), ("rep1", {"score": 99}), ("rep1", {"nosuch": 1}),
                       ("rep1", {"budget": "lots"}), ("rep1", {"company": ""}), ("admin", {"owner_id": 99_999_999}),
                       ("admin", {"id": 3, "title": "x"})):
        real = call(client, api_env, user, "PATCH", flt, body)
        assert real.status_code == 400, (body, real.get_json())
        dry = call(client, api_env, user, "PATCH", f"{flt}&dry_run=true", body)
        assert (dry.status_code, dry.get_json()) == (400, real.get_json()), body
    # a body the real run takes: the dry run counts, and nothing is written
    dry = call(client, api_env, "rep1", "PATCH", f"{flt}&dry_run=true", {"title": "CFO"})
    assert dry.get_json() == {"matched": 2, "updated": 0, "dry_run": True}
    assert count(client, api_env, "admin", "lead", f"city == '{city}' and title == 'CFO'") == 0
    # record by record (atomic=false) a reference that does not exist fails each record, not the request,
    # and the dry run reports the same failures
    body = {"owner_id": 99_999_999}
    real = call(client, api_env, "admin", "PATCH", f"{flt}&atomic=false", body)
    assert real.status_code == 200 and real.get_json()["failed"] == 2, real.get_json()
    dry = call(client, api_env, "admin", "PATCH", f"{flt}&atomic=false&dry_run=true", body)
    assert dry.get_json() == {**real.get_json(), "dry_run": True}


def test_a_bulk_write_cannot_probe_a_value_masked_in_a_pool(client: Any, api_env: ApiEnv):
    city = marker()
    with api_env.runtime.unit(Actor.system()) as uow:
        ids = uow.records.create_many("lead", [{**lead(i, city), "region": "east", "pool": "east_pool"}
                                               for i in range(2)], bypass_readonly=True)
        phone = uow.records.get("lead", ids[0])["phone"]
    by_phone = f"/records/lead?filter={quote(f'phone == {phone!r}')}"  # (a bare + in a query string is a space)
    # the unclaimed leads' phones are masked for everyone, administrators included: a filter on it reaches none
    assert call(client, api_env, "admin", "PATCH", by_phone, {"title": "x"}).get_json() == {"matched": 0, "updated": 0}
    assert call(client, api_env, "admin", "DELETE", f"{by_phone}&dry_run=true").get_json()["matched"] == 0
    assert call(client, api_env, "admin", "PATCH", f"/records/lead?filter=city == '{city}'&dry_run=true",
                {"title": "x"}).get_json()["matched"] == 2


def test_a_bulk_delete_by_filter_soft_deletes_what_the_caller_may_delete(client: Any, api_env: ApiEnv):
    city = marker()
    call(client, api_env, "admin", "POST", "/records/lead/bulk", [lead(i, city) for i in range(3)])
    flt = f"/records/lead?filter=city == '{city}'"
    resp = call(client, api_env, "rep1", "DELETE", flt)
    assert resp.status_code == 403  # sales may delete no lead
    assert call(client, api_env, "admin", "DELETE", f"{flt}&dry_run=true").get_json() == {
        "matched": 3, "deleted": 0, "dry_run": True}
    assert call(client, api_env, "admin", "DELETE", flt).get_json() == {"matched": 3, "deleted": 3}
    assert count(client, api_env, "admin", "lead", f"city == '{city}'") == 0
    assert count(client, api_env, "admin", "lead", f"city == '{city}'", deleted=True) == 3

    # tasks: each rep deletes their own, the rest stay
    subject = marker()
    for user in ("rep1", "rep2"):
        call(client, api_env, user, "POST", "/records/task/bulk", [{"subject": subject}, {"subject": subject}])
    resp = call(client, api_env, "rep1", "DELETE", f"/records/task?filter=subject == '{subject}'&atomic=false")
    assert resp.get_json() == {"matched": 2, "deleted": 2, "failed": 0, "errors": []}
    assert count(client, api_env, "admin", "task", f"subject == '{subject}'") == 2


def test_limits_answer_413_and_the_bulk_body_may_be_larger_than_a_single_create(client: Any, api_env: ApiEnv):
    city = marker()
    with config(api_env, CRM_MAX_BULK_ROWS=5):
        resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk", [lead(i, city) for i in range(6)])
    assert resp.status_code == 413
    error = resp.get_json()["error"]
    assert error["code"] == "batch_too_large" and (error["details"]["rows"], error["details"]["limit"]) == (6, 5)
    assert "at most 5" in error["message"]

    call(client, api_env, "rep1", "POST", "/records/lead/bulk", [lead(i, city) for i in range(4)])
    with config(api_env, CRM_MAX_BULK_MATCH=3):
        resp = call(client, api_env, "rep1", "PATCH", f"/records/lead?filter=city == '{city}'", {"title": "x"})
    assert resp.status_code == 413
    assert (resp.get_json()["error"]["details"]["matched"], resp.get_json()["error"]["details"]["limit"]) == (4, 3)

    big = [lead(i, city, notes="备注" * 200_000) for i in range(2)]  # 1.2 MB each: over the 1 MiB of other routes
    assert call(client, api_env, "rep1", "POST", "/records/lead", big[0]).status_code == 413
    resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk", big)
    assert resp.status_code == 201, resp.get_json()
    with config(api_env, CRM_MAX_BULK_BODY_BYTES=100_000):
        resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk", big)
    assert resp.status_code == 413 and resp.get_json()["error"]["code"] == "payload_too_large"
    assert "100000 bytes" in resp.get_json()["error"]["message"]


def test_bad_bulk_bodies_are_clear_400s(client: Any, api_env: ApiEnv):
    list_of_records = 'must be a JSON list of records, [{...}, {...}], or {"records": [{...}, {...}]}'
    for body, words in (({"company": "x"}, f"{list_of_records}; this body is a single JSON object"),
                        ("x", "this body is a JSON string"), ({"records": 3}, 'its "records" is a JSON number'),
                        ([{"company": "x"}, 3], "row 1 is not"), ([], "empty")):
        resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk", body)
        assert resp.status_code == 400 and words in resp.get_json()["error"]["message"], resp.get_json()
        assert "dict" not in resp.get_json()["error"]["message"]
    hint = call(client, api_env, "rep1", "POST", "/records/lead/bulk", {"company": "x"}).get_json()["error"]
    assert "POST it to /api/v1/records/<entity>" in str(hint)
    resp = call(client, api_env, "rep1", "POST", "/records/lead/bulk", {"records": [lead(0, marker())]})
    assert resp.status_code == 201
    assert call(client, api_env, "rep1", "POST", "/records/nosuch/bulk", [{"a": 1}]).status_code == 404
    assert call(client, api_env, "rep1", "POST", "/records/equipment/bulk", [{"serial_number": "x"}]).status_code == 403


def test_every_invalid_row_is_counted_and_the_first_fifty_detailed(client: Any, api_env: ApiEnv):
    from engine.runtime.records.bulk import MAX_ERROR_ROWS

    rows = [{"company": "", "email": "not an email"} for _ in range(MAX_ERROR_ROWS + 10)]
    error = call(client, api_env, "rep1", "POST", "/records/lead/bulk", rows).get_json()["error"]
    assert error["message"].startswith(f"{MAX_ERROR_ROWS + 10} rows are invalid (the first {MAX_ERROR_ROWS} shown)")
    assert {k.split("]")[0] + "]" for k in error["details"]} == {f"[{i}]" for i in range(MAX_ERROR_ROWS)}


def test_the_openapi_document_has_the_bulk_operations(client: Any, api_env: ApiEnv):
    paths = call(client, api_env, "rep1", "GET", "/openapi.json").get_json()["paths"]
    assert {"patch", "delete"} <= set(paths["/records/lead"])
    assert paths["/records/lead/bulk"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "maxItems"] == 1000
    assert "413" in paths["/records/lead/bulk"]["post"]["responses"]


# --------------------------------------------------------------------------- recycle bin


def test_a_restore_brings_back_a_deleted_record_with_its_history(client: Any, api_env: ApiEnv):
    city = marker()
    made = call(client, api_env, "admin", "POST", "/records/lead", lead(0, city)).get_json()
    call(client, api_env, "admin", "PATCH", f"/records/lead?filter=city == '{city}'", {"title": "Buyer"})
    assert call(client, api_env, "admin", "DELETE", f"/records/lead/{made['id']}").status_code == 204
    assert call(client, api_env, "admin", "GET", f"/records/lead/{made['id']}").status_code == 404

    binned = call(client, api_env, "admin", "GET",
                  f"/records/lead?deleted=only&filter=city == '{city}'&sort=-deleted_at").get_json()["items"]
    assert [r["id"] for r in binned] == [made["id"]] and binned[0]["deleted_at"] is not None
    assert count(client, api_env, "admin", "lead", f"city == '{city}'") == 0

    resp = call(client, api_env, "admin", "POST", f"/records/lead/{made['id']}/restore")
    assert resp.status_code == 200, resp.get_json()
    back = resp.get_json()
    assert back["deleted_at"] is None and back["title"] == "Buyer" and back["company"] == made["company"]
    assert resp.headers["ETag"] == f'"{back["version"]}"'
    assert call(client, api_env, "admin", "GET", f"/records/lead/{made['id']}").status_code == 200
    history = call(client, api_env, "admin", "GET", f"/records/lead/{made['id']}/history").get_json()["items"]
    assert [e["action"] for e in history] == ["create", "update", "delete", "restore"]
    assert count(client, api_env, "admin", "lead", f"city == '{city}'", deleted=True) == 0
    # restoring a live record, or one that never existed: 404
    assert call(client, api_env, "admin", "POST", f"/records/lead/{made['id']}/restore").status_code == 404
    assert call(client, api_env, "admin", "POST", "/records/lead/999999999/restore").status_code == 404


def test_a_restore_whose_unique_value_was_taken_since_is_refused_naming_the_clash(client: Any, api_env: ApiEnv):
    city = marker()
    account = call(client, api_env, "admin", "POST", "/records/account", {"name": f"{city} Plant"}).get_json()
    serial = f"SN-{city}"
    first = call(client, api_env, "admin", "POST", "/records/equipment",
                 {"serial_number": serial, "account": account["id"]}).get_json()
    call(client, api_env, "admin", "DELETE", f"/records/equipment/{first['id']}")
    second = call(client, api_env, "admin", "POST", "/records/equipment",
                  {"serial_number": serial, "account": account["id"]})
    assert second.status_code == 201  # the deleted record freed the serial number
    taker = second.get_json()["id"]

    resp = call(client, api_env, "admin", "POST", f"/records/equipment/{first['id']}/restore")
    assert resp.status_code == 409
    error = resp.get_json()["error"]
    assert error["code"] == "restore_clash"
    assert "serial_number" in error["message"] and f"equipment {taker}" in error["message"]
    assert error["details"]["clashes"] == [{"fields": ["serial_number"], "record_id": taker}]
    assert error["details"]["serial_number"] == [f"already used by equipment {taker}"]
    assert error["docs"].endswith("#restore_clash")
    assert count(client, api_env, "admin", "equipment", f"serial_number == '{serial}'", deleted=True) == 1

    # once the taker gives the value up, the restore goes through
    call(client, api_env, "admin", "DELETE", f"/records/equipment/{taker}")
    assert call(client, api_env, "admin", "POST", f"/records/equipment/{first['id']}/restore").status_code == 200


def test_the_bin_shows_and_restores_what_the_caller_may_delete(client: Any, api_env: ApiEnv):
    subject = marker()
    task = call(client, api_env, "rep1", "POST", "/records/task", {"subject": subject}).get_json()
    assert call(client, api_env, "rep1", "DELETE", f"/records/task/{task['id']}").status_code == 204
    flt = f"filter=subject == '{subject}'"
    seen = {user: call(client, api_env, user, "GET", f"/records/task?deleted=only&{flt}") for user in
            ("rep1", "rep2", "boss", "admin")}
    assert {u: [r["id"] for r in resp.get_json()["items"]] for u, resp in seen.items()} == {
        "rep1": [task["id"]], "rep2": [], "boss": [task["id"]], "admin": [task["id"]]}
    # sales may delete no lead, so they have no lead bin; a bad value of deleted is a 400
    resp = call(client, api_env, "rep1", "GET", "/records/lead?deleted=only")
    assert resp.status_code == 403 and "deleted" in resp.get_json()["error"]["message"]
    resp = call(client, api_env, "rep1", "GET", "/records/task?deleted=yes")
    assert resp.status_code == 400 and "deleted" in resp.get_json()["error"]["details"]
    # rep2 cannot restore rep1's task (not in their scope: 404); rep1 can
    assert call(client, api_env, "rep2", "POST", f"/records/task/{task['id']}/restore").status_code == 404
    assert call(client, api_env, "rep1", "POST", f"/records/task/{task['id']}/restore").status_code == 200

    paths = call(client, api_env, "rep1", "GET", "/openapi.json").get_json()["paths"]
    assert "post" in paths["/records/task/{id}/restore"]
    assert "deleted" in [p["name"] for p in paths["/records/task"]["get"]["parameters"]]
