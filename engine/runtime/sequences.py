"""Naming series for ``auto_number`` fields (``Q-{YYYY}-{#####}`` -> ``Q-2026-00042``).

Counters live in ``crm_sequences`` (one row per series and period, e.g.
``quote.number:2026``).  A number is taken with one atomic upsert
(``INSERT ... ON CONFLICT DO UPDATE SET value = value + n RETURNING value``):
concurrent writers serialise on the row lock (PostgreSQL) or the write lock
(SQLite), so no number is handed out twice.  A rolled-back unit of work gives
its numbers back (the counter is part of the same transaction).
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from engine.runtime.engine_tables import crm_sequences

_TOKEN = re.compile(r"\{(YYYY|YY|MM|DD|#+)\}")


def series_key(name: str, pattern: str, at: dt.datetime) -> str:
    """The counter key: ``name`` plus the date parts the pattern shows (numbers restart per period)."""
    parts = [_date_part(tok, at) for tok in _TOKEN.findall(pattern) if not tok.startswith("#")]
    return ":".join([name, *parts]) if parts else name


def format_number(pattern: str, at: dt.datetime, value: int) -> str:
    """``pattern`` with its date tokens and counter filled in."""
    def fill(m: re.Match[str]) -> str:
        tok = m.group(1)
        return str(value).zfill(len(tok)) if tok.startswith("#") else _date_part(tok, at)

    return _TOKEN.sub(fill, pattern)


def _date_part(tok: str, at: dt.datetime) -> str:
    return {"YYYY": f"{at.year:04d}", "YY": f"{at.year % 100:02d}", "MM": f"{at.month:02d}",
            "DD": f"{at.day:02d}"}[tok]


def take(conn: Connection, key: str, count: int = 1) -> int:
    """Reserve ``count`` consecutive values of counter ``key``; returns the first one."""
    if count < 1:
        raise ValueError("count must be at least 1")
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = dialect_insert(crm_sequences).values(name=key, value=count)
    stmt = stmt.on_conflict_do_update(index_elements=["name"],
                                      set_={"value": crm_sequences.c.value + count})
    last = conn.execute(stmt.returning(crm_sequences.c.value)).scalar_one()
    return int(last) - count + 1


def next_numbers(conn: Connection, name: str, pattern: str, at: dt.datetime, count: int = 1) -> list[str]:
    """``count`` new formatted numbers of the series ``name`` (e.g. ``quote.number``)."""
    first = take(conn, series_key(name, pattern, at), count)
    return [format_number(pattern, at, first + i) for i in range(count)]
