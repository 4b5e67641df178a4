"""The API's only door into the runtime.

Views never touch SQL or the runtime's internals: they call these functions,
which open a unit of work for the caller and go through the record service
(so permissions, validation, formulas, audit and locking always apply) or
read the caller's effective permissions from the security module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.dsl.model import Entity, Workspace
from engine.errors import AuthenticationRequired, NotFound


class InvalidToken(AuthenticationRequired):
    """A bearer token that is unknown, revoked or malformed."""

    code = "invalid_token"


def refresh(runtime: Any) -> None:
    """Pick up a newly applied revision (cheap when nothing changed)."""
    runtime.refresh()


def workspace(runtime: Any) -> Workspace:
    """The workspace of the runtime's active revision."""
    return runtime.state.workspace


def revision_key(runtime: Any) -> Any:
    """The active revision's id (changes whenever a new revision is applied)."""
    state = runtime.state
    return state.revision_id if state.revision_id is not None else state.workspace.content_hash


def entity(runtime: Any, name: str) -> Entity:
    """The entity called ``name`` or a 404 naming the known ones."""
    ws = workspace(runtime)
    ent = ws.entities.get(name)
    if ent is None:
        raise NotFound(f"there is no entity {name!r}", details={"entity": name},
                       hint="GET /api/v1/meta lists the entities you can use")
    return ent


def authenticate(runtime: Any, token: str) -> Any:
    """The actor a bearer token belongs to, or :class:`InvalidToken`."""
    from engine.runtime import users

    try:
        return users.authenticate_token(runtime, token)
    except AuthenticationRequired as e:
        raise InvalidToken(e.message or "the bearer token is invalid or revoked") from e


@contextmanager
def records(runtime: Any, actor: Any, *, readonly: bool = False) -> Iterator[Any]:
    """A record service inside one unit of work (one transaction) for ``actor``.

    ``readonly`` units (every GET) never take SQLite's write lock.
    """
    with runtime.unit(actor, readonly=readonly) as uow:
        yield uow.records


def permissions(runtime: Any, actor: Any) -> dict[str, dict[str, Any]]:
    """entity -> {"read", "create", "update", "delete", "fields": {name: "hidden"|"readonly"}} for ``actor``."""
    from engine.runtime.security import resolve_access

    ws = workspace(runtime)
    out: dict[str, dict[str, Any]] = {}
    for name in ws.entities:
        acc = resolve_access(ws, actor, name)
        rules = {f: "readonly" for f in sorted(acc.readonly)} | {f: "hidden" for f in sorted(acc.hidden)}
        out[name] = {"read": acc.read, "create": acc.create, "update": acc.update, "delete": acc.delete,
                     "fields": rules}
    return out
