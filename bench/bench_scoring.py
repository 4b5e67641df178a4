"""Benchmark: rescoring 1,000,000 leads set-based (one SQL UPDATE built from the compiled rules, with its audit
rows) against recomputing them row by row in Python (read a page of rows, evaluate the rules on each record in
Python, then write that row's new score and grade with its own UPDATE and its audit row).  Target: set-based
>= 20x as fast.

The row-by-row path is timed on a sample (50,000 rows; 5,000 with ``quick``) and scaled to the table size --
the row says so; running it on a million rows would take minutes and measure the same rate.  Every row's
score changes in both runs (the scores start empty), so both write a million scores, grades and audit rows.
SQLite always; PostgreSQL too when ``CRM_BENCH_PG_URL`` names an (empty, scratch) database.

    .venv/bin/python -m bench.bench_scoring [--quick]
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, insert, select, update

from engine.dsl.sales.scoring import score, scorings_of
from engine.plugins import compile_folder
from engine.runtime.context import Actor, FixedClock
from engine.runtime.db import make_engine
from engine.runtime.records import journal, rows
from engine.runtime.runtime import Runtime
from engine.runtime.sales.evaluation import eval_context
from engine.runtime.sales.rescore import rescore
from engine.runtime.schema.apply import apply

INDUSTRIES = ("manufacturing", "services", "it", "finance", "education", "other")
SOURCES = ("website", "exhibition", "referral", "ads")
FILES = {
    "workspace.yaml": "workspace: bench\n",
    "entities/lead.yaml": """
        entity: lead
        fields:
          company: {type: string, required: true, max_length: 200}
          industry: {type: picklist, options: [manufacturing, services, it, finance, education, other]}
          demand: {type: picklist, options: [clear, vague, none]}
          source: {type: picklist, options: [website, exhibition, referral, ads]}
          budget: {type: money, min: 0}
          opened_email: {type: boolean}
          last_activity_at: {type: datetime}
          score: {type: integer, readonly: true}
          grade: {type: picklist, options: [A, B, C, D], readonly: true}
    """,
    "scoring/quality.yaml": """
        scoring: quality
        entity: lead
        score_field: score
        grade_field: grade
        rules:
          - {when: "industry == 'manufacturing' and demand == 'clear'", points: 40, reason: {zh: 制造业且需求明确}}
          - {when: "budget >= 1000000", points: 25}
          - {when: "budget >= 100000 and budget < 1000000", points: 10}
          - {when: "source == 'referral'", points: 10}
          - {when: "opened_email", points: 20, decay: {after: 30d, points_per_day: 1}}
          - {when: "days_since(last_activity_at) > 30", points: -15}
        caps: {min: 0, max: 100}
        grades: {A: 60, B: 30, C: 10, D: 0}
    """,
}
NOW = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
PAGE = 5000


def _workspace(folder: Path) -> Path:
    for name, text in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return folder


def _fill(rt: Runtime, n: int) -> None:
    """``n`` unscored leads by Core executemany (fast; not what is measured)."""
    from decimal import Decimal

    table = rt.state.plan("lead").table
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    with rt.engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            for lo in range(0, n, 50_000):
                conn.execute(insert(table), [
                    {"version": 1, "created_at": start, "updated_at": start, "company": f"c{i}",
                     "industry": INDUSTRIES[i % 6], "demand": ("clear", "vague", "none")[i % 3],
                     "source": SOURCES[i % 4], "budget": Decimal(i % 2_000_000), "budget_currency": "CNY",
                     "opened_email": i % 2 == 0, "last_activity_at": NOW - dt.timedelta(days=i % 90)}
                    for i in range(lo, min(n, lo + 50_000))])


def _clear_scores(rt: Runtime) -> None:
    table = rt.state.plan("lead").table
    with rt.engine.begin() as conn:
        conn.execute(update(table).values(score=None, grade=None))


def _settle(rt: Runtime) -> None:
    """Outside the timings, as after any bulk load: PostgreSQL vacuums (hint bits, dead rows of the last run)
    so both paths start from the same table; both analyse."""
    with rt.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE lead")
        else:
            with conn.begin():
                conn.exec_driver_sql("ANALYZE lead")


def set_based(rt: Runtime) -> tuple[float, int]:
    """Seconds to rescore every lead in one unit of work, and how many scores changed."""
    start = time.perf_counter()
    with rt.unit(Actor.system()) as uow:
        [s] = scorings_of(uow.workspace, "lead")
        result = rescore(uow.conn, uow.schema, s, now=uow.clock.now(), revision_id=uow.state.revision_id)
    return time.perf_counter() - start, result.scores_changed


def row_by_row(rt: Runtime, limit: int) -> tuple[float, int]:
    """Seconds to rescore the first ``limit`` leads in Python, page by page, and how many it changed."""
    start = time.perf_counter()
    changed = 0
    with rt.unit(Actor.system()) as uow:
        plan = uow.state.plan("lead")
        t = plan.table
        [s] = scorings_of(uow.workspace, "lead")
        ctx = eval_context(uow)
        stmt = update(t).where(t.c.id == bindparam("rid")).values(
            score=bindparam("new_score"), grade=bindparam("new_grade"), version=t.c.version + 1)
        last = 0
        while last < limit:
            page = uow.conn.execute(select(t).where(t.c.id > last, t.c.deleted_at.is_(None)).order_by(t.c.id)
                                    .limit(min(PAGE, limit - last))).all()
            if not page:
                break
            for row in page:  # row by row: score in Python, then this row's UPDATE and its audit rows
                record = rows.read(plan.readers, row._mapping)
                outcome = score(s, record, ctx)
                if (outcome.total, outcome.grade) != (record["score"], record["grade"]):
                    uow.conn.execute(stmt, {"rid": row.id, "new_score": outcome.total, "new_grade": outcome.grade})
                    journal.write(uow, uow.clock.now(), [
                        ("lead", row.id, "rescore", None, {"score": record["score"], "grade": record["grade"]},
                         {"score": outcome.total, "grade": outcome.grade})])
                    changed += 1
            last = page[-1].id
    return time.perf_counter() - start, changed


def measure(url: str, label: str, n: int, sample: int, folder: Path) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        apply(engine, compile_folder(_workspace(folder))[0], author="bench", message="bench")
    finally:
        engine.dispose()
    rt = Runtime.open(url, clock=FixedClock(NOW))
    try:
        _fill(rt, n)
        _settle(rt)
        sql_s, sql_changed = set_based(rt)
        _clear_scores(rt)
        _settle(rt)
        py_s, py_changed = row_by_row(rt, sample)
        assert sql_changed == n and py_changed == sample, (sql_changed, py_changed)
        py_scaled = py_s * n / sample
        return {"name": f"rescore {n:,} leads set-based vs row by row in Python, an UPDATE per row ({label}; "
                         f"the Python path timed on {sample:,} rows and scaled)",
                "value": round(n / sql_s), "unit": "rows/s", "baseline": round(n / py_scaled),
                "ratio": round(py_scaled / sql_s, 1), "target": ">= 20x"}
    finally:
        rt.close()


def _reset_pg(url: str, folder: Path) -> None:
    from engine.runtime.engine_tables import engine_metadata
    from engine.runtime.storage import build_schema

    engine = make_engine(url)
    try:
        build_schema(compile_folder(_workspace(folder))[0], "postgresql").metadata.drop_all(engine)
        engine_metadata.drop_all(engine)
    finally:
        engine.dispose()


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Benchmark rows (see the module docstring)."""
    n, sample = (20_000, 5_000) if quick else (1_000_000, 50_000)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="crm-bench-scoring-") as tmp:
        root = Path(tmp)
        out.append(measure(f"sqlite:///{root / 'bench.db'}", "sqlite", n, sample, root / "ws"))
        pg_url = os.environ.get("CRM_BENCH_PG_URL")
        if pg_url:
            _reset_pg(pg_url, root / "ws")
            try:
                out.append(measure(pg_url, "postgresql", n, sample, root / "ws"))
            finally:
                _reset_pg(pg_url, root / "ws")
    return out


def main(argv: list[str]) -> int:
    for row in run(quick="--quick" in argv):
        print(f"{row['name']}: {row['value']} {row['unit']} (Python {row['baseline']} {row['unit']}, ratio "
              f"{row['ratio']}; target {row['target']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
