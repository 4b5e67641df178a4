"""The running engine: a database, the active compiled configuration, and units of work.

:class:`Runtime` holds the SQLAlchemy engine, the clock, the registered write
steps and event listeners, and one immutable :class:`State` — the active
revision's workspace, its bound schema and the compiled per-entity plans.
A new revision is picked up by :meth:`Runtime.refresh`, which swaps the State
with one attribute assignment, so a request sees either the old or the new
configuration, never a mix.

:meth:`Runtime.unit` opens a :class:`UnitOfWork`: one transaction, one actor,
one State; domain events appended during the unit are delivered to the
listeners after a successful commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.dsl.model import Workspace
from engine.errors import DatabaseNotReady, EngineError
from engine.runtime.context import Actor, Clock, SystemClock
from engine.runtime.db import make_engine
from engine.runtime.engine_tables import crm_revisions
from engine.runtime.records.plan import EntityPlan, build_plans
from engine.runtime.records.steps import DomainEvent, StepRegistry
from engine.runtime.security import Guard, visible_workspace
from engine.runtime.storage import Schema, build_schema

log = logging.getLogger(__name__)
Listener = Callable[[DomainEvent], None]
FILTER_CACHE_SIZE = 512


@dataclass(frozen=True, eq=False)
class State:
    """The compiled configuration of one revision, bound to one SQL dialect (immutable once built).

    ``caches`` holds derived, revision-scoped memo tables (compiled user
    filters, per-role visible workspaces); they die with the State.
    """

    workspace: Workspace
    schema: Schema
    plans: Mapping[str, EntityPlan]
    revision_id: int | None
    caches: dict[str, OrderedDict[Any, Any]] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, workspace: Workspace, dialect: str, revision_id: int | None) -> State:
        """Bind ``workspace`` and compile every entity's plan (pure; no database)."""
        schema = build_schema(workspace, dialect)
        return cls(workspace, schema, build_plans(workspace, schema), revision_id)

    def plan(self, entity: str) -> EntityPlan:
        return self.plans[entity]

    def memo(self, cache: str, key: Any, make: Callable[[], Any]) -> Any:
        """A bounded memo (LRU) of ``make()`` under ``key`` for the life of this revision."""
        value = self.cached(cache, key)
        if value is None:
            value = make()
            self.store(cache, key, value)
        return value

    def cached(self, cache: str, key: Any) -> Any:
        """The value stored under ``key`` in memo table ``cache`` (None when absent)."""
        with self.lock:
            table = self.caches.get(cache)
            if table is None or key not in table:
                return None
            table.move_to_end(key)
            return table[key]

    def store(self, cache: str, key: Any, value: Any) -> None:
        """Remember ``value`` under ``key`` in the bounded memo table ``cache``."""
        with self.lock:
            table = self.caches.setdefault(cache, OrderedDict())
            table[key] = value
            if len(table) > FILTER_CACHE_SIZE:
                table.popitem(last=False)

    def visible(self, hidden: frozenset[tuple[str, str]]) -> Workspace:
        """The workspace as seen by actors for whom ``hidden`` fields do not exist."""
        return self.memo("visible", hidden, lambda: visible_workspace(self.workspace, hidden))


class Runtime:
    """The engine bound to one database (see the module docstring)."""

    def __init__(self, engine: Engine, state: State, *, clock: Clock | None = None,
                 refresh_interval: float = 2.0) -> None:
        self.engine = engine
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.steps = StepRegistry()
        self.listeners: list[Listener] = []
        self.refresh_interval = refresh_interval
        self._checked_at = time.monotonic()
        self._refresh_lock = threading.Lock()

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(cls, url: str, clock: Clock | None = None, **kwargs: Any) -> Runtime:
        """A runtime on the database at ``url``, running its active revision.

        Raises DatabaseNotReady (hint: run crm apply) when no revision was applied yet.
        """
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                state = _load_active(conn, engine.dialect.name)
        except Exception:
            engine.dispose()
            raise
        if state is None:
            engine.dispose()
            raise DatabaseNotReady("the database has no applied configuration revision", hint="run crm apply")
        return cls(engine, state, clock=clock, **kwargs)

    @classmethod
    def from_workspace(cls, engine: Engine, workspace: Workspace, *, revision_id: int | None = None,
                       clock: Clock | None = None, **kwargs: Any) -> Runtime:
        """A runtime on an already-migrated ``engine`` running ``workspace`` (tools and tests)."""
        return cls(engine, State.build(workspace, engine.dialect.name, revision_id), clock=clock, **kwargs)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ revisions

    def refresh(self, *, force: bool = False) -> bool:
        """Swap to a newer active revision if there is one; returns True when it swapped.

        Cheap: at most one ``SELECT id`` every ``refresh_interval`` seconds
        unless ``force``; compiling happens only when the revision changed.
        """
        now = time.monotonic()
        if not force and now - self._checked_at < self.refresh_interval:
            return False
        with self._refresh_lock:
            self._checked_at = now
            with self.engine.connect() as conn:
                active_id = conn.execute(select(crm_revisions.c.id).where(crm_revisions.c.active)
                                         .order_by(crm_revisions.c.id.desc()).limit(1)).scalar()
                if active_id is None or active_id == self.state.revision_id:
                    return False
                state = _load_active(conn, self.engine.dialect.name)
            if state is None:
                return False
            self.state = state  # one assignment: requests see the old or the new State, never a mix
            return True

    # ------------------------------------------------------------------ units of work

    @contextmanager
    def unit(self, actor: Actor, *, readonly: bool = False) -> Iterator[UnitOfWork]:
        """One transaction acting as ``actor``; commits on success, rolls back on error.

        ``readonly`` units read without taking SQLite's write lock (and refuse writes).
        Events emitted in the unit reach the listeners after the commit.
        """
        self.refresh()
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=not readonly)
            uow = UnitOfWork(self, self.state, actor, conn, readonly=readonly)
            with conn.begin():
                yield uow
        self._deliver(uow.events)

    def _deliver(self, events: list[DomainEvent]) -> None:
        for event in events:
            for listener in tuple(self.listeners):
                try:
                    listener(event)
                except Exception:  # the data is committed; one failing listener must not stop the others
                    log.exception("event listener %r failed on %s %s#%s", listener, event.kind, event.entity,
                                  event.record_id)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every domain event, after its unit of work committed."""
        self.listeners.append(listener)


class UnitOfWork:
    """One transaction of one actor against one State (see :meth:`Runtime.unit`)."""

    def __init__(self, runtime: Runtime, state: State, actor: Actor, conn: Connection, *,
                 readonly: bool = False) -> None:
        self.runtime = runtime
        self.state = state
        self.actor = actor
        self.conn = conn
        self.readonly = readonly
        self.events: list[DomainEvent] = []
        self._guard: Guard | None = None

    @property
    def clock(self) -> Clock:
        return self.runtime.clock

    @property
    def workspace(self) -> Workspace:
        return self.state.workspace

    @property
    def schema(self) -> Schema:
        return self.state.schema

    @property
    def guard(self) -> Guard:
        """The security checks for this unit's actor."""
        if self._guard is None:
            self._guard = Guard(self.actor, self.state.workspace, self.conn, memo=self.state.memo)
        return self._guard

    def emit(self, event: DomainEvent) -> None:
        """Queue ``event`` for delivery after commit."""
        self.events.append(event)

    def require_writable(self) -> None:
        if self.readonly:
            raise EngineError("this unit of work is read-only", code="readonly_unit",
                              hint="open it with runtime.unit(actor) to write")

    @property
    def records(self) -> Any:
        """A :class:`~engine.runtime.records.RecordService` on this unit."""
        from engine.runtime.records.service import RecordService

        return RecordService(self)


def _load_active(conn: Connection, dialect: str) -> State | None:
    """The State of the active revision, or None when the database has none (or no revisions table)."""
    from sqlalchemy import inspect

    from engine.dsl.compiler import compile_bundle

    if not inspect(conn).has_table("crm_revisions"):
        return None
    rev = _active_revision(conn)
    if rev is None:
        return None
    return State.build(compile_bundle(rev.bundle), dialect, rev.id)


def _active_revision(conn: Connection) -> Any:
    from engine.runtime.revisions import active_revision

    return active_revision(conn)
