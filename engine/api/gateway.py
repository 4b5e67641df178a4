"""The API's only door into the runtime.

Views never touch SQL or the runtime's internals: they call these functions,
which open a unit of work for the caller and go through the record service
(so permissions, validation, formulas, audit and locking always apply) or
read the caller's effective permissions from the security module.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from engine.dsl.model import Entity, Workspace
from engine.errors import AuthenticationRequired, NotFound, Overloaded
from engine.wording import counted

log = logging.getLogger("engine.api")


class InvalidToken(AuthenticationRequired):
    """A bearer token that is unknown, revoked or malformed."""

    code = "invalid_token"


def workspace(view: Any) -> Workspace:
    """The workspace ``view`` (a unit of work, or the runtime) runs."""
    return view.state.workspace


def revision_key(view: Any) -> Any:
    """The revision ``view`` runs (changes whenever a new revision is applied)."""
    state = view.state
    return state.revision_id if state.revision_id is not None else state.workspace.content_hash


def entity(view: Any, name: str) -> Entity:
    """The entity called ``name`` or a 404 naming the known ones."""
    ws = workspace(view)
    ent = ws.entities.get(name)
    if ent is None:
        raise NotFound(f"there is no entity {name!r}", details={"entity": name},
                       hint="GET /api/v1/meta lists the entities you can use")
    return ent


class TokenCache:
    """Tokens authenticated recently, for this app (thread-safe, bounded).

    An entry is trusted only while the unit of work that uses it reads the
    same authentication epoch and revision it was stored under (see
    :mod:`engine.runtime.markers`) and the token has not expired: a token
    revoked or a user deactivated by any process stops working on the very
    next request, with no database round trip while nothing changed.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._items: dict[str, tuple[Any, str, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, epoch: str, revision: Any) -> Any:
        """The cached token use, or None when absent or stored under another epoch or revision."""
        hit = self._items.get(key)
        if hit is None or hit[1] != epoch or hit[2] != revision:
            return None
        return hit[0]

    def peek(self, key: str) -> Any:
        """The token use stored under ``key`` whatever its epoch (its user id never changes), or None."""
        hit = self._items.get(key)
        return hit[0] if hit is not None else None

    def put(self, key: str, use: Any, epoch: str, revision: Any) -> None:
        """Remember ``use`` under ``epoch`` and ``revision``."""
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = (use, epoch, revision)


class UserSlots:
    """At most ``limit`` requests of one user at a time in this process (thread-safe).

    Bounds what one caller can take of the server's threads and database: a
    request over the limit waits up to ``wait`` seconds for a slot, then is
    refused (429 with ``Retry-After``).  Slots are taken before the request
    opens its unit of work, so a waiting request holds no database
    connection and no lock.  ``limit`` 0 or None: unlimited.
    """

    def __init__(self, limit: int | None, wait: float = 1.0) -> None:
        self.limit = limit
        self.wait = wait
        self._running: dict[Any, int] = {}
        self._free = threading.Condition()

    def acquire(self, user: Any) -> bool:
        """Take a slot for ``user`` (False: no limit applies); Overloaded when none frees up in time."""
        if not self.limit:
            return False
        limit = self.limit
        with self._free:
            if not self._free.wait_for(lambda: self._running.get(user, 0) < limit, timeout=self.wait):
                raise Overloaded(f"you already have {counted(limit, 'request')} running; "
                                 f"at most {limit} may run at once",
                                 hint="wait for your other requests to finish, then retry",
                                 details={"limit": limit})
            self._running[user] = self._running.get(user, 0) + 1
        return True

    def release(self, user: Any) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        with self._free:
            left = self._running.get(user, 1) - 1
            if left > 0:
                self._running[user] = left
            else:
                self._running.pop(user, None)
            self._free.notify_all()


class TokenPrincipal:
    """The caller of one request, as a bearer token resolved inside its unit of work.

    Implements :class:`engine.runtime.runtime.Principal`: the unit calls
    :meth:`actor_for` with the markers it read, so the token is checked
    against the same snapshot the request then works in.
    """

    def __init__(self, runtime: Any, token: str, cache: TokenCache | None, slots: UserSlots | None = None) -> None:
        self.runtime = runtime
        self.token = token
        self.cache = cache
        self.slots = slots
        self.key = hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        self.touch: int | None = None
        self.holding: Any = None
        self.early: tuple[Any, str, Any] | None = None

    def authenticate_early(self) -> None:
        """Before the request does anything: a token this process has not seen yet is looked up (401
        first), then the user's request slot is taken (see :class:`UserSlots`).

        The lookup's answer is kept with the markers it was read under; the
        unit of work uses it only if it reads the same ones.
        """
        use = self.cache.peek(self.key) if self.cache is not None else None
        if use is None:
            from engine.runtime import markers

            with self.runtime.engine.connect() as conn:
                marks = markers.read(conn)  # before the token: a later revoke changes the epoch we compare
                state = self.runtime.state
                use = self._lookup(conn, state.workspace)
                self._remember(use, marks.auth, state.revision_id)
        if self.slots is not None and self.slots.acquire(use.actor.user_id):  # a token's user never changes
            self.holding = use.actor.user_id

    def _lookup(self, conn: Any, ws: Workspace) -> Any:
        from engine.runtime import users

        try:
            use = users.lookup_token(conn, ws, self.token, self.runtime.clock.now())
        except AuthenticationRequired as e:
            raise InvalidToken(e.message or "the bearer token is invalid or revoked", hint=e.hint) from e
        if use.touch_due:
            self.touch = use.token_id
        return use

    def _remember(self, use: Any, epoch: str, revision: Any) -> None:
        self.early = (use, epoch, revision)
        if self.cache is not None:
            self.cache.put(self.key, use, epoch, revision)

    def _known(self, epoch: str, revision: Any) -> Any:
        if self.early is not None and self.early[1:] == (epoch, revision):
            return self.early[0]
        return self.cache.get(self.key, epoch, revision) if self.cache is not None else None

    def actor_for(self, conn: Any, marks: Any, state: Any) -> Any:
        """The token's actor: as known under the unit's epoch and revision while unexpired, else looked up."""
        use = self._known(marks.auth, state.revision_id)
        if use is None or use.expired(self.runtime.clock.now()):
            use = self._lookup(conn, state.workspace)
            self._remember(use, marks.auth, state.revision_id)
        return use.actor

    def after(self) -> None:
        """Give back the request slot; record the token's use (at most every few minutes), after the unit."""
        if self.holding is not None:
            assert self.slots is not None
            self.slots.release(self.holding)
            self.holding = None
        if self.touch is not None:
            from engine.runtime import users

            token_id, self.touch = self.touch, None
            try:
                users.touch_token(self.runtime.engine, token_id, self.runtime.clock.now())
            except SQLAlchemyError as e:  # bookkeeping only: the request itself is done
                log.warning("could not record the use of token %s: %s", token_id, e)


@contextmanager
def unit(runtime: Any, principal: Any, *, readonly: bool = False) -> Iterator[Any]:
    """One unit of work (one transaction) for the request's ``principal``.

    ``readonly`` units (every GET) never take SQLite's write lock.  The
    request's teardown calls ``principal.after()`` (slot, token use).
    """
    with runtime.unit(principal, readonly=readonly) as uow:
        yield uow


@contextmanager
def records(runtime: Any, principal: Any, *, readonly: bool = False) -> Iterator[Any]:
    """A record service inside one unit of work (see :func:`unit`)."""
    with unit(runtime, principal, readonly=readonly) as uow:
        yield uow.records


def permissions(view: Any, actor: Any) -> dict[str, dict[str, Any]]:
    """entity -> {"read", "create", "update", "delete", "fields": {name: "hidden"|"readonly"}} for ``actor``."""
    from engine.runtime.security import resolve_access

    ws = workspace(view)
    out: dict[str, dict[str, Any]] = {}
    for name in ws.entities:
        acc = resolve_access(ws, actor, name)
        rules = {f: "readonly" for f in sorted(acc.readonly)} | {f: "hidden" for f in sorted(acc.hidden)}
        out[name] = {"read": acc.read, "create": acc.create, "update": acc.update, "delete": acc.delete,
                     "fields": rules}
    return out
