"""Database markers every unit of work reads first: the active revision and the authentication epoch.

Two rows of ``crm_meta``:

* ``active_revision`` -- the id of the active configuration revision, set by
  the apply that activates it, in the apply's transaction;
* ``auth_epoch`` -- a random value replaced whenever something that
  authentication depends on changes (a token revoked, a user deactivated),
  so a process holding authenticated tokens in memory learns on its next
  unit of work that it must look them up again.

Reading both is one primary-key lookup.  :func:`gate` is how a unit of work
starts: on PostgreSQL it first takes the *shared* side of the apply lock
(an apply takes the exclusive side for its whole transaction), so a unit
never runs against a schema that changes under it and an apply waits for the
units in flight; then it reads the markers, which are then exactly the
revision the unit's statements run against until it commits.  On SQLite the
write lock (``BEGIN IMMEDIATE``) serialises writers with an apply, and a
reader's snapshot starts with the marker read itself.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, inspect, select, text, update

from engine.runtime.db import set_deadline
from engine.runtime.engine_tables import crm_meta, crm_revisions

#: Key of the PostgreSQL advisory lock: exclusive for an apply, shared for every unit of work.
APPLY_LOCK_KEY = 7_310_455_201
REVISION_KEY = "active_revision"
AUTH_KEY = "auth_epoch"

_READ_SQL = f"SELECT key, value FROM crm_meta WHERE key IN ('{REVISION_KEY}', '{AUTH_KEY}')"
_ACTIVE = select(crm_revisions.c.id).where(crm_revisions.c.active.is_(True)).order_by(
    crm_revisions.c.id.desc()).limit(1)
#: PostgreSQL: the gate in one round trip.  PL/pgSQL takes a fresh snapshot for each statement, so the
#: markers are read *after* the lock is granted (an apply that held it has committed by then).
GATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION crm_gate(lock_key bigint, timeout_ms text)
RETURNS TABLE(key text, value text) LANGUAGE plpgsql VOLATILE AS $gate$
BEGIN
  PERFORM pg_advisory_xact_lock_shared(lock_key);
  IF timeout_ms IS NOT NULL THEN
    PERFORM set_config('statement_timeout', timeout_ms, true);
  END IF;
  RETURN QUERY SELECT m.key::text, m.value::text FROM crm_meta m WHERE m.key IN ('{REVISION_KEY}', '{AUTH_KEY}');
END
$gate$
"""
_GATE_SQL = "SELECT key, value FROM crm_gate(%s, %s)"
_SEEN_REVISION = "crm_seen_revision"


@dataclass(frozen=True, slots=True)
class Markers:
    """The markers as one unit of work read them."""

    revision: int | None
    auth: str


def read(conn: Connection) -> Markers:
    """The current markers (the active revision is looked up in ``crm_revisions`` if its marker is missing)."""
    return _markers(conn, _fetch(conn, _READ_SQL))


def _fetch(conn: Connection, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of ``sql`` through the driver's cursor: this runs for every unit of work, and SQLAlchemy's
    statement machinery would cost more than the lookup itself (fixed text, driver parameters)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _markers(conn: Connection, rows: list[Any]) -> Markers:
    values = dict(rows)
    raw = values.get(REVISION_KEY)
    revision = int(raw) if raw is not None else _active_id(conn)
    return Markers(revision, values.get(AUTH_KEY, ""))


def _active_id(conn: Connection) -> int | None:
    """The active revision of a database applied before the marker existed (or None)."""
    if not inspect(conn).has_table(crm_revisions.name):
        return None
    found = conn.execute(_ACTIVE).scalar()
    return int(found) if found is not None else None


def gate(conn: Connection, *, timeout: float | None = None) -> Markers:
    """Start a unit of work on ``conn`` (inside its transaction); the markers it runs under.

    PostgreSQL: the shared apply lock, ``SET LOCAL statement_timeout`` and
    the marker read in one round trip (:data:`GATE_FUNCTION`); a connection
    that sees a new revision then drops its prepared statements, whose
    result types may have changed ("cached plan must not change result
    type").  SQLite: the unit's deadline (``timeout`` seconds from now, see
    :func:`engine.runtime.db.set_deadline`), then the marker read, which
    also starts a reader's snapshot.
    """
    if conn.dialect.name != "postgresql":
        set_deadline(conn, time.monotonic() + timeout if timeout else None)
        return read(conn)
    limit = str(int(timeout * 1000)) if timeout else None
    marks = _markers(conn, _fetch(conn, _GATE_SQL, (APPLY_LOCK_KEY, limit)))
    seen = conn.info.get(_SEEN_REVISION)
    if seen is not None and seen != marks.revision:
        # psycopg forgets its own statement cache when it sees DEALLOCATE ALL run, but only for a
        # statement text it has not counted before: hence the comment naming the change
        conn.exec_driver_sql(f"DEALLOCATE ALL /* revision {seen} -> {marks.revision} */")
    conn.info[_SEEN_REVISION] = marks.revision
    return marks


def install(conn: Connection) -> None:
    """Create the PostgreSQL gate function (idempotent; run with the engine tables' upgrade)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(GATE_FUNCTION)


def lock_exclusive(conn: Connection) -> None:
    """PostgreSQL: the exclusive apply lock until the transaction ends (waits for units in flight)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPLY_LOCK_KEY})


def set_revision(conn: Connection, revision_id: int) -> None:
    """Mark ``revision_id`` active (in the apply's transaction)."""
    _put(conn, REVISION_KEY, str(int(revision_id)))


def bump_auth(conn: Connection) -> None:
    """A new authentication epoch: every process looks its cached tokens up again."""
    _put(conn, AUTH_KEY, secrets.token_hex(8))


def _put(conn: Connection, key: str, value: str) -> None:
    done = conn.execute(update(crm_meta).where(crm_meta.c.key == key).values(value=value)).rowcount
    if not done:
        conn.execute(insert(crm_meta).values(key=key, value=value))
