"""Crafted input never gives a 5xx: tampered cursors, huge numbers, lone surrogates, NUL, odd digits.

Each case is what a client can send by hand; the answer must be a 4xx with
the usual JSON error body, on SQLite and PostgreSQL.  The hypothesis suite
at the end throws generated variants of the same families at the API.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from tests.api.conftest import ApiEnv, create
from tests.api.test_security import lead

LEADS = "/api/v1/records/lead"


def _cursor(client: Any, env: ApiEnv, sort: str, entity: str = "lead") -> dict[str, Any]:
    """A real cursor of a two-item page in ``sort`` order, decoded."""
    resp = client.get(f"/api/v1/records/{entity}", headers=env.headers("admin"), query_string={"sort": sort,
                                                                                               "limit": 1})
    assert resp.status_code == 200, resp.get_json()
    token = resp.get_json()["next_cursor"]
    assert token, "need at least two records"
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    return json.loads(raw)  # type: ignore[no-any-return]


def _encode(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _assert_4xx(resp: Any) -> None:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert resp.is_json and "error" in resp.get_json()


@pytest.fixture(scope="module")
def seeded(api_env: ApiEnv) -> ApiEnv:
    client = api_env.app.test_client()
    for i in range(3):
        create(client, api_env, "admin", "lead", lead(f"Cursor Co {i}", budget=1000 + i))
    return api_env


TAMPERED = [
    ("-created_at", 0, "a string"), ("-created_at", 0, 5), ("-created_at", 0, True), ("-created_at", 0, {"n": "NaN"}),
    ("-created_at", 0, {"dt": "not a date"}), ("-created_at", 0, {"d": "2026-01-01"}), ("-created_at", 0, [1]),
    ("budget", 0, {"n": "Infinity"}), ("budget", 0, {"n": "1e999999"}), ("budget", 0, "text"),
    ("budget", 0, {"n": "1" + "0" * 40}), ("budget", 0, 10**40), ("budget", 0, {"n": "NaN"}), ("budget", 0, 1.5e308),
    ("budget", 1, 10**30), ("budget", 1, "7"), ("budget", 1, 7.5), ("budget", 1, -(10**30)), ("budget", 0, 1e30),
    ("company", 0, 12), ("company", 0, "\ud800"), ("company", 0, "a\x00b"), ("company", 0, {"dt": "2026-01-01"}),
    ("id", 0, 10**30), ("id", 0, "abc"), ("id", 0, 1.5), ("id", 0, None), ("id", 0, True),
]


@pytest.mark.parametrize(("sort", "index", "value"), TAMPERED)
def test_tampered_cursor_values_are_refused(client: Any, seeded: ApiEnv, sort: str, index: int, value: Any) -> None:
    data = _cursor(client, seeded, sort)
    data["v"][index] = value
    resp = client.get(LEADS, headers=seeded.headers("admin"), query_string={"sort": sort, "cursor": _encode(data)})
    _assert_4xx(resp)
    assert resp.get_json()["error"]["code"] == "bad_cursor"


def test_cursor_of_a_date_field_checks_its_type(client: Any, seeded: ApiEnv) -> None:
    h = seeded.headers("admin")
    account = client.post("/api/v1/records/account", headers=h, json={"name": "Cursor account"}).get_json()
    for i in range(2):
        made = client.post("/api/v1/records/opportunity", headers=h,
                           json={"name": f"Cursor deal {i}", "close_date": f"2026-0{i + 1}-01",
                                 "account": account["id"]})
        assert made.status_code == 201, made.get_json()
    data = _cursor(client, seeded, "close_date", "opportunity")
    for bad in ({"dt": "2026-01-01T00:00:00"}, "2026-01-01", {"d": "x"}, 3):
        data["v"][0] = bad
        resp = client.get("/api/v1/records/opportunity", headers=h,
                          query_string={"sort": "close_date", "cursor": _encode(data)})
        _assert_4xx(resp)


BODIES = [
    '{"company": "A", "budget": 1e999999}', '{"company": "A", "budget": -1e999999}',
    '{"company": "A", "budget": "NaN"}', '{"company": "A", "budget": "Infinity"}',
    '{"company": "A", "budget": "1e999999"}', '{"company": "A", "budget": NaN}',
    '{"company": "A", "budget": Infinity}', '{"company": "A", "budget": ' + "9" * 5000 + "}",
    '{"company": "A", "budget": 1e-999999}', '{"company": "\\ud800"}', '{"company": "A\\udc00B"}',
    '{"\\ud800": 1}', '{"company": "A", "\\udfff": "x"}', '{"company": "A", "notes": ["\\ud800"]}',
    '{"company": "a\\u0000b"}', '{"company": "A", "campaign": 1e30}',
    '{"company": "A", "campaign": 100000000000000000000}', '{"company": "A", "owner_id": 99999999999999999999}',
]


@pytest.mark.parametrize("body", BODIES)
def test_crafted_bodies_are_refused(client: Any, api_env: ApiEnv, body: str) -> None:
    headers = {**api_env.headers("rep1"), "Content-Type": "application/json"}
    _assert_4xx(client.post(LEADS, data=body.encode(), headers=headers))
    made = create(client, api_env, "rep1", "lead", lead("Crafted Co"))
    patched = client.patch(f"{LEADS}/{made['id']}", data=body.encode(), headers={**headers, "If-Match": "1"})
    _assert_4xx(patched)


def test_huge_integer_says_number_too_large(client: Any, api_env: ApiEnv) -> None:
    resp = client.post(LEADS, data=('{"company": "A", "budget": ' + "9" * 5000 + "}").encode(),
                       headers={**api_env.headers("rep1"), "Content-Type": "application/json"})
    assert resp.status_code == 400
    message = resp.get_json()["error"]["message"]
    assert "too large" in message and "set_int_max_str_digits" not in message, message


FILTERS = [
    "score == 99999999999999999999", "score > -99999999999999999999", "budget == 1e400",
    "budget > 123456789012345678901.5", 'company == "\\ud800"', 'company == "a\\u0000b"',
    'contains(company, "\\udc00")', "company == '\x00'", "id == 100000000000000000000",
    'company in ["a", "\\ud83d"]', 'company == "\\0"',
]


@pytest.mark.parametrize("flt", FILTERS)
def test_crafted_filters_are_refused(client: Any, api_env: ApiEnv, flt: str) -> None:
    resp = client.get(LEADS, headers=api_env.headers("admin"), query_string={"filter": flt})
    _assert_4xx(resp)


@pytest.mark.parametrize("rid", ["¹", "①", "١١", "１", "1٢", "0x1", "+1", "1e3", " 1"])
def test_record_ids_take_ascii_digits_only(client: Any, api_env: ApiEnv, rid: str) -> None:
    resp = client.get(f"{LEADS}/{rid}", headers=api_env.headers("admin"))
    assert resp.status_code == 404, resp.get_data(as_text=True)[:200]


# --------------------------------------------------------------------------- generated

_json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "NaN", "Infinity", "1e999999", "1" + "0" * 40, "-0", ""]),
)


def _raw_json(value: Any) -> str:
    """JSON text that keeps lone surrogates as escapes (json.dumps does, with ensure_ascii)."""
    return json.dumps(value, ensure_ascii=True)


@hypothesis.settings(max_examples=150, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(values=st.dictionaries(st.sampled_from(["company", "budget", "score", "campaign", "owner_id",
                                                          "industry", "email", "notes", "\ud800", "x\udc00"]),
                                         _json_scalars, max_size=5))
def test_generated_bodies_never_5xx(api_env: ApiEnv, values: dict[str, Any]) -> None:
    client = api_env.app.test_client()
    resp = client.post(LEADS, data=_raw_json(values).encode(),
                       headers={**api_env.headers("rep1"), "Content-Type": "application/json"})
    assert resp.status_code < 500, (values, resp.get_data(as_text=True)[:300])


@hypothesis.settings(max_examples=150, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(field=st.sampled_from(["-created_at", "budget", "company", "id", "-score"]),
                  values=st.lists(_json_scalars | st.dictionaries(st.sampled_from(["n", "dt", "d", "x"]),
                                                                  _json_scalars, max_size=2), min_size=1, max_size=3))
def test_generated_cursors_never_5xx(seeded: ApiEnv, field: str, values: list[Any]) -> None:
    client = seeded.app.test_client()
    data = _cursor(client, seeded, field)
    data["v"] = (values + data["v"])[: len(data["v"])]
    resp = client.get(LEADS, headers=seeded.headers("admin"), query_string={"sort": field, "cursor": _encode(data)})
    assert resp.status_code < 500, (values, resp.get_data(as_text=True)[:300])


@hypothesis.settings(max_examples=150, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
@hypothesis.given(literal=_json_scalars, op=st.sampled_from(["==", "!=", ">", "<="]),
                  field=st.sampled_from(["company", "budget", "score", "id", "created_at"]))
def test_generated_filter_literals_never_5xx(api_env: ApiEnv, literal: Any, op: str, field: str) -> None:
    text = f"{field} {op} {_raw_json(literal) if not isinstance(literal, bool) else str(literal).lower()}"
    client = api_env.app.test_client()
    resp = client.get(LEADS, headers=api_env.headers("admin"), query_string={"filter": text})
    assert resp.status_code < 500, (text, resp.get_data(as_text=True)[:300])
