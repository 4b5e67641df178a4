"""Benchmark: the duplicate check on create against 1,000,000 leads (100,000... with ``quick``: 20,000).

``run(quick=False)`` returns rows ``{"name", "value", "unit", "baseline", "ratio", "target"}``:

* the dedupe check a create runs -- :func:`engine.runtime.sales.dedupe.matches` for a new lead's e-mail,
  phone and company (fuzzy 90, scored among the records sharing a blocking key), inside the unit of work
  as the write step runs it -- p95 in ms (target < 10 ms), against the baseline of one indexed lookup of
  an e-mail in the lead table itself;
* a whole create through the record service with the dedupe step active (keys stored, matches looked up
  and described), p95 in ms, against a create of the same values in an entity of the same shape that no
  rule reads (``prospect``, same database).

The rows and their keys are made set-based (one ``INSERT ... SELECT`` over a generated series each: leads,
then e-mail, phone, company and blocking keys), in the form the dedupe step stores them -- a sample is
checked against the step's own normalisers first.  SQLite always; PostgreSQL too when ``CRM_BENCH_PG_URL``
names an (empty) database.

    .venv/bin/python -m bench.bench_dedupe [--quick]
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, text

from engine.dsl.compiler import compile_folder
from engine.runtime.context import Actor
from engine.runtime.db import make_engine
from engine.runtime.runtime import Runtime
from engine.runtime.sales.dedupe import matches
from engine.runtime.sales.dedupe_keys import index, record_pairs
from engine.runtime.schema.apply import apply

ENTITY = """
entity: {name}
title: "{{company}}"
fields:
  company: {{type: string, required: true, max_length: 200}}
  phone: {{type: phone}}
  email: {{type: email, index: true}}
  city: {{type: string}}
"""
RULE = """
dedupe: lead_duplicates
entity: lead
match:
  - [email]
  - [phone]
  - {fields: [company], fuzzy: 90}
action: warn
"""
#: a company name is city + trade + number + 有限公司 (its key: the same without 有限公司)
CITIES = "苏州上海杭州宁波无锡常州南京合肥温州嘉兴绍兴台州扬州南通泰州镇江徐州金华湖州芜湖"
TRADES = "机械电子模具精密光学化工纺织食品包装汽配五金塑胶电气仪表液压阀门轴承铸造钢构家具印刷"
P95_ROUNDS = 200


def _workspace(folder: Path) -> Path:
    (folder / "entities").mkdir(parents=True, exist_ok=True)
    (folder / "dedupe").mkdir(exist_ok=True)
    (folder / "workspace.yaml").write_text("workspace: bench\nphone_region: CN\n", encoding="utf-8")
    for name in ("lead", "prospect"):
        (folder / "entities" / f"{name}.yaml").write_text(textwrap.dedent(ENTITY.format(name=name)).lstrip(),
                                                          encoding="utf-8")
    (folder / "dedupe" / "lead.yaml").write_text(textwrap.dedent(RULE).lstrip(), encoding="utf-8")
    return folder


def _stem_sql(i: str) -> str:
    """SQL of the company key of lead number ``i`` (the same on SQLite and PostgreSQL)."""
    ncity, ntrade = len(CITIES) // 2, len(TRADES) // 2
    return (f"substr('{CITIES}', ({i} % {ncity}) * 2 + 1, 2) || substr('{TRADES}', (({i} / {ncity}) % {ntrade}) * 2 "
            f"+ 1, 2) || CAST({i} AS TEXT)")


def _series(engine: Engine, n: int) -> str:
    if engine.dialect.name == "postgresql":
        return f"SELECT i FROM generate_series(1, {n}) AS s(i)"
    return f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s"


def fill(engine: Engine, n: int) -> None:
    """``n`` leads and their keys, set-based: each an ``INSERT ... SELECT`` over a generated series."""
    at = "'2025-01-01 00:00:00'" if engine.dialect.name == "sqlite" else "TIMESTAMPTZ '2025-01-01 00:00:00+00'"
    stem = _stem_sql("i")
    statements = [
        f"INSERT INTO lead (id, version, created_at, updated_at, company, phone, email) "
        f"SELECT i, 1, {at}, {at}, {stem} || '有限公司', '+86' || CAST(13900000000 + i AS TEXT), "
        f"'lead' || CAST(i AS TEXT) || '@example.com' FROM ({_series(engine, n)}) AS g",
        "INSERT INTO crm_dedupe_keys (entity, record_id, kind, key) SELECT 'lead', id, 'email', email FROM lead",
        "INSERT INTO crm_dedupe_keys (entity, record_id, kind, key) SELECT 'lead', id, 'phone', phone FROM lead",
        "INSERT INTO crm_dedupe_keys (entity, record_id, kind, key) "
        "SELECT 'lead', id, 'company', substr(company, 1, length(company) - 4) FROM lead",
        "INSERT INTO crm_dedupe_keys (entity, record_id, kind, key, value) "
        "SELECT 'lead', id, 'company~', substr(company, 1, 4), substr(company, 1, length(company) - 4) FROM lead",
        "INSERT INTO crm_dedupe_keys (entity, record_id, kind, key, value) "
        "SELECT 'lead', id, 'company~', '…' || substr(company, length(company) - 7, 4), "
        "substr(company, 1, length(company) - 4) FROM lead",
    ]
    with engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            for sql in statements:
                conn.execute(text(sql))
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT setval(pg_get_serial_sequence('lead', 'id'), (SELECT max(id) FROM lead))"))
            conn.exec_driver_sql("ANALYZE")  # fresh statistics, as after any bulk load


def check_sample(rt: Runtime, n: int) -> None:
    """The set-based keys are the ones the dedupe step would store (a sample, through its normalisers)."""
    from engine.runtime.engine_tables import crm_dedupe_keys as K

    with rt.unit(Actor.system(), readonly=True) as uow:
        idx, t = index(uow), uow.state.plan("lead").table
        for i in random.Random(7).sample(range(1, n + 1), 50):
            row = uow.conn.execute(select(t.c.company, t.c.phone, t.c.email).where(t.c.id == i)).one()
            want = record_pairs(idx.sources["lead"], dict(row._mapping), idx.region)
            got = {(r.kind, r.key, r.value)
                   for r in uow.conn.execute(select(K.c.kind, K.c.key, K.c.value).where(K.c.record_id == i))}
            assert got == want, (i, got, want)


def _new_lead(rng: random.Random, n: int) -> dict[str, Any]:
    """A lead like the stored ones: some repeat a stored phone, e-mail or company, most are new."""
    i = rng.randrange(1, n + 1)
    kind = rng.randrange(4)
    stem_city = CITIES[(i % (len(CITIES) // 2)) * 2:][:2]
    return {"company": f"{stem_city}新兴{rng.randrange(10**6)}有限公司" if kind else f"{stem_city}某某{i}",
            "phone": f"+86 139 {rng.randrange(10**8):08d}" if kind != 1 else f"+86{13900000000 + i}",
            "email": f"new{rng.randrange(10**9)}@example.cn" if kind != 2 else f"lead{i}@example.com"}


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _p95(fn: Callable[[], Any]) -> float:
    for _ in range(10):
        fn()
    times = sorted(_timed(fn) for _ in range(P95_ROUNDS))
    return times[int(len(times) * 0.95) - 1]


def bench_check(rt: Runtime, n: int, label: str) -> dict[str, Any]:
    """p95 of the dedupe check of a new lead, as the write step runs it inside the create's unit of work, vs
    one indexed lookup of an e-mail in the lead table in the same unit."""
    rng = random.Random(11)
    t = rt.state.plan("lead").table
    with rt.unit(Actor.system(), readonly=True) as uow:
        leads = [_new_lead(rng, n) for _ in range(P95_ROUNDS + 10)]
        it = iter(leads)
        svc = _p95(lambda: matches(uow, "lead", next(it)))
        emails = iter(f"lead{rng.randrange(1, n + 1)}@example.com" for _ in range(P95_ROUNDS + 10))
        base = _p95(lambda: uow.conn.execute(select(t.c.id).where(t.c.email == next(emails))).all())
    return {"name": f"dedupe check on create (email, phone, fuzzy company) p95, {n:,} leads ({label})",
            "value": round(svc * 1000, 3), "unit": "ms", "baseline": round(base * 1000, 3),
            "ratio": round(svc / base, 2), "target": "< 10 ms"}


def bench_create(rt: Runtime, n: int, label: str) -> dict[str, Any]:
    """p95 of one create through the record service with the rule vs the same create of a ``prospect``."""
    rng = random.Random(13)
    actor = Actor.system()

    def create(entity: str) -> Callable[[], None]:
        def run() -> None:
            with rt.unit(actor) as uow:
                uow.records.create(entity, _new_lead(rng, n))
        return run

    svc, base = _p95(create("lead")), _p95(create("prospect"))
    return {"name": f"create a lead with the dedupe step vs without, p95, {n:,} leads ({label})",
            "value": round(svc * 1000, 3), "unit": "ms", "baseline": round(base * 1000, 3),
            "ratio": round(svc / base, 2), "target": ""}


def measure(url: str, label: str, *, rows: int, folder: Path) -> list[dict[str, Any]]:
    engine = make_engine(url)
    try:
        apply(engine, compile_folder(_workspace(folder)), author="bench", message="bench")
        fill(engine, rows)
    finally:
        engine.dispose()
    rt = Runtime.open(url)
    try:
        check_sample(rt, rows)
        return [bench_check(rt, rows, label), bench_create(rt, rows, label)]
    finally:
        rt.close()


def _reset_pg(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Benchmark rows (see module docstring)."""
    rows = 20_000 if quick else 1_000_000
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crm-bench-dedupe-") as tmp:
        root = Path(tmp)
        out += measure(f"sqlite:///{root / 'bench.db'}", "sqlite", rows=rows, folder=root / "ws")
        pg_url = os.environ.get("CRM_BENCH_PG_URL")
        if pg_url:
            _reset_pg(pg_url)
            try:
                out += measure(pg_url, "postgresql", rows=rows, folder=root / "ws-pg")
            finally:
                _reset_pg(pg_url)
    return out


def main(argv: list[str]) -> int:
    for row in run(quick="--quick" in argv):
        print(f"{row['name']}: {row['value']} {row['unit']} (baseline {row['baseline']} {row['unit']}, "
              f"ratio {row['ratio']}; target {row['target'] or '-'})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
