"""The bulk create endpoint against a raw SQLAlchemy Core executemany of the same rows.

``POST /api/v1/records/lead/bulk`` with the shipped manufacturing workspace -- every row coerced and
checked, its duplicate keys stored, scored and graded, routed by the assignment rules (the admin's creates
are), with a ``create`` audit row each -- vs one ``insert(lead)`` executemany of the same values in one
transaction (what a hand-written import does, with none of that).  Best of 3 on each side, interleaved,
in the same run; the rows are distinct (no lead is a duplicate of another).  The target, ``>= 0.1x``, is
the price of the pipeline's per-row steps (dedupe keys, assignment) on top of a bare insert.
``CRM_BENCH_PG_URL`` adds the same row on PostgreSQL (a scratch database, dropped afterwards).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.bench_api import _lead_body, _setup, scratch_pg_database


def bench_bulk_create(client: Any, runtime: Any, token: str, n: int, label: str) -> dict[str, Any]:
    """Rows/s of the bulk endpoint vs Core executemany (best of 3 rounds of ``n`` distinct leads each)."""
    headers = {"Authorization": f"Bearer {token}"}
    table = runtime.state.schema.table("lead")
    api_t, core_t = [], []
    for k in range(3):
        body = [_lead_body(2 * k * n + i) for i in range(n)]
        start = time.perf_counter()
        resp = client.post("/api/v1/records/lead/bulk", json=body, headers=headers)
        api_t.append(time.perf_counter() - start)
        assert resp.status_code == 201, resp.get_json()
        now = dt.datetime.now(dt.UTC)
        rows = [{**_lead_body((2 * k + 1) * n + i), "version": 1, "created_at": now, "updated_at": now}
                for i in range(n)]
        start = time.perf_counter()
        with runtime.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=True)
            with conn.begin():
                conn.execute(insert(table), rows)
        core_t.append(time.perf_counter() - start)
    value, baseline = n / min(api_t), n / min(core_t)
    return {"name": f"api bulk create {n:,} leads (scoring + dedupe + assignment + audit) vs Core executemany "
                    f"({label})", "value": round(value), "unit": "rows/s", "baseline": round(baseline),
            "ratio": round(value / baseline, 3), "target": ">= 0.1x"}


def _measure(folder: Path, n: int, label: str, url: str | None = None) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    runtime, client, token = _setup(folder, url)
    try:
        return bench_bulk_create(client, runtime, token, n, label)
    finally:
        runtime.close()


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The bulk create row on SQLite (and PostgreSQL with ``CRM_BENCH_PG_URL``); quick: 200 rows a round."""
    n = 200 if quick else 1000
    with tempfile.TemporaryDirectory(prefix="crm-bench-bulk-") as tmp:
        rows = [_measure(Path(tmp) / "sqlite", n, "sqlite")]
        pg_url = os.environ.get("CRM_BENCH_PG_URL")
        if pg_url:
            with scratch_pg_database(pg_url) as url:
                rows.append(_measure(Path(tmp) / "pg", n, "postgresql", url))
    return rows


def main(argv: list[str]) -> int:
    """``python -m bench.bench_bulk [--quick]``: print one line per benchmark."""
    for row in run(quick="--quick" in argv):
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
