"""Against a real waitress server on 127.0.0.1: concurrent PATCH with one If-Match, and schemathesis."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import schemathesis
from hypothesis import strategies as st
from schemathesis import checks as st_checks

from tests.api.conftest import ApiEnv

THREADS = 16


def http_json(base: str, method: str, path: str, token: str, body: Any = None,
              headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One request to the live server; (status, parsed JSON or None)."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def test_concurrent_patches_with_one_version(live_server: str, api_env: ApiEnv) -> None:
    token = api_env.tokens["rep1"]
    status, made = http_json(live_server, "POST", "/api/v1/records/lead", token,
                             {"company": "Race Co", "phone": "13800000000", "notes": "start"})
    assert status == 201, made
    path = f"/api/v1/records/lead/{made['id']}"
    barrier = threading.Barrier(THREADS)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def patch(i: int) -> None:
        barrier.wait()
        got = http_json(live_server, "PATCH", path, token, {"notes": f"writer {i}"},
                        {"If-Match": str(made["version"])})
        with lock:
            results.append((got[0], f"writer {i}"))

    workers = [threading.Thread(target=patch, args=(i,)) for i in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    statuses = sorted(s for s, _ in results)
    assert statuses.count(200) == 1 and statuses.count(409) == THREADS - 1, statuses
    winner = next(text for s, text in results if s == 200)
    _status, final = http_json(live_server, "GET", path, token)
    assert final["version"] == made["version"] + 1 and final["notes"] == winner


ENTITIES = ("lead", "account", "product")
CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def load_schema(live_server: str, env: ApiEnv) -> Any:
    """The live server's OpenAPI document as a schemathesis schema, narrowed to a few entities."""
    config = schemathesis.Config.from_dict({"base-url": f"{live_server}/api/v1"})
    schema = schemathesis.openapi.from_url(f"{live_server}/api/v1/openapi.json", config=config,
                                           headers=env.headers("admin"))
    return schema.include(path_regex=rf"^/(meta|openapi\.json|records/({'|'.join(ENTITIES)})(/.*)?)$")


SEEDS = {"lead": {"company": "Contract Co", "phone": "13800000000"}, "account": {"name": "Contract Account"},
         "product": {"code": "CT-1", "name": "Contract Product"}}


def seed_records(live_server: str, env: ApiEnv) -> dict[str, int]:
    """One record per tested entity, created by the admin; entity -> id."""
    out = {}
    for entity, values in SEEDS.items():
        status, made = http_json(live_server, "POST", f"/api/v1/records/{entity}", env.tokens["admin"], values)
        assert status == 201, made
        out[entity] = made["id"]
    return out


def test_openapi_contract(live_server: str, api_env: ApiEnv) -> None:
    """Every operation, positive and negative data: no 5xx, every response as documented."""
    schema = load_schema(live_server, api_env)
    headers = api_env.headers("admin")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) == 2 + 10 * len(ENTITIES)  # + bulk create, PATCH / DELETE by filter, restore
    seeded = seed_records(live_server, api_env)
    calls = 0

    for op in operations:
        variants: list[dict[str, Any]] = [{"generation_mode": m} for m in MODES]
        if "{id}" in op.path:  # also aim at a record that exists, not only at random ids
            variants.append({"path_parameters": {"id": seeded[op.path.split("/")[2]]}})
        for kwargs in variants:
            @hypothesis.given(case=op.as_strategy(**kwargs))
            @hypothesis.settings(max_examples=5, deadline=None, database=None, derandomize=True,
                                 phases=[hypothesis.Phase.generate],
                                 suppress_health_check=list(hypothesis.HealthCheck))
            def exercise(case: Any) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(headers=headers, checks=CHECKS)

            exercise()
    assert calls >= len(operations)


# Values clients have crafted by hand to break servers: each must get a 4xx, never a 5xx.
CRAFTED = st.sampled_from([
    "\ud800", "a\udfffb", "\ud83d\ude00", "\x00", "a\x00b", 10**40, -(10**40), 10**30, 2**63, 1e308, -1e308,
    5e-324, "NaN", "Infinity", "1e999999", "9" * 60, "١١", "①", "20260101", "2026-02-30", " padded ", [], {},
    {"id": "1"},
    [["deep"]], True, "2026-01-01T00:00:00Z",
])


def _crafted_cursor(values: list[Any]) -> str:
    raw = json.dumps({"s": "0" * 16, "v": values})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@st.composite
def _mutation(draw: Any) -> dict[str, Any]:
    """Where to put a crafted value: a body key, the filter, the cursor, the sort, or the path id."""
    where = draw(st.sampled_from(["body", "body", "filter", "cursor", "id"]))
    value = draw(CRAFTED)
    if isinstance(value, str) and not value.isascii() and where == "body":
        where = "filter"  # an unpaired surrogate cannot be sent as UTF-8: it goes in as a \\ud800 escape
    if where == "filter":
        literal = json.dumps(value, ensure_ascii=True) if not isinstance(value, bool) else "true"
        return {"query": {"filter": f"{draw(st.sampled_from(['company', 'name', 'id', 'budget']))} == {literal}"}}
    if where == "cursor":
        return {"query": {"cursor": _crafted_cursor([value, draw(CRAFTED)])}}
    if where == "id":
        return {"id": draw(st.sampled_from(["١١", "①", "¹", "99999999999999999999", "1.5", "-1", "0x10"]))}
    return {"body": {draw(st.sampled_from(["company", "name", "budget", "code", "phone", "owner_id"])): value}}


def test_openapi_contract_with_crafted_values(live_server: str, api_env: ApiEnv) -> None:
    """Schemathesis cases with a crafted value planted in the body, filter, cursor or path: no 5xx."""
    schema = load_schema(live_server, api_env)
    headers = api_env.headers("admin")
    checks = [st_checks.not_a_server_error, st_checks.content_type_conformance]
    calls = 0
    for op in (r.ok() for r in schema.get_all_operations()):
        @hypothesis.given(case=op.as_strategy(), mutation=_mutation())
        @hypothesis.settings(max_examples=12, deadline=None, database=None, derandomize=True,
                             phases=[hypothesis.Phase.generate], suppress_health_check=list(hypothesis.HealthCheck))
        def exercise(case: Any, mutation: dict[str, Any]) -> None:
            nonlocal calls
            if "body" in mutation and isinstance(case.body, dict):
                case.body = {**case.body, **mutation["body"]}
            if "query" in mutation and case.method == "GET" and "{id}" not in case.path:
                case.query = {**(case.query or {}), **mutation["query"]}
            if "id" in mutation and case.path_parameters and "id" in case.path_parameters:
                case.path_parameters = {**case.path_parameters, "id": mutation["id"]}
            calls += 1
            case.call_and_validate(headers=headers, checks=checks)

        exercise()
    assert calls > 100
