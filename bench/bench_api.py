"""REST API throughput and latency against hand-written Flask + SQLAlchemy Core endpoints.

Measured in-process with Flask's test client on one SQLite file (WAL,
synchronous=NORMAL), baselines in the same run:

* ``api create``  POST /api/v1/records/lead, with the shipped scoring, duplicate
  rules and assignment active, vs a minimal Flask view doing the same INSERT
  with Core (target >= 0.5x the baseline's requests/s);
* ``api create plain``  POST /api/v1/records/product, an entity no sales step reads
  (validation, permissions and audit only), vs the same view (target >= 0.7x);
* ``api get 50``  GET 50 leads as JSON vs a Flask view selecting the same
  rows and returning them with ``jsonify`` (target >= 1.0x);
* ``api list p95`` a filtered (indexed field), sorted list over 1,000,000
  leads (quick: 100,000) through the API (target p95 < 50 ms).

Bulk data for the list test is loaded with raw executemany (it is the fixture,
not the thing measured).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import Engine, insert, select

from engine.api import create_app
from engine.api.jsonenc import encode_body

REGIONS = ("east", "north", "south", "west")
INDUSTRIES = ("manufacturing", "services", "it", "finance", "education", "other")
#: what company names end with (a fuzzy key's blocking keys are its first and last characters: names that
#: all end alike make every create score the most candidates -- see docs/dedupe.md)
SUFFIXES = ("Machining", "Castings", "Robotics", "Plastics", "Electronics", "Valves", "Textiles", "Foods",
            "Metals", "Packaging", "Motor Parts", "Automation", "Chemicals", "Tools", "Instruments", "Optics")


def _setup(folder: Path, url: str | None = None) -> tuple[Any, Any, str]:
    """Apply the manufacturing workspace to ``url`` (default: a fresh SQLite file); (runtime, client, token)."""
    from engine.dsl.scaffold import init_workspace
    from engine.runtime import users
    from engine.runtime.context import Actor
    from engine.runtime.runtime import Runtime
    from engine.runtime.schema.operations import apply_workspace, compile_workspace

    ws_dir = folder / "acme"
    init_workspace(ws_dir, industry="manufacturing", name="acme", locale="en", currency="CNY", phone_region="CN")
    url = url or f"sqlite:///{folder / 'bench.db'}"
    apply_workspace(compile_workspace(ws_dir), url, yes=True, allow_destructive=False, purge=False,
                    message="bench", author="bench", echo=lambda _s: None, confirm=lambda _q: True,
                    export_dir=ws_dir / "exports")
    runtime = Runtime.open(url)
    with runtime.unit(Actor.system()) as uow:
        users.create_user(uow, "admin", roles=["admin"])
        token = users.create_token(uow, "admin", "bench")
    return runtime, create_app(runtime).test_client(), token


def _baseline_app(engine: Engine, table: Any) -> Flask:
    """The hand-written comparison: one Flask view per operation, straight Core."""
    app = Flask("baseline")

    @app.post(f"/{table.name}")
    def create() -> Any:
        body = request.get_json()
        now = dt.datetime.now(dt.UTC)
        with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            new_id = conn.execute(insert(table).values(**body, version=1, created_at=now, updated_at=now,
                                                       owner_id=1, created_by=1, updated_by=1)).inserted_primary_key
        return jsonify({"id": new_id[0], **body}), 201

    def rows() -> list[dict[str, Any]]:
        with engine.connect() as conn, conn.begin():
            found = conn.execute(select(table).where(table.c.deleted_at.is_(None))
                                 .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(50)).mappings().all()
        return [dict(r) for r in found]

    @app.get("/lead")
    def page() -> Any:
        return jsonify(rows())

    @app.get("/lead-fast")
    def page_same_encoder() -> Any:  # the same JSON encoder as the API: the honest comparison
        return Response(encode_body({"items": rows()}), mimetype="application/json")

    return app


def _rate(fn: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def _lead_body(i: int) -> dict[str, Any]:
    # distinct company names, as an import of real prospects has: "Bench Co 1", "Bench Co 12", ... would all
    # be fuzzy duplicates of each other, and every create would describe a dozen matches
    name = hashlib.blake2b(str(i).encode(), digest_size=6).hexdigest()
    return {"company": f"{name} {SUFFIXES[i % len(SUFFIXES)]}", "phone": f"138{i:08d}", "industry": INDUSTRIES[i % 6],
            "region": REGIONS[i % 4], "status": "new"}


def _product_body(i: int) -> dict[str, Any]:
    return {"code": f"P-{i:07d}", "name": f"Spindle {i}", "category": "equipment", "list_price": 100 + i % 900}


def _create_rate(client: Any, base: Any, token: str, n: int, entity: str,
                 body: Callable[[int], dict[str, Any]]) -> tuple[float, float]:
    """POST one ``entity`` record per request: (API, baseline) requests/s.

    Six interleaved rounds of n/2 distinct records each (3n in all), best of each side: on a shared machine
    noise only ever slows a round down, and shorter rounds give both sides their quiet moments (three rounds
    of the same n leads swung the ratio 0.4-0.6, and re-created each lead as a duplicate twice)."""
    headers = {"Authorization": f"Bearer {token}"}

    def api(i: int) -> None:
        resp = client.post(f"/api/v1/records/{entity}", json=body(i), headers=headers)
        assert resp.status_code == 201, resp.get_json()

    def raw(i: int) -> None:
        assert base.post(f"/{entity}", json=body(10 * n + i)).status_code == 201

    step = max(n // 2, 1)
    rounds = [(_rate(lambda i, k=k: api(k * step + i), step), _rate(lambda i, k=k: raw(k * step + i), step))
              for k in range(6)]
    return max(r[0] for r in rounds), max(r[1] for r in rounds)


def bench_create(client: Any, base: Any, token: str, n: int) -> dict[str, Any]:
    """POST one lead per request: API vs baseline requests/s.  The shipped manufacturing workspace scores
    every lead, checks it against the duplicate keys and runs the assignment rules (the admin's creates
    are routed): the target with all three is 0.5x."""
    value, baseline = _create_rate(client, base, token, n, "lead", _lead_body)
    return {"name": "api create (POST lead; scoring + dedupe + assignment)", "value": value, "unit": "req/s",
            "baseline": baseline, "ratio": value / baseline, "target": ">= 0.5x", "ok": value / baseline >= 0.5}


def bench_create_plain(client: Any, base: Any, token: str, n: int) -> dict[str, Any]:
    """POST one product per request (an entity no sales step reads: validation, audit and permissions
    only) vs the same hand-written endpoint: the target of the record runtime, 0.7x."""
    value, baseline = _create_rate(client, base, token, n, "product", _product_body)
    return {"name": "api create (POST product; no sales steps)", "value": value, "unit": "req/s",
            "baseline": baseline, "ratio": value / baseline, "target": ">= 0.7x", "ok": value / baseline >= 0.7}


def _median_ms(fn: Callable[[], None], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_get50(client: Any, base: Any, token: str, n: int) -> list[dict[str, Any]]:
    """GET 50 leads as JSON (ratio = baseline time / API time), against a hand-written endpoint using the API's
    own JSON encoder (the same mechanism), and against one using Flask's ``jsonify``."""
    headers = {"Authorization": f"Bearer {token}"}

    def api() -> None:
        resp = client.get("/api/v1/records/lead", query_string={"limit": 50}, headers=headers)
        assert resp.status_code == 200 and len(resp.get_json()["items"]) == 50

    def same() -> None:
        assert len(base.get("/lead-fast").get_json()["items"]) == 50

    def raw() -> None:
        assert len(base.get("/lead").get_json()) == 50

    rounds = [(_median_ms(api, n), _median_ms(same, n), _median_ms(raw, n)) for _ in range(3)]  # interleaved
    value, same_ms, raw_ms = (min(r[i] for r in rounds) for i in range(3))
    return [
        {"name": "api get 50 leads vs hand-written, same JSON encoder", "value": value, "unit": "ms",
         "baseline": same_ms, "ratio": same_ms / value, "target": ">= 1.0x"},
        {"name": "api get 50 leads vs hand-written with jsonify", "value": value, "unit": "ms",
         "baseline": raw_ms, "ratio": raw_ms / value, "target": ">= 1.0x"},
    ]


def _lead_rows(lo: int, hi: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for i in range(lo, hi):
        at = start + dt.timedelta(seconds=i * 30)
        yield (1, at, at, 1, f"Load Co {i}", f"139{i:08d}", rng.choice(INDUSTRIES), rng.choice(REGIONS), "new")


LEAD_COLUMNS = ["version", "created_at", "updated_at", "owner_id", "company", "phone", "industry", "region", "status"]


def load_leads(engine: Engine, table: Any, rows: int) -> None:
    """Bulk-load ``rows`` leads (the fixture, not the measurement): executemany on SQLite, COPY on PostgreSQL."""
    rng = random.Random(7)
    raw = engine.raw_connection()
    try:
        if engine.dialect.name == "postgresql":
            with raw.cursor() as cur, cur.copy(f"COPY lead ({', '.join(LEAD_COLUMNS)}) FROM STDIN") as copy:
                for row in _lead_rows(0, rows, rng):
                    copy.write_row(row)
            raw.commit()
            with raw.cursor() as cur:
                cur.execute("ANALYZE lead")
            raw.commit()
            return
        sql = f"INSERT INTO lead ({', '.join(LEAD_COLUMNS)}) VALUES ({', '.join('?' * len(LEAD_COLUMNS))})"
        for lo in range(0, rows, 50_000):
            batch = [(*r[:1], _sqlite_ts(r[1]), _sqlite_ts(r[2]), *r[3:])
                     for r in _lead_rows(lo, min(rows, lo + 50_000), rng)]
            raw.execute("BEGIN")
            raw.executemany(sql, batch)
            raw.execute("COMMIT")
    finally:
        raw.close()


def _sqlite_ts(at: dt.datetime) -> str:
    return at.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


@contextmanager
def scratch_pg_database(url: str) -> Iterator[str]:
    """A new empty database on the server of ``url`` (dropped afterwards), so the bench never touches data."""
    from sqlalchemy import create_engine, text

    from engine.runtime.db import normalize_url

    admin = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    name = f"crm_bench_api_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_list(client: Any, token: str, rows: int, n: int, dialect: str = "sqlite") -> dict[str, Any]:
    """p95 of a filtered (indexed region), sorted list through the API over ``rows`` leads."""
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    for i in range(n):
        query = {"filter": f"region == '{REGIONS[i % 4]}'", "sort": "-created_at", "limit": 50}
        start = time.perf_counter()
        resp = client.get("/api/v1/records/lead", query_string=query, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == 200 and len(resp.get_json()["items"]) == 50, resp.get_json()
    p95 = statistics.quantiles(times, n=20)[18]
    return {"name": f"api list filter+sort over {rows:,} rows, p95 ({dialect})", "value": p95, "unit": "ms",
            "baseline": None, "ratio": None, "target": "< 50 ms", "ok": p95 < 50}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The three API benchmarks (see the module docstring); the list one also on PostgreSQL
    when ``CRM_BENCH_PG_URL`` names a server (a scratch database is created there and dropped)."""
    total = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="crm-bench-api-") as tmp:
        runtime, client, token = _setup(Path(tmp))
        try:
            engine, table = runtime.engine, runtime.state.schema.table("lead")
            base = _baseline_app(engine, table).test_client()
            products = _baseline_app(engine, runtime.state.schema.table("product")).test_client()
            rows = [bench_create(client, base, token, 200 if quick else 1000),
                    bench_create_plain(client, products, token, 200 if quick else 1000),
                    *bench_get50(client, base, token, 50 if quick else 200)]
            load_leads(engine, table, total)
            rows.append(bench_list(client, token, total, 100 if quick else 300))
        finally:
            runtime.close()
        pg_url = os.environ.get("CRM_BENCH_PG_URL")
        if pg_url:
            rows.append(_pg_list(Path(tmp) / "pg", pg_url, total, 100 if quick else 300))
    return rows


def _pg_list(folder: Path, pg_url: str, total: int, n: int) -> dict[str, Any]:
    folder.mkdir()
    with scratch_pg_database(pg_url) as url:
        runtime, client, token = _setup(folder, url)
        try:
            load_leads(runtime.engine, runtime.state.schema.table("lead"), total)
            return bench_list(client, token, total, n, "postgresql")
        finally:
            runtime.close()


def main(argv: list[str]) -> int:
    """``python -m bench.bench_api [--quick]``: print one line per benchmark."""
    for row in run(quick="--quick" in argv):
        ratio = f", ratio {row['ratio']:.2f}" if row["ratio"] is not None else ""
        base = f" (baseline {row['baseline']:.3f} {row['unit']}{ratio})" if row["baseline"] is not None else ""
        print(f"{row['name']}: {row['value']:.3f} {row['unit']}{base}; target {row['target']}", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
