"""Database engines: SQLite (embedded default) and PostgreSQL.

SQLite gets WAL, foreign keys, and *transactional DDL*: the pysqlite driver
normally commits before DDL, so a failed apply would leave half a schema
behind.  Following SQLAlchemy's documented recipe we take over transaction
control (``isolation_level = None`` on connect, an explicit ``BEGIN`` on
begin), which makes DDL and data changes roll back together.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from engine.errors import DatabaseNotReady

DEFAULT_SQLITE_NAME = "crm.db"


def default_url(workspace_dir: Path) -> str:
    """``--db`` if given, else ``CRM_DATABASE_URL``, else a SQLite file in the workspace."""
    env = os.environ.get("CRM_DATABASE_URL")
    if env:
        return env
    return f"sqlite:///{(workspace_dir / DEFAULT_SQLITE_NAME).resolve()}"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An Engine configured the way the engine needs it on either database."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except Exception as e:  # sqlalchemy.exc.ArgumentError
        raise DatabaseNotReady(
            f"cannot understand database URL {url!r}",
            hint="use sqlite:///path/to/file.db or postgresql+psycopg://user:pass@host/dbname",
        ) from e
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    raise DatabaseNotReady(
        f"database {parsed.get_backend_name()!r} is not supported",
        hint="use SQLite (default) or PostgreSQL",
    )


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("timeout", 30)
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (transactional DDL)
        record.info[_DEADLINE] = deadline = _Deadline()
        dbapi_conn.set_progress_handler(deadline.passed, PROGRESS_STEPS)
        cur = dbapi_conn.cursor()
        if make_url(url).database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A unit of work that will write asks for IMMEDIATE (execution option
        # ``sqlite_immediate``): it takes the write lock up front, so two
        # writers queue on busy_timeout instead of failing with "database is
        # locked" half-way.  Readers use a plain deferred BEGIN.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


#: SQLite calls the deadline check every this many virtual-machine steps (a few microseconds of work).
PROGRESS_STEPS = 20_000
_DEADLINE = "crm_deadline"


class _Deadline:
    """The time after which SQLite interrupts the connection's statements (None: never)."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: float | None = None

    def passed(self) -> int:
        """SQLite's progress handler: non-zero stops the running statement ("interrupted")."""
        at = self.at
        return 1 if at is not None and time.monotonic() > at else 0


def set_deadline(conn: Connection, at: float | None) -> None:
    """SQLite: stop statements on ``conn`` once ``time.monotonic()`` passes ``at`` (None: no limit).

    PostgreSQL connections bound their statements with ``statement_timeout``
    instead (see :func:`engine.runtime.markers.gate`); for them this does nothing.
    """
    holder = conn.info.get(_DEADLINE)
    if holder is not None:
        holder.at = at


def is_timeout(error: DBAPIError) -> bool:
    """Whether ``error`` is a statement stopped by a time limit (PostgreSQL's 57014, SQLite's interrupt)."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) == "57014":
        return True
    return isinstance(error, OperationalError) and str(orig) == "interrupted"


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ensure_pg_functions(conn: Any) -> None:
    """Create the IMMUTABLE helper functions JSON expression indexes use (PostgreSQL)."""
    from engine.runtime.storage import PG_FUNCTIONS

    if conn.dialect.name == "postgresql":
        for stmt in PG_FUNCTIONS:
            conn.execute(text(stmt))


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)
