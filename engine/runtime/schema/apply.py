"""Apply: make the database hold a new workspace, in one transaction.

``apply(engine, new, author=..., message=...)``:

1. opens one transaction (SQLite: foreign keys off around it, ``BEGIN
   IMMEDIATE`` with transactional DDL, see :mod:`engine.runtime.db`;
   PostgreSQL: the exclusive side of the apply lock, which serialises
   applies and waits for the units of work in flight, see
   :mod:`engine.runtime.markers`);
2. creates the engine tables and the PostgreSQL helper functions if missing;
3. plans against the active revision's schema snapshot (no revision: an
   empty database, every entity table is created);
4. refuses blocked changes (:class:`BlockedChange`) and, without
   ``allow_destructive``, destructive ones (:class:`ConfirmationRequired`);
5. runs each change's DDL (Alembic operations) and data moves;
6. records a new active revision (bundle + schema snapshot + the plan) and
   sets the ``active_revision`` marker, so every unit of work that starts
   after the commit runs against the new revision;
7. runs the plan steps' data changes (``feature_data``: rescoring...), whose
   audit rows name the new revision.

Any failure rolls everything back: the database is exactly as before.
An apply whose plan is empty and whose content hash equals the active
revision's records nothing (``ApplyResult.revision_id`` is the active one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from engine.dsl.model import Workspace
from engine.errors import (
    BlockedChange,
    ConfirmationRequired,
    DatabaseNotReady,
    EngineError,
    PlanChanged,
    PlanError,
)
from engine.runtime import engine_tables, markers
from engine.runtime.db import describe_error, ensure_pg_functions
from engine.runtime.schema import revisions
from engine.runtime.schema.diff import plan_from_state
from engine.runtime.schema.executors import EXECUTORS, ApplyContext, add_deferred_foreign_keys, stamp_audit_revision
from engine.runtime.schema.features import FEATURE_DATA
from engine.runtime.schema.model import Change, Plan, format_plan
from engine.runtime.storage import build_schema
from engine.wording import agreeing, counted


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an apply did: the plan it ran, the revision it recorded, the export files it wrote."""

    plan: Plan
    revision_id: int | None
    applied: bool
    exported: tuple[Path, ...] = ()


def apply(
    engine: Engine,
    new: Workspace,
    *,
    author: str,
    message: str,
    allow_destructive: bool = False,
    purge: bool = False,
    export_dir: Path | str | None = None,
    fail_after: int | None = None,
    compile_bundle: Callable[[Mapping[str, Any]], Workspace] | None = None,
    expect_plan: str | None = None,
) -> ApplyResult:
    """Plan ``new`` against the active revision and apply it in one transaction.

    Raises BlockedChange (nothing applied) if a change is blocked,
    ConfirmationRequired if one is destructive and ``allow_destructive`` is
    False, PlanError if a step fails (rolled back; the message names the
    step).  ``purge`` drops retired fields after exporting them under
    ``export_dir``.  ``compile_bundle`` rebuilds an old revision that has no
    schema snapshot.  ``expect_plan`` is the :meth:`Plan.fingerprint` of the
    plan the user confirmed: if the plan made under the lock differs (someone
    applied in between, or the data changed what is safe), PlanChanged and
    nothing is applied.  ``fail_after`` is a test hook: fail after N DDL steps.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_immediate=True)
        with sqlite_foreign_keys_off(conn), conn.begin():
            result = _apply_in(conn, new, author=author, message=message, allow_destructive=allow_destructive,
                               purge=purge, export_dir=export_dir, fail_after=fail_after,
                               compile_bundle=compile_bundle, expect_plan=expect_plan)
            check_foreign_keys(conn)
            return result


@contextmanager
def sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite: foreign keys off around the apply's transaction, back on afterwards.

    A table rebuild (create new, copy, drop old, rename) must not fire the
    children's ``ON DELETE`` actions when the old table is dropped: deferring
    the checks does not stop the actions, so -- as SQLite's documented
    procedure for schema changes says -- enforcement is switched off *before*
    the transaction begins (the pragma is a no-op inside one) and
    :func:`check_foreign_keys` verifies every reference before the commit.
    The pragma goes to the driver connection directly: through SQLAlchemy it
    would begin the transaction first.  A connection whose pragma cannot be
    restored is discarded, never returned to the pool without enforcement.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        try:
            raw.execute("PRAGMA foreign_keys = ON")
        except Exception:
            conn.invalidate()
            raise


def check_foreign_keys(conn: Connection) -> None:
    """SQLite: refuse to commit an apply that left a reference to a missing row (rolled back)."""
    if conn.dialect.name != "sqlite":
        return
    bad = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if bad:
        sample = ", ".join(f"{r[0]} row {r[1]} -> {r[2]}" for r in bad[:5])
        raise PlanError(f"apply would leave {counted(len(bad), 'row')} referring to missing records ({sample}); "
                        "nothing was changed (rolled back)", code="apply_failed",
                        details={"violations": [list(r) for r in bad[:20]]},
                        hint="this is a bug in the engine's table rebuild: report it with the plan")


def _apply_in(conn: Connection, new: Workspace, *, author: str, message: str, allow_destructive: bool,
              purge: bool, export_dir: Path | str | None, fail_after: int | None,
              compile_bundle: Callable[[Mapping[str, Any]], Workspace] | None,
              expect_plan: str | None) -> ApplyResult:
    _prepare(conn)
    active = revisions.active_revision(conn)
    old_state = revisions.revision_state(active, compile_bundle) if active is not None else None
    if old_state is None:
        _refuse_untracked_tables(conn, new)
    the_plan = plan_from_state(old_state, new, conn, purge=purge, export_dir=export_dir)
    if expect_plan is not None and the_plan.fingerprint(active.id if active else None) != expect_plan:
        raise PlanChanged(
            "the database changed after the plan was shown"
            + (f" (revision {active.id} is active now)" if active else "")
            + "; nothing was applied. The plan as it stands now:\n" + format_plan(the_plan),
            details={"changes": the_plan.to_list()},
            hint="review the plan above and run crm apply again")
    check_allowed(the_plan, allow_destructive=allow_destructive)
    if the_plan.is_empty and active is not None and active.content_hash == new.content_hash:
        return ApplyResult(plan=the_plan, revision_id=active.id, applied=False)
    ctx = _run_changes(conn, the_plan, fail_after)
    rev_id = revisions.record_revision(conn, workspace=new, state=the_plan.result, author=author,
                                       message=message, changes=the_plan.to_list())
    stamp_audit_revision(ctx, rev_id)
    ctx.revision_id = rev_id
    for change in the_plan.changes:
        if change.kind == FEATURE_DATA:
            _run_one(ctx, change)
    return ApplyResult(plan=the_plan, revision_id=rev_id, applied=True, exported=tuple(ctx.exported))


def _prepare(conn: Connection) -> None:
    """The apply lock (PostgreSQL: waits for units of work in flight), engine tables, helper functions."""
    markers.lock_exclusive(conn)
    engine_tables.upgrade(conn)
    markers.install(conn)
    ensure_pg_functions(conn)


def _refuse_untracked_tables(conn: Connection, new: Workspace) -> None:
    existing = set(inspect(conn).get_table_names())
    clash = sorted(name for name in new.entities if name in existing)
    if clash:
        raise DatabaseNotReady(
            f"{'table' if len(clash) == 1 else 'tables'} {', '.join(clash)} already "
            f"{'exists' if len(clash) == 1 else 'exist'} but no revision was ever applied to this database",
            details={"tables": clash},
            hint="apply to an empty database, or drop those tables if their data is not needed",
        )


def check_allowed(the_plan: Plan, *, allow_destructive: bool) -> None:
    """BlockedChange if anything is blocked; ConfirmationRequired for unconfirmed destructive changes."""
    if the_plan.blocked:
        lines = "\n".join(c.line() for c in the_plan.blocked)
        blocked = agreeing(len(the_plan.blocked), "change", "are blocked")
        raise BlockedChange(f"{blocked}; nothing was applied:\n{lines}",
                            details=[c.to_dict() for c in the_plan.blocked],
                            hint="fix the configuration as each line says, then plan again")
    if the_plan.destructive and not allow_destructive:
        lines = "\n".join(c.line() for c in the_plan.destructive)
        raise ConfirmationRequired(
            f"{agreeing(len(the_plan.destructive), 'change', 'are destructive')}; nothing was applied:\n{lines}",
            details=[c.to_dict() for c in the_plan.destructive],
            hint="re-run with --allow-destructive (allow_destructive=True) once you have checked them",
        )


def _run_changes(conn: Connection, the_plan: Plan, fail_after: int | None) -> ApplyContext:
    ops = Operations(MigrationContext.configure(connection=conn))
    schema = build_schema(the_plan.result.as_workspace(the_plan.new.name), conn.dialect.name)
    ctx = ApplyContext(conn=conn, ops=ops, plan=the_plan, result_schema=schema, fail_after=fail_after)
    for change in the_plan.changes:
        if change.kind == FEATURE_DATA:
            continue  # after the revision is recorded (see _apply_in)
        _run_one(ctx, change)
        if change.kind == "create_table" and change is _last_create(the_plan):
            add_deferred_foreign_keys(ctx)
    return ctx


def _last_create(the_plan: Plan) -> Change | None:
    return next((c for c in reversed(the_plan.changes) if c.kind == "create_table"), None)


def _run_one(ctx: ApplyContext, change: Change) -> None:
    try:
        EXECUTORS[change.kind](ctx, change)
    except EngineError:
        raise
    except (SQLAlchemyError, OSError) as e:
        known = describe_error(e, ctx.conn.engine.url.render_as_string(hide_password=True))
        if known is not None:  # the database cannot be written at all: say that, not "check the revision"
            known.message = f"apply failed at '{change.description}': {known.message}; nothing was changed " \
                            "(rolled back)"
            raise known from e
        raise PlanError(
            f"apply failed at '{change.description}': {_first_line(e)}; nothing was changed (rolled back)",
            code="apply_failed", details=change.to_dict(),
            hint="check the database is the one this configuration was applied to (crm revisions)",
        ) from e


def _first_line(e: BaseException) -> str:
    msg = str(getattr(e, "orig", None) or e)
    return msg.splitlines()[0] if msg else type(e).__name__
