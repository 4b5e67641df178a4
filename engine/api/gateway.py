"""The API's only door into the runtime.

Views never touch SQL or the runtime's internals: they call these functions,
which open a unit of work for the caller and go through the record service
(so permissions, validation, formulas, audit and locking always apply) or
read the caller's effective permissions from the security module.
"""

from __future__ import annotations

import hashlib
import threading
import time
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


class TokenCache:
    """Recently authenticated tokens, for ``ttl`` seconds (per app; thread-safe).

    A token lookup is a database round trip on every request; keeping the
    answer for a couple of seconds (keyed by the token's hash and the
    revision, since roles come from the configuration) halves the cost of a
    small write.  Revoking a token or deactivating a user takes effect within
    ``ttl`` seconds.  Failures are never cached.
    """

    def __init__(self, ttl: float = 2.0, size: int = 1024) -> None:
        self.ttl = ttl
        self.size = size
        self._items: dict[tuple[str, Any], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, Any]) -> Any:
        """The cached actor, or None when absent or expired."""
        hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[str, Any], actor: Any) -> None:
        """Remember ``actor`` for ``ttl`` seconds."""
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, actor)


def authenticate(runtime: Any, token: str, cache: TokenCache | None = None) -> Any:
    """The actor a bearer token belongs to, or :class:`InvalidToken`."""
    from engine.runtime import users

    key = (hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest(), revision_key(runtime))
    actor = cache.get(key) if cache is not None else None
    if actor is not None:
        return actor
    try:
        actor = users.authenticate_token(runtime, token)
    except AuthenticationRequired as e:
        raise InvalidToken(e.message or "the bearer token is invalid or revoked", hint=e.hint) from e
    if cache is not None:
        cache.put(key, actor)
    return actor


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
