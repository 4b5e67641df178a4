"""Benchmark: the record service against raw SQLAlchemy Core on the same database, in one run.

``run(quick=False)`` returns rows ``{"name", "value", "unit", "baseline", "ratio", "target"}``:

* bulk create: rows/s of ``RecordService.create_many`` (full pipeline: coercion,
  defaults, formulas, rules, references, audit) vs the same raw insert path
  given ready tuples (COPY / executemany; target >= 0.2x) and vs a Core
  ``insert()`` executemany of the same converted rows (target >= 0.5x);
* list: p95 latency of ``RecordService.list(filter="industry == 'manufacturing'")``
  in the default sort (``-created_at``) over 1,000,000 rows (100,000 with
  ``quick``) vs the same Core SELECT with the same index (target: ratio <= 3).

SQLite always; PostgreSQL too when ``CRM_BENCH_PG_URL`` names an (empty) database.

    .venv/bin/python -m bench.bench_records [--quick]
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from engine.dsl.compiler import compile_folder
from engine.runtime.context import Actor
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.schema.apply import apply

INDUSTRIES = ("manufacturing", "services", "it", "finance", "education", "other")
ENTITY = """
entity: lead
fields:
  company: {type: string, required: true, max_length: 200}
  contact_name: {type: string}
  phone: {type: phone}
  email: {type: email}
  industry: {type: picklist, options: [manufacturing, services, it, finance, education, other], index: true}
  demand: {type: picklist, options: [clear, vague, none]}
  source: {type: picklist, options: [website, exhibition, referral, ads]}
  region: {type: picklist, options: [east, north, south, west]}
  budget: {type: money, min: 0}
  score: {type: integer}
  employees: {type: integer, min: 0}
  city: {type: string}
  website: {type: url}
  rating: {type: decimal}
  active: {type: boolean}
  first_contact: {type: date}
  notes: {type: text}
  weighted: {type: money, formula: "coalesce(budget, 0) * 0.5"}
checks:
  - check: "email is not null or phone is not null"
    message: {en: Give an email or a phone}
"""
P95_ROUNDS = 200


def _workspace(folder: Path) -> Path:
    (folder / "entities").mkdir(parents=True, exist_ok=True)
    (folder / "workspace.yaml").write_text("workspace: bench\n", encoding="utf-8")
    (folder / "entities" / "lead.yaml").write_text(textwrap.dedent(ENTITY).lstrip(), encoding="utf-8")
    return folder


def _values(i: int) -> dict[str, Any]:
    return {"company": f"company {i}", "contact_name": f"name {i}", "phone": f"+86 138{i % 10**8:08d}",
            "email": f"c{i}@example.com", "industry": INDUSTRIES[i % 6], "demand": "clear", "source": "website",
            "region": "east", "budget": 1000 + i % 5000, "score": i % 100, "employees": i % 1000,
            "city": f"city {i % 50}", "website": "https://example.com", "rating": "3.5", "active": i % 2 == 0,
            "first_contact": "2026-01-02", "notes": "some notes"}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_bulk_create(rt: Runtime, n: int, label: str) -> list[dict[str, Any]]:
    """create_many of ``n`` rows against two baselines, best of 3 each:

    * the same insert path the service ends in (:mod:`engine.runtime.rawsql`: COPY on PostgreSQL, the
      driver's executemany on SQLite) given the ready, converted tuples of the same rows the service
      writes (entity rows and their audit rows) -- what the pipeline costs on top;
    * SQLAlchemy Core ``insert()`` executemany of the converted rows -- what a team would write by hand.
    """
    from engine.runtime.records import fastsql, journal, persist

    actor = Actor.system()
    plan = rt.state.plan("lead")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    service_t, same_t, core_t = [], [], []
    for _ in range(3):
        rows = [_values(i) for i in range(n)]

        def service(rows: list[dict[str, Any]] = rows) -> None:
            with rt.unit(actor) as uow:
                uow.records.create_many("lead", rows)

        service_t.append(_timed(service))
        ready = [{**_converted(v), "version": 1, "created_at": now, "updated_at": now} for v in rows]

        def core(ready: list[dict[str, Any]] = ready) -> None:
            with rt.engine.connect() as conn:
                conn.execution_options(sqlite_immediate=True)
                with conn.begin():
                    conn.execute(insert(plan.table), ready)

        core_t.append(_timed(core))
        with rt.unit(actor) as uow:  # the tuples the service's raw insert takes, built outside the timing
            ins = fastsql.entity_insert(uow.state, uow.conn, plan)
            stamp = {"version": 1, "created_at": now, "updated_at": now, "deleted_at": None}
            ids = persist.reserve_ids(uow, plan, n + 1)[1:]  # above what the service and Core rows took
            records = [{**r, "id": i} for i, r in zip(ids, ready, strict=True)]
            tuples = fastsql.entity_rows(ins, plan, records, stamp)
            snapshot = journal.snapshot_builder(plan)  # and the same audit rows the service writes
            audit_ins, audit_rows = journal.encoded(uow, now, [journal.event("lead", r["id"], "create", snapshot(r))
                                                               for r in records])

        def same_path(tuples: list[tuple[Any, ...]] = tuples, ins: Any = ins, audit_ins: Any = audit_ins,
                      audit_rows: list[tuple[Any, ...]] = audit_rows) -> None:
            with rt.unit(actor) as uow:
                ins.run(uow.conn, tuples)
                audit_ins.run(uow.conn, audit_rows)

        same_t.append(_timed(same_path))
    svc, same, core_rate = n / min(service_t), n / min(same_t), n / min(core_t)
    return [
        {"name": f"bulk create {n:,} leads vs the same raw insert path ({label})", "value": round(svc),
         "unit": "rows/s", "baseline": round(same), "ratio": round(svc / same, 2), "target": ">= 0.2x"},
        {"name": f"bulk create {n:,} leads vs SQLAlchemy Core executemany ({label})", "value": round(svc),
         "unit": "rows/s", "baseline": round(core_rate), "ratio": round(svc / core_rate, 2), "target": ">= 0.5x"},
    ]


def _converted(v: dict[str, Any]) -> dict[str, Any]:
    from decimal import Decimal

    out = dict(v)
    out["budget"] = Decimal(v["budget"])
    out["budget_currency"] = "USD"
    out["rating"] = Decimal(v["rating"])
    out["first_contact"] = dt.date(2026, 1, 2)
    out["weighted"] = Decimal(v["budget"]) / 2
    out["weighted_currency"] = "USD"
    return out


def _fill(rt: Runtime, n: int) -> None:
    """``n`` plain rows by Core executemany in chunks (fast enough; not what is measured)."""
    table = rt.state.plan("lead").table
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    with rt.engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            for lo in range(0, n, 50_000):
                conn.execute(insert(table), [
                    {"version": 1, "created_at": start + dt.timedelta(seconds=i), "updated_at": start,
                     "company": f"c{i}", "industry": INDUSTRIES[i % 6], "score": i % 100}
                    for i in range(lo, min(n, lo + 50_000))])
            # fresh statistics, as after any bulk load: without them PostgreSQL plans for the table it saw
            # last (a bitmap scan and a sort of every matching row instead of walking the index)
            conn.exec_driver_sql("ANALYZE lead")


def _p95(fn: Callable[[], Any]) -> float:
    for _ in range(10):
        fn()
    times = sorted(_timed(fn) for _ in range(P95_ROUNDS))
    return times[int(len(times) * 0.95) - 1]


def bench_list(rt: Runtime, n: int, label: str) -> dict[str, Any]:
    """p95 of a filtered, default-sorted first page through the service vs raw Core with the same index."""
    _fill(rt, n)
    actor = Actor.system()
    t = rt.state.plan("lead").table
    raw_stmt = (select(t).where(t.c.deleted_at.is_(None), t.c.industry == "manufacturing")
                .order_by(t.c.created_at.desc(), t.c.id.desc()).limit(50))

    def service() -> None:
        with rt.unit(actor, readonly=True) as uow:
            page = uow.records.list("lead", filter="industry == 'manufacturing'", limit=50)
            assert len(page.items) == 50

    def raw() -> None:
        with rt.engine.connect() as conn, conn.begin():
            rows = conn.execute(raw_stmt).all()
            assert len(rows) == 50

    svc, base = _p95(service), _p95(raw)
    return {"name": f"list filter+sort p95, {n:,} rows ({label})", "value": round(svc * 1000, 3), "unit": "ms",
            "baseline": round(base * 1000, 3), "ratio": round(svc / base, 2), "target": "<= 3x"}


def measure(url: str, label: str, *, bulk_rows: int, list_rows: int, folder: Path) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        apply(engine, compile_folder(_workspace(folder)), author="bench", message="bench")
    finally:
        engine.dispose()
    rt = Runtime.open(url)
    try:
        out = bench_bulk_create(rt, bulk_rows, label)
        with rt.engine.begin() as conn:
            conn.execute(rt.state.plan("lead").table.delete())
        out.append(bench_list(rt, list_rows, label))
        return out
    finally:
        rt.close()


def _reset_pg(url: str, folder: Path) -> None:
    from engine.runtime.storage import build_schema

    engine = make_engine(url)
    try:
        schema = build_schema(compile_folder(_workspace(folder)), "postgresql")
        schema.metadata.drop_all(engine)
    finally:
        engine.dispose()


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Benchmark rows (see module docstring)."""
    bulk_rows = 20_000 if quick else 100_000
    list_rows = 100_000 if quick else 1_000_000
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        root = Path(tmp)
        out += measure(f"sqlite:///{root / 'bench.db'}", "sqlite", bulk_rows=bulk_rows, list_rows=list_rows,
                       folder=root / "ws")
        pg_url = os.environ.get("CRM_BENCH_PG_URL")
        if pg_url:
            _reset_pg(pg_url, root / "ws")
            try:
                out += measure(pg_url, "postgresql", bulk_rows=bulk_rows, list_rows=list_rows, folder=root / "ws")
            finally:
                _reset_pg(pg_url, root / "ws")
    return out


def _iter_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield (f"{row['name']}: {row['value']} {row['unit']} (raw {row['baseline']} {row['unit']}, "
               f"ratio {row['ratio']}; target {row['target']})")


def main(argv: list[str]) -> int:
    for line in _iter_lines(run(quick="--quick" in argv)):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
