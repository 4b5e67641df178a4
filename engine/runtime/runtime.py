"""The running engine: a database, the active compiled configuration, and units of work.

:class:`Runtime` holds the SQLAlchemy engine, the clock, the registered write
steps and event listeners, and one immutable :class:`State` — the active
revision's workspace, its bound schema and the compiled per-entity plans.

:meth:`Runtime.unit` opens a :class:`UnitOfWork`: one transaction, one actor,
one State; domain events appended during the unit are delivered to the
listeners after a successful commit.  A unit starts by reading the active
revision marker inside its transaction (:mod:`engine.runtime.markers`) and
runs against exactly that revision: when another process applied a new one,
the unit compiles it and swaps the runtime's State with one attribute
assignment, so a request sees either the old or the new configuration, never
a mix, and a write is never validated against a revision that is no longer
active when it commits.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from engine.dsl.model import Workspace

if TYPE_CHECKING:
    from engine.plugins import PluginHost
from engine.errors import DatabaseNotReady, EngineError, QueryTimeout
from engine.runtime import crypto, markers
from engine.runtime.context import Actor, Clock, SystemClock
from engine.runtime.db import is_timeout, make_engine, require_file, set_deadline
from engine.runtime.jobs import outbox, queue
from engine.runtime.records.steps import DomainEvent, StepRegistry
from engine.runtime.records.write_plan import EntityPlan, build_plans
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
    #: the plugin manager of this revision (steps, event handlers, job kinds, actions)
    host: PluginHost = field(repr=False)
    #: the plugins' write steps for this revision (the runtime's own registry adds to them)
    plugin_steps: tuple[Any, ...] = ()
    #: the plugins' durable event handlers for this revision (events they want go to crm_outbox)
    event_handlers: tuple[Any, ...] = ()
    #: the plugins' read masks for this revision, by name (:mod:`engine.runtime.records.masking`)
    read_masks: tuple[Any, ...] = ()
    #: entity -> {former field name: current name}: renamed fields, so history reads show old entries
    #: under the field's current name
    renames: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    caches: dict[str, OrderedDict[Any, Any]] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, workspace: Workspace, dialect: str, revision_id: int | None, *,
              host: PluginHost | None = None, renames: Mapping[str, Mapping[str, str]] | None = None) -> State:
        """Bind ``workspace`` and compile every entity's plan (pure; no database).

        ``host`` is the plugin manager the workspace was compiled with (its
        write steps, handlers and job kinds serve this revision); default: the
        built-in plugin only.
        """
        from engine.plugins import PluginHost

        crypto.require_keys(workspace)  # every server, worker and command that opens a runtime
        schema = build_schema(workspace, dialect)
        host = host or PluginHost()
        return cls(workspace, schema, build_plans(workspace, schema), revision_id, host,
                   tuple(host.write_steps(workspace)), tuple(host.event_handlers(workspace)),
                   tuple(host.read_masks(workspace)), renames or {})

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
    """The engine bound to one database (see the module docstring).

    ``statement_timeout`` (seconds, None: unbounded) bounds the work of every
    unit of work: on PostgreSQL each statement (``statement_timeout``), on
    SQLite the whole unit (a progress handler); a unit that runs over raises
    :class:`~engine.errors.QueryTimeout`.
    """

    def __init__(self, engine: Engine, state: State, *, clock: Clock | None = None,
                 statement_timeout: float | None = None) -> None:
        self.engine = engine
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.steps = StepRegistry()
        self.listeners: list[Listener] = []
        self.statement_timeout = statement_timeout
        self._refresh_lock = threading.Lock()

    # ------------------------------------------------------------------ construction

    @classmethod
    def open(cls, url: str, clock: Clock | None = None, **kwargs: Any) -> Runtime:
        """A runtime on the database at ``url``, running its active revision.

        Raises DatabaseNotReady (hint: run crm apply) when no revision was applied yet.
        """
        require_file(url)
        engine = make_engine(url)
        try:
            _upgrade_engine_tables(engine)
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
        """A runtime on an already-migrated ``engine`` running ``workspace`` (tools and tests).

        With ``revision_id`` None the runtime keeps ``workspace`` whatever revision the database has.
        """
        return cls(engine, State.build(workspace, engine.dialect.name, revision_id), clock=clock, **kwargs)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ revisions

    def refresh(self, *, force: bool = False) -> bool:
        """Swap to the database's active revision if it is another one; True when it swapped.

        Units of work do this themselves when they start (see :meth:`unit`);
        this is for callers that read ``runtime.state`` outside a unit.
        ``force`` is accepted for compatibility: the check is always made.
        """
        with self.engine.connect() as conn:
            before = self.state
            return self._state_at(conn, markers.read(conn).revision) is not before

    def _state_at(self, conn: Connection, revision: int | None) -> State:
        """The State of ``revision`` (the one the unit's transaction sees), swapping to it when it is new."""
        state = self.state
        if revision is None or state.revision_id is None or revision == state.revision_id:
            return state
        with self._refresh_lock:  # one thread compiles; the others wait and take its State
            state = self.state
            if revision != state.revision_id:
                state = _load_revision(conn, self.engine.dialect.name, revision)
                self.state = state  # one assignment: requests see the old or the new State, never a mix
        return state

    # ------------------------------------------------------------------ units of work

    @contextmanager
    def unit(self, actor: Actor | Principal, *, readonly: bool = False) -> Iterator[UnitOfWork]:
        """One transaction acting as ``actor``; commits on success, rolls back on error.

        The unit first passes the gate (:func:`engine.runtime.markers.gate`):
        it runs against the revision active when it starts, and no apply can
        commit until it ends, so every write is validated against the
        revision active when it commits.  ``actor`` may be a
        :class:`Principal` that resolves to an actor once the markers are
        known (API tokens).  ``readonly`` units read without taking SQLite's
        write lock (and refuse writes).  Events emitted in the unit reach the
        listeners after the commit.
        """
        with self.engine.connect() as conn:
            conn.execution_options(sqlite_immediate=not readonly)
            with conn.begin():
                marks = markers.gate(conn, timeout=self.statement_timeout)
                state = self._state_at(conn, marks.revision)
                who = actor if isinstance(actor, Actor) else actor.actor_for(conn, marks, state)
                uow = UnitOfWork(self, state, who, conn, readonly=readonly, markers=marks)
                try:
                    yield uow
                    if uow.events and state.event_handlers:  # durable: committed with the change, or not at all
                        sealed = state.memo("sealed_fields", "all", lambda: crypto.encrypted_fields(state.workspace))
                        outbox.store(conn, uow.events, state.event_handlers, now=self.clock.now(), sealed=sealed)
                except DBAPIError as e:
                    raise _translated(e, self.statement_timeout) from e
                finally:
                    set_deadline(conn, None)
        for done in uow.committed:
            done()
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


class Principal(Protocol):
    """Who a unit of work acts for, known only once the unit has read the markers (e.g. an API token).

    :meth:`actor_for` runs inside the unit's transaction: it may look the
    principal up on ``conn`` (when ``markers.auth`` says cached answers are
    stale) and raises :class:`~engine.errors.AuthenticationRequired` when it
    no longer stands for an active user.
    """

    def actor_for(self, conn: Connection, marks: markers.Markers, state: State) -> Actor:
        ...


def _translated(error: DBAPIError, timeout: float | None) -> Exception:
    """A statement stopped by the unit's time limit as QueryTimeout; any other database error unchanged."""
    if is_timeout(error):
        limit = f"{timeout:g} s" if timeout else "its time limit"
        return QueryTimeout(f"the request was stopped after {limit}: it needs more work than one request may do",
                            hint="narrow the filter (fewer conditions, no count=true over many rows) and retry",
                            details={"limit_seconds": timeout})
    return error


class UnitOfWork:
    """One transaction of one actor against one State (see :meth:`Runtime.unit`)."""

    def __init__(self, runtime: Runtime, state: State, actor: Actor, conn: Connection, *,
                 readonly: bool = False, markers: markers.Markers | None = None) -> None:
        self.runtime = runtime
        self.state = state
        self.actor = actor
        self.conn = conn
        self.readonly = readonly
        self.markers = markers
        self.events: list[DomainEvent] = []
        #: entity -> ids of live records the actor was found able to see (references checked once per unit);
        #: the actor is an active user (just authenticated), so owning a record needs no lookup
        self.visible_ids: dict[str, set[int]] = {"crm_users": {actor.user_id}} if actor.user_id is not None else {}
        #: (entity, record id) -> facts the unit's write steps add about a record written in it, returned by
        #: the API beside the record (e.g. ``_duplicates``, the matches of a ``warn`` dedupe rule)
        self.notes: dict[tuple[str, int], dict[str, Any]] = {}
        self._guard: Guard | None = None
        self._system_guard: Guard | None = None
        self._elevated = 0
        #: what write steps carry from ``before_write`` to ``after_write`` within this unit, by step name
        #: (assignment keeps the decision it made for a record until the record has its id)
        self.scratch: dict[str, Any] = {}
        #: called, in order, once the unit's transaction committed (never after a rollback)
        self.committed: list[Callable[[], None]] = []

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
        """The security checks for this unit's actor (the system's inside :meth:`elevated`)."""
        if self._elevated:
            if self._system_guard is None:
                self._system_guard = Guard(Actor.system(), self.state.workspace, self.conn, memo=self.state.memo)
            return self._system_guard
        if self._guard is None:
            self._guard = Guard(self.actor, self.state.workspace, self.conn, memo=self.state.memo)
        return self._guard

    @contextmanager
    def elevated(self) -> Iterator[UnitOfWork]:
        """Record writes a feature's own rules have already allowed, made with the system's permissions.

        A pool claim is allowed by the pool's membership and limits, not by the claimant's row scope (an
        unclaimed lead has no owner the rep could match); an activity stamps ``last_activity_at`` on a
        parent the author may not update.  Inside the block the permission checks pass as the system's;
        validation rules, steps and audit run as always, and the audit rows and stamps still name the
        unit's actor.  Callers check their own rule first, and keep the block to the write itself.
        """
        self._elevated += 1
        seen, self.visible_ids = self.visible_ids, {}  # what the system may see is not what the actor may
        try:
            yield self
        finally:
            self._elevated -= 1
            self.visible_ids = seen

    def write_steps(self, entity: str) -> tuple[Any, ...]:
        """The write steps for ``entity``: the revision's plugin steps and the runtime's own, in run order
        (resolved once per revision and registry change)."""
        registry = self.runtime.steps
        key = (entity, registry.steps)
        return self.state.memo("write_steps", key,  # type: ignore[no-any-return]
                               lambda: registry.for_entity(entity, self.state.plugin_steps))

    def enqueue(self, kind: str, payload: Mapping[str, Any], *, run_at: Any = None,
                dedupe_key: str | None = None) -> bool:
        """Queue a job in this unit's transaction (runs once committed); False if ``dedupe_key`` is queued."""
        self.require_writable()
        return queue.enqueue(self.conn, kind, payload, now=self.clock.now(), run_at=run_at, dedupe_key=dedupe_key)

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


def _upgrade_engine_tables(engine: Engine) -> None:
    """Bring the engine tables of a database last applied by an older engine up to date (under the apply lock)."""
    from sqlalchemy import inspect

    from engine.runtime import engine_tables

    with engine.connect() as conn:
        if not inspect(conn).has_table("crm_revisions"):
            return
        if engine_tables.check_version(conn) == engine_tables.ENGINE_SCHEMA_VERSION:
            return
    with engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            markers.lock_exclusive(conn)
            engine_tables.upgrade(conn)
            markers.install(conn)


def _load_active(conn: Connection, dialect: str) -> State | None:
    """The State of the active revision, or None when the database has none (or no revisions table)."""
    from sqlalchemy import inspect

    if not inspect(conn).has_table("crm_revisions"):
        return None
    revision = markers.read(conn).revision
    return _load_revision(conn, dialect, revision) if revision is not None else None


def _load_revision(conn: Connection, dialect: str, revision_id: int) -> State:
    """The State of revision ``revision_id``, compiled from its bundle."""
    from engine.plugins import compile_bundle
    from engine.runtime.schema.revisions import get_revision
    from engine.runtime.schema.snapshot import renames_of, state_from_snapshot

    bundle = get_revision(conn, revision_id).bundle
    workspace, host = compile_bundle(bundle)
    renames = renames_of(state_from_snapshot(bundle["schema"])) if bundle.get("schema") else {}
    return State.build(workspace, dialect, revision_id, host=host, renames=renames)
