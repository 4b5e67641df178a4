"""Against a real waitress server on 127.0.0.1: concurrent PATCH with one If-Match, and schemathesis."""

from __future__ import annotations

import http.client
import json
import threading
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import pytest
import schemathesis
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


@pytest.fixture(scope="module")
def openapi_schema(live_server: str, api_env: ApiEnv) -> Any:
    """The live server's OpenAPI document as a schemathesis schema (a few entities, bounded)."""
    config = schemathesis.Config.from_dict({"base-url": f"{live_server}/api/v1"})
    schema = schemathesis.openapi.from_url(f"{live_server}/api/v1/openapi.json", config=config,
                                           headers=api_env.headers("admin"))
    return schema.include(path_regex=r"^/(meta|openapi\.json|records/(lead|account|product)(/.*)?)$")


schema = schemathesis.pytest.from_fixture("openapi_schema")
CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance]


@schema.parametrize()
@hypothesis.settings(max_examples=8, deadline=None, database=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_openapi_contract(case: Any, api_env: ApiEnv) -> None:
    case.call_and_validate(headers=api_env.headers("admin"), checks=CHECKS)
