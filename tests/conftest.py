"""Shared fixtures: a throwaway PostgreSQL cluster and a fresh database per test.

``pg_url``    (session) URL of the maintenance database of a PostgreSQL cluster
              started for this test session in a temporary folder, on a free
              port of 127.0.0.1; stopped and deleted at the end.
``db_url``    a fresh, empty database URL, once per back end ("sqlite",
              "postgresql"): a file in ``tmp_path`` or a new PostgreSQL database
              (dropped after the test).
``db_engine`` ``engine.runtime.db.make_engine(db_url)``, disposed after the test.

PostgreSQL refuses to run as root, so when the tests run as root the server
binaries run as the ``postgres`` user through ``runuser``.  Without a
PostgreSQL installation the PostgreSQL tests are skipped locally, but fail when
the ``CI`` environment variable is set: CI must never silently skip them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select, text

from engine.dsl.model import Entity, Field, Option, Workspace, frozen_map
from engine.errors import SourceLocation
from engine.runtime.db import make_engine
from engine.runtime.storage import build_schema, to_json_value

PG_BIN_ENV = "CRM_PG_BIN"
PG_USER = "postgres"
#: where the Python processes the tests start keep their bytecode when the environment turns writing it off
PYCACHE = Path(tempfile.gettempdir()) / "crm-tests-pycache"


def pytest_configure(config: pytest.Config) -> None:
    """Let the processes the tests start (``crm`` commands, servers, workers) cache their bytecode.

    With ``PYTHONDONTWRITEBYTECODE`` set, every one of those hundreds of processes compiled the engine's
    modules from source again (about half a second each).  They now write and read compiled modules
    under :data:`PYCACHE` (``PYTHONPYCACHEPREFIX``), outside the source tree; the test processes
    themselves, started before this hook, are unchanged.
    """
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        os.environ.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))


def _find_pg_bin() -> Path | None:
    """The folder holding initdb/pg_ctl: ``$CRM_PG_BIN``, else the newest Debian install, else PATH."""
    env = os.environ.get(PG_BIN_ENV)
    if env:
        return Path(env)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for cand in reversed(candidates):
        if (cand / "pg_ctl").exists():
            return cand
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the postgres user when we are root (pg_ctl refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *cmd]
    return cmd


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


class _Cluster:
    """A PostgreSQL cluster in a temporary folder; ``start`` then ``stop``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="crm-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()

    def start(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.root, user=PG_USER, group=None)
        self.root.chmod(0o700)
        _run([str(self.bin / "initdb"), "-D", str(self.data), "-U", PG_USER, "-A", "trust",
              "-E", "UTF8", "--locale=C", "--no-sync"])
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
              str(self.root / "server.log"), "-w", "-t", "60", "start"])
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def in_ci() -> bool:
    """Whether the ``CI`` environment variable says this is CI (``1``, ``true``, ``yes``; not ``0``/``false``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL cluster's ``postgres`` database (one per session)."""
    bin_dir = _find_pg_bin()
    if bin_dir is None:
        reason = f"PostgreSQL not installed (no pg_ctl; set {PG_BIN_ENV} or apt-get install postgresql)"
        if in_ci():
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason)
    cluster = _Cluster(bin_dir)
    try:
        url = cluster.start()
    except Exception:
        shutil.rmtree(cluster.root, ignore_errors=True)
        raise
    try:
        yield url
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _pg_admin(pg_url: str) -> Iterator[Engine]:
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@contextmanager
def fresh_database(request: pytest.FixtureRequest, backend: str, folder: Path, prefix: str) -> Iterator[str]:
    """A new empty database URL on ``backend`` ("sqlite": a file in ``folder``; "postgresql": a
    database of the session cluster, dropped afterwards)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'{prefix}.db'}"
        return
    admin: Engine = request.getfixturevalue("_pg_admin")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each back end."""
    with fresh_database(request, request.param, tmp_path, "crm_test") as url:
        yield url


@pytest.fixture
def db_engine(db_url: str) -> Iterator[Engine]:
    """An engine on the fresh database, configured by ``make_engine``."""
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- workspace builders
# Plain helpers (import them: ``from tests.conftest import fld, ent, wsp``) so database tests
# can build Workspaces without the YAML compiler.

TEST_LOCATION = SourceLocation("test.yaml", 1, 1)


def fld(name: str, type: str = "string", **kw: Any) -> Field:
    """A Field; ``options=[...]`` may be plain keys."""
    if "options" in kw:
        kw["options"] = tuple(o if isinstance(o, Option) else Option(o) for o in kw["options"])
    if "replace" in kw:
        kw["replace"] = frozen_map(kw["replace"])
    return Field(name=name, type=type, location=TEST_LOCATION, **kw)


def ent(name: str, *fields: Field, retired: tuple[Field, ...] = (), **kw: Any) -> Entity:
    return Entity(name=name, location=TEST_LOCATION, fields=frozen_map({f.name: f for f in fields}),
                  retired=frozen_map({f.name: f for f in retired}), **kw)


def wsp(*entities: Entity, name: str = "acme") -> Workspace:
    """A Workspace whose sources (and content hash) describe its entities."""
    text_ = "\n".join(
        f"entity: {e.name}\n" + "".join(f"  {f.name}: {f!r}\n" for f in e.fields.values()) for e in entities
    )
    sources = {"entities.yaml": text_, "workspace.yaml": f"workspace: {name}\n"}
    digest = hashlib.sha256(repr(sorted(sources.items())).encode()).hexdigest()
    return Workspace(name=name, entities=frozen_map({e.name: e for e in entities}), layers=("test",),
                     sources=frozen_map(sources), content_hash=digest)


def record_values(entity: Entity, values: Mapping[str, Any]) -> dict[str, Any]:
    """Row parameters for an insert into ``entity``'s table: columns as is, JSON fields into ``ext``."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    row: dict[str, Any] = {"version": 1, "created_at": now, "updated_at": now}
    ext: dict[str, Any] = {}
    for name, value in values.items():
        f = entity.fields.get(name) or entity.retired[name]
        if f.storage == "json":
            ext[f.column_name] = to_json_value(f, value)
        else:
            row[f.column_name] = value
    row["ext"] = ext or None
    for f in (*entity.fields.values(), *entity.retired.values()):
        if f.stored and f.storage == "column":
            row.setdefault(f.column_name, None)  # same keys in every row: one executemany
    return row


def insert_rows(engine: Engine, workspace: Workspace, entity: str, rows: list[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (field name -> value) with one Core executemany."""
    schema = build_schema(workspace, engine.dialect.name)
    e = workspace.entities[entity]
    with engine.begin() as conn:
        conn.execute(schema.tables[entity].insert(), [record_values(e, r) for r in rows])


def read_rows(engine: Engine, workspace: Workspace, entity: str, fields: list[str] | None = None
              ) -> dict[int, dict[str, Any]]:
    """id -> {field: value} for every row, whatever each field's storage (retired fields too)."""
    schema = build_schema(workspace, engine.dialect.name)
    e = workspace.entities[entity]
    names = fields if fields is not None else [n for n, f in e.fields.items() if f.stored]
    table = schema.tables[entity]
    exprs = [schema.field_expr(entity, n).label(n) for n in names]
    with engine.connect() as conn:
        result = conn.execute(select(table.c.id, *exprs).order_by(table.c.id))
        return {r.id: {n: r._mapping[n] for n in names} for r in result}


# --------------------------------------------------------------------------- plugins
# A plugin installed for a test the way pip does: a module and its ``*.dist-info`` with an
# ``entry_points.txt`` in a folder on ``sys.path``, so discovery goes through importlib.metadata for real.

Install = Callable[[str, str], None]


@pytest.fixture
def install_plugin(tmp_path: Path) -> Iterator[Install]:
    """``install_plugin(name, source)``: module ``name`` with ``source``, registered as plugin ``name``."""
    root = tmp_path / "site"
    root.mkdir()
    sys.path.insert(0, str(root))
    names: list[str] = []

    def install(name: str, source: str) -> None:
        (root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = root / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", encoding="utf-8")
        (info / "entry_points.txt").write_text(f"[crm_engine.plugins]\n{name} = {name}\n", encoding="utf-8")
        names.append(name)
        importlib.invalidate_caches()

    try:
        yield install
    finally:
        sys.path.remove(str(root))
        for name in names:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
