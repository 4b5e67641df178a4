"""Benchmark: apply of one new field on a big table, against a raw ``ALTER TABLE ADD COLUMN``.

``run(quick=False)`` returns rows ``{"name", "value", "unit", "baseline", "ratio", "target"}``:
the median seconds of an ``apply`` that adds one field to a 1,000,000-row table
(100,000 with ``quick``), the median seconds of a raw ``ALTER TABLE ... ADD
COLUMN`` on the same table in the same run, and their ratio.  SQLite always;
PostgreSQL too when ``CRM_BENCH_PG_URL`` names an (empty) database.

    .venv/bin/python -m bench.bench_apply [--quick]
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from engine.dsl.model import Entity, Field, Workspace, frozen_map
from engine.errors import SourceLocation
from engine.runtime.db import make_engine
from engine.runtime.schema.apply import apply

ROUNDS = 3
TARGET_S = 1.0
LOC = SourceLocation("bench", 1, 1)


def _workspace(extra: int) -> Workspace:
    """The ``lead`` entity with two base fields and ``extra`` added integer fields."""
    names = ["company", "city", *(f"added_{i}" for i in range(extra))]
    fields = {n: Field(n, "integer" if n.startswith("added") else "string", LOC) for n in names}
    return Workspace(name="bench", entities=frozen_map({"lead": Entity("lead", LOC, fields=frozen_map(fields))}),
                     content_hash=f"bench-{extra}")


def _rows(n: int) -> Iterator[tuple[Any, ...]]:
    now = dt.datetime(2026, 1, 1).isoformat(sep=" ")
    for i in range(n):
        yield (1, now, now, f"company {i}", f"city {i % 100}")


def _fill(engine: Engine, n: int) -> None:
    """``n`` rows, by the fastest path of each database (sqlite3 executemany / COPY)."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cols = "version, created_at, updated_at, company, city"
        if engine.dialect.name == "sqlite":
            cur.execute("BEGIN")
            cur.executemany(f"INSERT INTO lead ({cols}) VALUES (?, ?, ?, ?, ?)", _rows(n))
        else:
            with cur.copy(f"COPY lead ({cols}) FROM STDIN") as copy:
                for row in _rows(n):
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _raw_alter(engine: Engine, i: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE lead ADD COLUMN raw_probe_{i} BIGINT"))


def measure(engine: Engine, rows: int, label: str) -> dict[str, Any]:
    """Create the table through apply, fill it, then time raw ALTERs and applies of one new field."""
    apply(engine, _workspace(0), author="bench", message="create")
    _fill(engine, rows)
    baseline = statistics.median(_timed(lambda i=i: _raw_alter(engine, i)) for i in range(ROUNDS))
    value = statistics.median(
        _timed(lambda i=i: apply(engine, _workspace(i + 1), author="bench", message=f"field {i}"))
        for i in range(ROUNDS)
    )
    return {"name": f"apply one new field, {rows:,} rows ({label})", "value": round(value, 4), "unit": "s",
            "baseline": round(baseline, 4), "ratio": round(value / baseline, 1) if baseline else None,
            "target": f"< {TARGET_S:g} s"}


@contextmanager
def _sqlite_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            yield engine
        finally:
            engine.dispose()


def _reset_pg(engine: Engine) -> None:
    """The scratch database without the bench's table and the engine's own tables (a later run starts new)."""
    from engine.runtime.engine_tables import engine_metadata

    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS lead CASCADE"))
        engine_metadata.drop_all(conn)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Benchmark rows (see module docstring); SQLite always, PostgreSQL when ``CRM_BENCH_PG_URL`` is set."""
    rows = 100_000 if quick else 1_000_000
    out = []
    with _sqlite_engine() as engine:
        out.append(measure(engine, rows, "sqlite"))
    pg_url = os.environ.get("CRM_BENCH_PG_URL")
    if pg_url:
        engine = make_engine(pg_url)
        try:
            _reset_pg(engine)
            out.append(measure(engine, rows, "postgresql"))
            _reset_pg(engine)
        finally:
            engine.dispose()
    return out


def main(argv: list[str]) -> int:
    for row in run(quick="--quick" in argv):
        print(f"{row['name']}: {row['value']} {row['unit']} (raw ALTER {row['baseline']} s, "
              f"x{row['ratio']}; target {row['target']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
