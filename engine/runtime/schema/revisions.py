"""Revisions: the configurations applied to a database, newest active.

Each row of ``crm_revisions`` holds a *bundle*: the text of every file that
went into the workspace, plus a schema snapshot of the database state the
apply left behind::

    {"format": 1, "workspace": name, "layers": [...], "files": {path: text},
     "schema": {"snapshot_format": 1, "entities": {...}, "retired_entities": {...}}}

Planning the next apply reads the snapshot (:func:`revision_state`); the
files are what ``crm config pull`` writes back (:func:`write_bundle`),
what a rollback recompiles (:func:`rollback_target`) and what drift
detection compares (:func:`detect_drift`).  Bundles are versioned: a
stored bundle is upgraded through :data:`BUNDLE_MIGRATIONS` before use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Connection, inspect, select, update

from engine.dsl.model import Workspace, frozen_map
from engine.errors import PlanError, RevisionNotFound
from engine.runtime import markers
from engine.runtime.engine_tables import crm_revisions
from engine.runtime.schema.snapshot import DbState, snapshot, state_from_snapshot, state_of

BUNDLE_FORMAT = 1
#: format N -> function upgrading a format-N bundle to format N+1.
BUNDLE_MIGRATIONS: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]] = frozen_map()

CompileBundle = Callable[[Mapping[str, Any]], Workspace]
"""Turns a stored bundle back into a compiled Workspace (the real YAML compiler in production)."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One applied configuration."""

    id: int
    parent_id: int | None
    author: str
    message: str
    created_at: dt.datetime
    content_hash: str
    bundle: Mapping[str, Any]
    changes: tuple[Mapping[str, Any], ...]
    active: bool

    @property
    def files(self) -> Mapping[str, str]:
        return self.bundle.get("files", {})


def make_bundle(workspace: Workspace, state: DbState) -> dict[str, Any]:
    """The bundle stored for ``workspace`` once the database holds ``state``."""
    return {
        "format": BUNDLE_FORMAT,
        "workspace": workspace.name,
        "layers": list(workspace.layers),
        "files": dict(workspace.sources),
        "schema": snapshot(state),
    }


def upgrade_bundle(bundle: Mapping[str, Any]) -> dict[str, Any]:
    """``bundle`` migrated to :data:`BUNDLE_FORMAT`; PlanError if it comes from a newer engine."""
    data = dict(bundle)
    version = data.get("format")
    if not isinstance(version, int) or version > BUNDLE_FORMAT:
        raise PlanError(f"revision bundle format {version!r} is not understood (knows 1..{BUNDLE_FORMAT})",
                        code="bundle_format", hint="upgrade the engine to the version that wrote it")
    while data["format"] < BUNDLE_FORMAT:
        data = BUNDLE_MIGRATIONS[data["format"]](data)
    return data


# --------------------------------------------------------------------------- reading


def _has_table(conn: Connection) -> bool:
    return inspect(conn).has_table(crm_revisions.name)


def _from_row(row: Any) -> Revision:
    return Revision(
        id=row.id, parent_id=row.parent_id, author=row.author, message=row.message,
        created_at=row.created_at, content_hash=row.content_hash, bundle=upgrade_bundle(row.bundle),
        changes=tuple(row.changes or ()), active=bool(row.active),
    )


def active_revision(conn: Connection) -> Revision | None:
    """The active revision; None for a database nothing was applied to yet."""
    if not _has_table(conn):
        return None
    row = conn.execute(select(crm_revisions).where(crm_revisions.c.active.is_(True))).first()
    return _from_row(row) if row is not None else None


def list_revisions(conn: Connection) -> list[Revision]:
    """Every revision, newest first."""
    if not _has_table(conn):
        return []
    rows = conn.execute(select(crm_revisions).order_by(crm_revisions.c.id.desc())).all()
    return [_from_row(r) for r in rows]


def get_revision(conn: Connection, revision_id: int) -> Revision:
    """The revision ``revision_id``; RevisionNotFound (with the known ids) if there is none."""
    row = None
    if _has_table(conn):
        row = conn.execute(select(crm_revisions).where(crm_revisions.c.id == revision_id)).first()
    if row is None:
        known = ", ".join(str(r.id) for r in list_revisions(conn)[:10]) or "none"
        raise RevisionNotFound(f"there is no revision {revision_id}", details={"revision": revision_id},
                               hint=f"known revisions (newest first): {known}; see `crm revisions`")
    return _from_row(row)


def revision_state(revision: Revision, compile_bundle: CompileBundle | None = None) -> DbState:
    """The database state ``revision`` left: its schema snapshot, else its recompiled bundle."""
    snap = revision.bundle.get("schema")
    if snap is not None:
        return state_from_snapshot(snap)
    if compile_bundle is None:
        raise PlanError(f"revision {revision.id} has no schema snapshot and no compiler was given",
                        code="snapshot_missing", hint="pass compile_bundle so the bundle can be recompiled")
    return state_of(compile_bundle(revision.bundle))


# --------------------------------------------------------------------------- writing


def record_revision(conn: Connection, *, workspace: Workspace, state: DbState, author: str, message: str,
                    changes: list[dict[str, Any]], now: dt.datetime | None = None) -> int:
    """Insert a revision for ``workspace`` and make it the only active one; its id."""
    parent = active_revision(conn)
    conn.execute(update(crm_revisions).where(crm_revisions.c.active.is_(True)).values(active=False))
    result = conn.execute(crm_revisions.insert().values(
        parent_id=parent.id if parent else None, author=author, message=message,
        created_at=now or dt.datetime.now(dt.UTC), content_hash=workspace.content_hash,
        bundle=make_bundle(workspace, state), changes=changes, active=True,
    ))
    key = result.inserted_primary_key
    assert key is not None
    markers.set_revision(conn, int(key[0]))
    return int(key[0])


def rollback_target(conn: Connection, revision_id: int, compile_bundle: CompileBundle) -> Workspace:
    """The Workspace to apply to roll back to ``revision_id``.

    A rollback is an ordinary apply of the old revision's files, done by the
    caller (``apply(engine, rollback_target(...), message="rollback to N")``):
    it goes through the same plan, so fields added since are retired (their
    data kept), never dropped.
    """
    return compile_bundle(get_revision(conn, revision_id).bundle)


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise PlanError(f"bundle file path {path!r} points outside the target folder", code="unsafe_path",
                        hint="the revision's bundle is damaged; pull another revision")
    return rel


def write_bundle(revision: Revision, directory: Path | str, *, layer: str | None = None) -> list[Path]:
    """Write the revision's files under ``directory``; the paths written.

    With ``layer`` (e.g. ``"workspace"``), only that layer's files, without
    the ``<layer>/`` prefix: the folder is then a workspace again, extending
    the shipped layers (``crm config pull DIR``).
    """
    root = Path(directory)
    prefix = f"{layer}/" if layer is not None else ""
    written = []
    for name, content in sorted(revision.files.items()):
        if not name.startswith(prefix):
            continue
        target = root / _safe_relative(name[len(prefix):])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        written.append(target)
    return written


# --------------------------------------------------------------------------- drift


@dataclass(frozen=True, slots=True)
class Drift:
    """How a folder's configuration differs from the active revision's."""

    database_hash: str | None
    folder_hash: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def in_sync(self) -> bool:
        return self.database_hash == self.folder_hash and not (self.added or self.removed or self.changed)

    def describe(self) -> str:
        if self.in_sync:
            return "in sync: the folder matches the active revision"
        if self.database_hash is None:
            return "nothing applied yet: every file is new"
        parts = [f"+ {p}" for p in self.added] + [f"- {p}" for p in self.removed]
        parts += [f"~ {p}" for p in self.changed]
        return "the folder differs from the active revision:\n" + "\n".join(parts or ["(same files, hash differs)"])


def detect_drift(revision: Revision | None, workspace: Workspace) -> Drift:
    """Compare ``workspace`` (compiled from a folder) with the active ``revision``.

    ``added`` are files only in the folder, ``removed`` only in the revision,
    ``changed`` in both with different text.
    """
    ours = dict(workspace.sources)
    theirs = dict(revision.files) if revision is not None else {}
    return Drift(
        database_hash=revision.content_hash if revision is not None else None,
        folder_hash=workspace.content_hash,
        added=tuple(sorted(set(ours) - set(theirs))),
        removed=tuple(sorted(set(theirs) - set(ours))),
        changed=tuple(sorted(p for p in set(ours) & set(theirs) if ours[p] != theirs[p])),
    )
