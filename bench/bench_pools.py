"""Pool claims per second through the REST API of a live server (waitress, 16 threads).

The manufacturing workspace plus a pool without limits; 16 reps of its member team.  Each rep claims
leads through ``POST /api/v1/pools/<pool>/claim`` (every claim locks the rep's row, then the lead's,
counts what the rep holds and claimed today, writes the lead through the record service with its audit
and logs the claim):

* ``pool claims, 1 thread``: one client claiming one lead after another (the baseline, same run);
* ``pool claims, 16 threads``: 16 clients, one rep each, claiming from one shared list at once.

SQLite always (writers take turns, so 16 threads cannot beat one by much: the target is that
concurrency costs at most half the throughput); PostgreSQL too when ``CRM_BENCH_PG_URL`` names a
server (a scratch database is created there and dropped).

    .venv/bin/python -m bench.bench_pools [--quick]
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

THREADS = 16
POOL = """\
pool: bench_pool
entity: lead
members: {teams: [bench_team]}
hidden_fields: [phone]
"""


@contextmanager
def _server(folder: Path, url: str | None, leads: int) -> Iterator[tuple[int, list[str], list[int]]]:
    """A live server of a fresh workspace with ``leads`` pool leads: (port, rep tokens, lead ids)."""
    from waitress.server import create_server

    from engine.api import create_app
    from engine.dsl.scaffold import init_workspace
    from engine.runtime import users
    from engine.runtime.context import Actor
    from engine.runtime.runtime import Runtime
    from engine.runtime.schema.operations import apply_workspace, compile_workspace

    ws_dir = folder / "acme"
    init_workspace(ws_dir, industry="manufacturing", name="acme", locale="en", currency="CNY", phone_region="CN")
    (ws_dir / "pools").mkdir(exist_ok=True)
    (ws_dir / "pools" / "bench_pool.yaml").write_text(POOL, "utf-8")
    url = url or f"sqlite:///{folder / 'bench.db'}"
    apply_workspace(compile_workspace(ws_dir), url, yes=True, allow_destructive=False, purge=False,
                    message="bench", author="bench", echo=lambda _s: None, confirm=lambda _q: True,
                    export_dir=ws_dir / "exports")
    runtime = Runtime.open(url)
    try:
        with runtime.unit(Actor.system()) as uow:
            users.create_team(uow, "bench_team")
            tokens = []
            for i in range(THREADS):
                users.create_user(uow, f"rep{i}", roles=["sales"], team="bench_team")
                tokens.append(users.create_token(uow, f"rep{i}", "bench"))
            ids = uow.records.create_many("lead", [
                {"company": f"Bench {i}", "phone": "13800138000", "region": "east", "pool": "bench_pool"}
                for i in range(leads)], bypass_readonly=True)
        server = create_server(create_app(runtime), host="127.0.0.1", port=0, threads=THREADS)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            yield int(server.effective_port), tokens, ids
        finally:
            server.close()
            thread.join(timeout=5)
    finally:
        runtime.close()


def _claim(port: int, token: str, lead: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/api/v1/pools/bench_pool/claim", body=json.dumps({"id": lead}),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _rate(port: int, tokens: list[str], ids: list[int], threads: int) -> float:
    """Claims per second of ``threads`` clients claiming ``ids`` from one shared list."""
    todo = list(reversed(ids))
    lock = threading.Lock()
    failed: list[int] = []

    def work(token: str) -> None:
        while True:
            with lock:
                if not todo:
                    return
                lead = todo.pop()
            status = _claim(port, token, lead)
            if status != 200:
                failed.append(status)

    workers = [threading.Thread(target=work, args=(tokens[i],)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{len(failed)} claims failed (statuses {sorted(set(failed))})")
    return len(ids) / elapsed


def measure(url: str | None, dialect: str, n: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="crm-bench-pools-") as tmp, \
            _server(Path(tmp), url, 2 * n) as (port, tokens, ids):
        _rate(port, tokens, ids[:20], 1)  # warm the server (compiled statements, token cache)
        single = _rate(port, tokens, ids[20:n], 1)
        many = _rate(port, tokens, ids[n:], THREADS)
    return [
        {"name": f"pool claims, 1 thread ({dialect})", "value": single, "unit": "claims/s"},
        {"name": f"pool claims, {THREADS} threads ({dialect})", "value": many, "unit": "claims/s",
         "baseline": single, "ratio": many / single, "target": ">= 0.5x"},
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Claims per second, one thread and 16 (see the module docstring)."""
    n = 200 if quick else 1000
    rows = measure(None, "sqlite", n)
    pg_url = os.environ.get("CRM_BENCH_PG_URL")
    if pg_url:
        from bench.bench_api import scratch_pg_database

        with scratch_pg_database(pg_url) as url:
            rows += measure(url, "postgresql", n)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
