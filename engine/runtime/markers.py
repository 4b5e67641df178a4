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
from dataclasses import dataclass

from sqlalchemy import Connection, insert, inspect, select, text, update

from engine.runtime.engine_tables import crm_meta, crm_revisions

#: Key of the PostgreSQL advisory lock: exclusive for an apply, shared for every unit of work.
APPLY_LOCK_KEY = 7_310_455_201
REVISION_KEY = "active_revision"
AUTH_KEY = "auth_epoch"

_READ = select(crm_meta.c.key, crm_meta.c.value).where(crm_meta.c.key.in_([REVISION_KEY, AUTH_KEY]))
_ACTIVE = select(crm_revisions.c.id).where(crm_revisions.c.active.is_(True)).order_by(
    crm_revisions.c.id.desc()).limit(1)
_SHARED_LOCK = text("SELECT pg_advisory_xact_lock_shared(:k)")
_SHARED_LOCK_TIMEOUT = text("SELECT pg_advisory_xact_lock_shared(:k), set_config('statement_timeout', :t, true)")


@dataclass(frozen=True, slots=True)
class Markers:
    """The markers as one unit of work read them."""

    revision: int | None
    auth: str


def read(conn: Connection) -> Markers:
    """The current markers (the active revision is looked up in ``crm_revisions`` if its marker is missing)."""
    values = {key: value for key, value in conn.execute(_READ)}
    raw = values.get(REVISION_KEY)
    revision = int(raw) if raw is not None else _active_id(conn)
    return Markers(revision, values.get(AUTH_KEY, ""))


def _active_id(conn: Connection) -> int | None:
    """The active revision of a database applied before the marker existed (or None)."""
    if not inspect(conn).has_table(crm_revisions.name):
        return None
    found = conn.execute(_ACTIVE).scalar()
    return int(found) if found is not None else None


def gate(conn: Connection, *, statement_timeout_ms: int | None = None) -> Markers:
    """Start a unit of work on ``conn`` (inside its transaction): the shared apply lock, then the markers.

    ``statement_timeout_ms`` bounds every later statement of the transaction
    on PostgreSQL (``SET LOCAL statement_timeout``), in the same round trip
    as the lock.
    """
    if conn.dialect.name == "postgresql":
        if statement_timeout_ms:
            conn.execute(_SHARED_LOCK_TIMEOUT, {"k": APPLY_LOCK_KEY, "t": str(int(statement_timeout_ms))})
        else:
            conn.execute(_SHARED_LOCK, {"k": APPLY_LOCK_KEY})
    return read(conn)


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
