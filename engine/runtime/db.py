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

from engine.errors import DatabaseNotReady, DatabaseReadOnly, DatabaseUnavailable, DriverMissing, EngineError

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
        try:
            return create_engine(url, **kwargs)
        except ImportError as e:  # the URL names a driver that is not installed
            driver = parsed.get_driver_name()
            package = DRIVER_PACKAGES.get(driver, getattr(e, "name", None) or driver)
            raise DriverMissing(
                f"the {driver} driver for {parsed.get_backend_name()} is not installed ({e})",
                hint=f"pip install '{package}', or use a postgresql+psycopg:// URL (psycopg is installed with "
                     "the engine)",
            ) from e
    raise DatabaseNotReady(
        f"database {parsed.get_backend_name()!r} is not supported",
        hint="use SQLite (default) or PostgreSQL",
    )


#: pip packages of the PostgreSQL drivers SQLAlchemy knows, by the driver name in the URL
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000",
                   "asyncpg": "asyncpg", "psycopg2cffi": "psycopg2cffi"}


def require_file(url: str) -> None:
    """DatabaseNotReady when ``url`` is a SQLite file that does not exist (rather than creating an empty one)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise DatabaseNotReady(
            f"there is no database file at {path}",
            code="database_missing",
            hint="create it with 'crm apply DIR', or point --db / CRM_DATABASE_URL at the right database",
        )


def _where(url: str) -> str:
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        return f"the SQLite file {path}" if path is not None else "the in-memory SQLite database"
    return f"PostgreSQL at {parsed.host or 'localhost'}:{parsed.port or 5432}, database {parsed.database!r}"


def describe_error(error: BaseException, url: str) -> EngineError | None:
    """The user-fixable problem behind a driver error (cannot connect, read-only file, ...), or None.

    None means the error is not about reaching or writing the database: the
    caller treats it as an engine bug.
    """
    if not isinstance(error, DBAPIError):
        return None
    orig = getattr(error, "orig", None)
    text = str(orig or error).strip()
    low = text.lower()
    first = text.splitlines()[0] if text else type(error).__name__
    where = _where(url)
    if "readonly" in low or "read-only" in low or getattr(orig, "sqlstate", None) == "25006":
        return DatabaseReadOnly(
            f"{where} is read-only: {first}",
            hint="give this user write access to the database file and its folder (SQLite also writes -wal "
                 "and -shm files next to it), or use a writable database",
        )
    if "unable to open database file" in low:
        return DatabaseUnavailable(
            f"cannot open {where}: {first}",
            hint="check that the folder exists and this user may read and write it",
        )
    if "password authentication failed" in low or "no password supplied" in low:
        return DatabaseUnavailable(f"{where} refused the login: {first}",
                                   hint="check the user name and password in the URL")
    if "does not exist" in low and "database" in low:
        return DatabaseUnavailable(f"{where}: {first}",
                                   hint="create the database first (createdb NAME) or fix its name in the URL")
    if isinstance(error, OperationalError) and ("connection" in low or "could not translate host" in low
                                                or "name or service not known" in low or "timeout" in low):
        return DatabaseUnavailable(
            f"cannot connect to {where}: {first}",
            hint="is the server running and reachable? check the host, port and database in --db / "
                 "CRM_DATABASE_URL",
        )
    if "database is locked" in low:
        return DatabaseUnavailable(f"{where} is locked by another process: {first}",
                                   hint="wait for the other apply or writer to finish, then run again")
    return None


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


def sql_dialect(backend: str) -> Any:
    """The SQLAlchemy dialect object for ``backend`` ("postgresql" with psycopg 3, else SQLite), to compile
    SQL without a connection."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.psycopg.dialect() if backend == "postgresql" else sqlite.dialect()


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ensure_pg_functions(conn: Any) -> None:
    """Create the IMMUTABLE helper functions JSON expression indexes use (PostgreSQL)."""
    from engine.runtime.storage import PG_FUNCTIONS

    if conn.dialect.name == "postgresql":
        for stmt in PG_FUNCTIONS:
            conn.execute(text(stmt))


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names (``sqlite:///x.db`` or the URI form ``sqlite:///file:x.db?uri=true``);
    None for PostgreSQL and in-memory databases."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    database = parsed.database
    if database.startswith("file:") and str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        database = database[len("file:"):].split("?", 1)[0]
        if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
            return None
    return Path(database)
