"""No quiet data changes: what a client sends is stored as sent, normalised where the type says so, or refused.

* a key twice in one JSON object is refused, not "last one wins";
* a money value with more decimals than the field keeps is refused, not rounded;
* single-line text is trimmed, so a unique ``"SN-1 "`` collides with ``"SN-1"``;
* dates and datetimes are read in the documented ISO 8601 forms only.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.conftest import ApiEnv, create
from tests.api.test_security import lead

LEADS = "/api/v1/records/lead"


def _post(client: Any, env: ApiEnv, path: str, body: str, user: str = "admin") -> Any:
    return client.post(path, data=body.encode(), headers={**env.headers(user), "Content-Type": "application/json"})


def test_duplicate_keys_are_refused(client: Any, api_env: ApiEnv) -> None:
    resp = _post(client, api_env, LEADS, '{"company": "First", "phone": "13800000000", "company": "Second"}')
    assert resp.status_code == 400
    error = resp.get_json()["error"]
    assert error["code"] == "invalid_body" and "'company' appears twice" in error["message"]
    nested = _post(client, api_env, LEADS,
                   '{"company": "A", "phone": "13800000000", "notes": "x", "x": {"a": 1, "a": 2}}')
    assert nested.status_code == 400 and "appears twice" in nested.get_json()["error"]["message"]


@pytest.mark.parametrize("budget", ["0.001", "12.345", "1e-3", "0.00000001"])
def test_money_with_more_decimals_than_kept_is_refused(client: Any, api_env: ApiEnv, budget: str) -> None:
    resp = _post(client, api_env, LEADS, '{"company": "Cents", "phone": "13800000000", "budget": ' + budget + "}")
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"]["details"]["budget"] == [
        "has more decimal places than this field keeps (at most 2)"]


@pytest.mark.parametrize(("budget", "stored"), [("0.10", 0.1), ("12.3", 12.3), ("7", 7), ("1.500", 1.5),
                                                 ('"99.99"', 99.99)])
def test_money_the_field_can_keep_is_stored_exactly(client: Any, api_env: ApiEnv, budget: str, stored: Any) -> None:
    resp = _post(client, api_env, LEADS, '{"company": "Cents", "phone": "13800000000", "budget": ' + budget + "}")
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["budget"] == stored


def _account(client: Any, env: ApiEnv) -> int:
    return int(create(client, env, "admin", "account", {"name": f"Acct {uuid.uuid4().hex[:6]}"})["id"])


def test_unique_text_is_trimmed_before_it_is_compared(client: Any, api_env: ApiEnv) -> None:
    serial = f"SN-{uuid.uuid4().hex[:8]}"
    account = _account(client, api_env)
    made = create(client, api_env, "admin", "equipment", {"serial_number": f"  {serial} ", "account": account})
    assert made["serial_number"] == serial
    again = client.post("/api/v1/records/equipment", json={"serial_number": f"{serial} ", "account": account},
                        headers=api_env.headers("admin"))
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "unique_violation"
    notes = create(client, api_env, "rep1", "lead", lead("Trim Co", notes="  kept as written  "))
    assert notes["notes"] == "  kept as written  "  # multi-line text keeps its spaces


@pytest.mark.parametrize("value", ["20260101", "2026-W01-1", "2026-001", "2026-1-5", "2026-01-01T00:00:00",
                                   "2026-02-30", "01/02/2026", "２０２６-01-01"])
def test_dates_in_other_forms_are_refused(client: Any, api_env: ApiEnv, value: str) -> None:
    resp = client.post("/api/v1/records/equipment", headers=api_env.headers("admin"),
                       json={"serial_number": f"D-{uuid.uuid4().hex[:8]}", "account": _account(client, api_env),
                             "installed_on": value})
    assert resp.status_code == 400, resp.get_json()
    assert "installed_on" in resp.get_json()["error"]["details"]


def test_iso_dates_are_accepted(client: Any, api_env: ApiEnv) -> None:
    made = create(client, api_env, "admin", "equipment", {"serial_number": f"D-{uuid.uuid4().hex[:8]}",
                                                          "account": _account(client, api_env),
                                                          "installed_on": "2026-01-31"})
    assert made["installed_on"] == "2026-01-31"
