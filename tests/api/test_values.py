"""Values as a user meets them through the API: phone numbers checked and stored in E.164, picklists
sorted in the declared order of their options (both databases, paged with a cursor)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine, text

from engine.errors import ValidationFailed
from engine.runtime.context import Actor
from tests.api.conftest import ApiEnv, create
from tests.api.test_security import lead

LEADS = "/api/v1/records/lead"


def test_a_phone_that_is_not_a_number_is_a_400_saying_the_form_expected(client: Any, api_env: ApiEnv) -> None:
    resp = client.post(LEADS, json=lead("Maybe Co", phone="call me maybe"), headers=api_env.headers("rep1"))
    assert resp.status_code == 400, resp.get_json()
    error = resp.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {"phone": ["is not a phone number (expected e.g. 131 2345 6789 or "
                                          "+86 131 2345 6789)"]}


@pytest.mark.parametrize(("typed", "stored"), [
    ("13800138000", "+8613800138000"),
    ("+86 138 0013 8000", "+8613800138000"),
    ("010-12345678", "+861012345678"),
    ("010-12345678 转 8001", "+861012345678;ext=8001"),
])
def test_phones_are_stored_in_e164(client: Any, api_env: ApiEnv, typed: str, stored: str) -> None:
    made = create(client, api_env, "rep1", "lead", lead("E164 Co", phone=typed))
    assert made["phone"] == stored
    got = client.get(f"{LEADS}/{made['id']}", headers=api_env.headers("rep1")).get_json()
    assert got["phone"] == stored


def test_a_patch_checks_the_phone_too(client: Any, api_env: ApiEnv) -> None:
    made = create(client, api_env, "rep1", "lead", lead("Patch Phone Co"))
    url, h = f"{LEADS}/{made['id']}", api_env.headers("rep1")
    bad = client.patch(url, json={"phone": "15400000000"}, headers={**h, "If-Match": '"1"'})
    assert bad.status_code == 400
    assert bad.get_json()["error"]["details"]["phone"] == [
        "is not a valid phone number in CN (expected e.g. 131 2345 6789 or +86 131 2345 6789)"]
    ok = client.patch(url, json={"phone": "+1 (415) 555-2671"}, headers={**h, "If-Match": '"1"'})
    assert ok.status_code == 200 and ok.get_json()["phone"] == "+14155552671"


def test_bulk_creates_check_phones_like_single_ones(api_env: ApiEnv) -> None:
    with pytest.raises(ValidationFailed) as caught, api_env.runtime.unit(Actor.system()) as uow:
        uow.records.create_many("lead", [lead("Bulk Co 1"), lead("Bulk Co 2", phone="12345")])
    assert caught.value.details == {"[1].phone": [
        "is not a valid phone number in CN (expected e.g. 131 2345 6789 or +86 131 2345 6789)"]}
    assert str(caught.value) == "1 row is invalid; nothing was created"
    with api_env.runtime.unit(Actor.system()) as uow:
        ids = uow.records.create_many("lead", [lead("Bulk Co 3", phone="138 0013 8000")])
        assert uow.records.get("lead", ids[0])["phone"] == "+8613800138000"


INDUSTRIES = ["other", "it", None, "manufacturing", "education", "services", "finance", "it", "mining"]
#: declared order of lead.industry; "mining" is no longer an option (sorts after them); null sorts lowest
ASCENDING = [None, "manufacturing", "services", "it", "it", "finance", "education", "other", "mining"]


@pytest.fixture(scope="module")
def sorted_leads(api_env: ApiEnv) -> ApiEnv:
    client = api_env.app.test_client()
    ids = [create(client, api_env, "admin", "lead", lead(f"Sort Co {i}", industry=v if v != "mining" else "other"))
           ["id"] for i, v in enumerate(INDUSTRIES)]
    engine = create_engine(api_env.url)
    with engine.begin() as conn:  # a value left by a removed option, and one left empty
        conn.execute(text("UPDATE lead SET industry = 'mining' WHERE id = :id"), {"id": ids[-1]})
        conn.execute(text("UPDATE lead SET industry = NULL WHERE id = :id"), {"id": ids[2]})
    engine.dispose()
    return api_env


def _paged(client: Any, env: ApiEnv, sort: str) -> list[Any]:
    seen: list[Any] = []
    cursor = None
    while True:
        query = {"filter": "startswith(company, 'Sort Co')", "sort": sort, "limit": 2, "fields": "industry"}
        resp = client.get(LEADS, headers=env.headers("admin"), query_string={**query, **(
            {"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        seen.extend(r["industry"] for r in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return seen


def test_a_picklist_sorts_in_the_order_of_its_options(client: Any, sorted_leads: ApiEnv) -> None:
    assert _paged(client, sorted_leads, "industry") == ASCENDING
    assert _paged(client, sorted_leads, "-industry") == ASCENDING[::-1]


def test_a_picklist_sort_pages_with_a_second_key(client: Any, sorted_leads: ApiEnv) -> None:
    one_page = client.get(LEADS, headers=sorted_leads.headers("admin"), query_string={
        "filter": "startswith(company, 'Sort Co')", "sort": "-industry,company", "limit": 100,
        "fields": "industry,company"}).get_json()["items"]
    assert [r["industry"] for r in one_page] == ASCENDING[::-1]
    assert _paged(client, sorted_leads, "-industry,company") == ASCENDING[::-1]
