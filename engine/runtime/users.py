"""Users, teams, passwords and API tokens (``crm_users``, ``crm_teams``, ``crm_api_tokens``).

* Passwords: ``hashlib.scrypt`` (n=2**14, r=8, p=1) with a 16-byte random
  salt, stored as ``scrypt$n$r$p$salt$hash`` (base64); compared in constant time.
* API tokens: ``crm_`` + ``secrets.token_urlsafe(32)``; only the sha256 of
  the token is stored, with its first 12 characters as a display prefix.
  The plain token is returned once, by :func:`create_token`.
* :func:`actor_for` turns a user row into an :class:`~engine.runtime.context.Actor`,
  marking it admin when one of its roles is an admin role of the workspace.
* :func:`handover` gives every record of a departing user to another user;
  the audit trail keeps who owned what, and when it changed.
"""

from __future__ import annotations

import base64
import datetime as dt
import difflib
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from engine.dsl.model import Workspace
from engine.errors import (
    AccountLocked,
    AuthenticationRequired,
    BadRequest,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from engine.runtime import markers, passwords, rawsql
from engine.runtime.context import Actor
from engine.runtime.engine_tables import crm_api_tokens, crm_login_failures, crm_teams, crm_users

if TYPE_CHECKING:
    from engine.runtime.runtime import Runtime, UnitOfWork

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
TOKEN_PREFIX = "crm_"
TOUCH_EVERY = dt.timedelta(minutes=5)
UserRef = int | str


# --------------------------------------------------------------------------- passwords


def hash_password(password: str, *, username: str | None = None) -> str:
    """A salted scrypt hash of ``password`` in a self-describing text form (ValidationFailed when it breaks
    the rules of :func:`engine.runtime.passwords.problems`)."""
    wrong = passwords.problems(password, username)
    if wrong:
        raise ValidationFailed("password refused: " + "; ".join(wrong), details={"password": wrong},
                               hint="choose at least 8 characters mixing letters with digits or other characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (False for a malformed or missing hash)."""
    try:
        scheme, n, r, p, salt, digest = (stored or "").split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(_unb64(digest)))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode())


# --------------------------------------------------------------------------- teams and users


def require_admin(uow: UnitOfWork) -> None:
    """PermissionDenied unless the unit's actor is an administrator (or the system); the unit must write."""
    uow.require_writable()
    if not uow.actor.is_admin:
        raise PermissionDenied("only an administrator may manage users and teams", code="forbidden")


def create_team(uow: UnitOfWork, name: str, *, manager: UserRef | None = None,
                parent: str | int | None = None) -> int:
    """A new team (admin only), optionally inside team ``parent``; returns its id."""
    require_admin(uow)
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValidationFailed("invalid team name", details={"name": ["must be 1 to 100 characters"]})
    if uow.conn.execute(select(crm_teams.c.id).where(crm_teams.c.name == name)).first():
        raise ValidationFailed(f"team {name!r} exists", details={"name": ["is taken"]})
    manager_id = user_id(uow.conn, manager) if manager is not None else None
    parent_id = team_id(uow.conn, parent) if parent is not None else None
    return _new_id(uow.conn.execute(insert(crm_teams).values(name=name, manager_id=manager_id, parent_id=parent_id,
                                                             created_at=uow.clock.now())))


def set_team_manager(uow: UnitOfWork, team: str | int, manager: UserRef | None) -> None:
    """Make ``manager`` (or nobody) the manager of ``team``."""
    require_admin(uow)
    manager_id = user_id(uow.conn, manager) if manager is not None else None
    uow.conn.execute(update(crm_teams).where(crm_teams.c.id == team_id(uow.conn, team))
                     .values(manager_id=manager_id))


def team_id(conn: Connection, team: str | int) -> int:
    """The id of a team given by id or name (NotFound otherwise)."""
    col = crm_teams.c.id if isinstance(team, int) else crm_teams.c.name
    found = conn.execute(select(crm_teams.c.id).where(col == team)).scalar()
    if found is None:
        raise NotFound(f"no team {team!r}", code="unknown_team", hint="create it first")
    return int(found)


def user_id(conn: Connection, user: UserRef) -> int:
    """The id of a user given by id or username (NotFound otherwise)."""
    col = crm_users.c.id if isinstance(user, int) else crm_users.c.username
    found = conn.execute(select(crm_users.c.id).where(col == user)).scalar()
    if found is None:
        raise NotFound(f"no user {user!r}", code="unknown_user",
                       hint="'crm user list' shows the users; 'crm user add' creates one")
    return int(found)


def create_user(uow: UnitOfWork, username: str, *, roles: Sequence[str], team: str | int | None = None,
                manager: UserRef | None = None, password: str | None = None, display_name: str = "",
                email: str | None = None) -> int:
    """A new active user (admin only); roles must exist in the workspace; returns the id."""
    require_admin(uow)
    _check_user_fields(uow.workspace, username, roles)
    if uow.conn.execute(select(crm_users.c.id).where(crm_users.c.username == username)).first():
        raise ValidationFailed(f"user {username!r} exists", details={"username": ["is taken"]})
    values = {
        "username": username, "display_name": display_name or username, "email": email,
        "password_hash": hash_password(password, username=username) if password is not None else None,
        "roles": list(roles),
        "team_id": team_id(uow.conn, team) if team is not None else None,
        "manager_id": user_id(uow.conn, manager) if manager is not None else None,
        "active": True, "created_at": uow.clock.now(),
    }
    return _new_id(uow.conn.execute(insert(crm_users).values(**values)))


@dataclass(frozen=True)
class UserRow:
    """One user as ``crm user list`` shows it."""

    id: int
    username: str
    display_name: str
    roles: tuple[str, ...]
    team: str | None
    manager: str | None
    active: bool


def list_users(conn: Connection, *, include_inactive: bool = True) -> list[UserRow]:
    """Every user by username, with team and manager names."""
    manager = crm_users.alias("manager")
    query = (select(crm_users.c.id, crm_users.c.username, crm_users.c.display_name, crm_users.c.roles,
                    crm_teams.c.name, manager.c.username, crm_users.c.active)
             .select_from(crm_users.outerjoin(crm_teams, crm_teams.c.id == crm_users.c.team_id)
                          .outerjoin(manager, manager.c.id == crm_users.c.manager_id))
             .order_by(crm_users.c.username))
    if not include_inactive:
        query = query.where(crm_users.c.active.is_(True))
    return [UserRow(int(r[0]), r[1], r[2] or "", tuple(r[3] or ()), r[4], r[5], bool(r[6]))
            for r in conn.execute(query)]


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None:
        raise BadRequest("the database returned no id", code="no_id")
    return int(key[0])


def _check_user_fields(workspace: Workspace, username: str, roles: Sequence[str]) -> None:
    errors: dict[str, list[str]] = {}
    if not isinstance(username, str) or not username.strip() or len(username) > 100:
        errors["username"] = ["must be 1 to 100 characters"]
    if isinstance(roles, str) or not roles:
        errors["roles"] = ["give at least one role (a list)"]
    else:
        unknown = [r for r in roles if r not in workspace.roles]
        if unknown:
            errors["roles"] = [_unknown_role(r, workspace) for r in unknown]
    if errors:
        raise ValidationFailed(f"invalid user {username!r}", details=errors)


def check_roles(workspace: Workspace, roles: Sequence[str]) -> None:
    """ValidationFailed unless ``roles`` is a non-empty list of the workspace's roles."""
    if isinstance(roles, str) or not roles or not all(isinstance(r, str) for r in roles):
        raise ValidationFailed("give at least one role (a list)", details={"roles": ["give at least one role"]})
    unknown = [r for r in roles if r not in workspace.roles]
    if unknown:
        raise ValidationFailed(f"unknown role {unknown[0]!r}",
                               details={"roles": [_unknown_role(r, workspace) for r in unknown]})


def _unknown_role(role: str, workspace: Workspace) -> str:
    close = difflib.get_close_matches(role, list(workspace.roles), n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown role {role!r}{guess}; the workspace's roles: {', '.join(workspace.roles)}"


def deactivate_user(uow: UnitOfWork, user: UserRef) -> list[int]:
    """The user can no longer sign in and their tokens are revoked -- for good, so a reactivated user needs
    a new token; records keep their owner until handover.  Returns the ids of the tokens revoked (the
    people administration audits them)."""
    require_admin(uow)
    uid = user_id(uow.conn, user)
    uow.conn.execute(update(crm_users).where(crm_users.c.id == uid).values(active=False))
    markers.bump_auth(uow.conn)
    return revoke_user_tokens(uow, uid)


def revoke_user_tokens(uow: UnitOfWork, uid: int) -> list[int]:
    """Revoke every active token of user ``uid`` (next request of every process); their ids."""
    t = crm_api_tokens
    ids = [int(i) for i in uow.conn.execute(select(t.c.id).where(t.c.user_id == uid,
                                                                 t.c.revoked_at.is_(None))).scalars()]
    if ids:
        uow.conn.execute(update(t).where(t.c.id.in_(ids)).values(revoked_at=uow.clock.now()))
        markers.bump_auth(uow.conn)
    return ids


def actor_for(conn: Connection, workspace: Workspace, user: UserRef) -> Actor:
    """The Actor of an active user (AuthenticationRequired if inactive or unknown)."""
    col = crm_users.c.id if isinstance(user, int) else crm_users.c.username
    row = conn.execute(select(crm_users).where(col == user)).first()
    if row is None or not row.active:
        raise AuthenticationRequired("unknown or inactive user", code="unauthenticated")
    return _actor(row, workspace)


def _actor(row: Any, workspace: Workspace) -> Actor:
    roles = tuple(r for r in (row.roles or []) if r in workspace.roles)
    is_admin = any(workspace.roles[r].admin for r in roles)
    return Actor(user_id=row.id, username=row.username, roles=roles, team_id=row.team_id, is_admin=is_admin)


def authenticate_password(conn: Connection, workspace: Workspace, username: str, password: str,
                          now: dt.datetime | None = None) -> Actor:
    """The Actor for a correct username and password (AuthenticationRequired otherwise).

    Every login path goes through here: :data:`~engine.runtime.passwords.MAX_FAILURES` wrong passwords in a
    row lock the user's password login (AccountLocked) for a while, the right one included; failures are
    counted in their own transaction, and a success clears them.
    """
    now = now or dt.datetime.now(dt.UTC)
    row = conn.execute(select(crm_users).where(crm_users.c.username == username)).first()
    if row is None or not row.password_hash:
        raise AuthenticationRequired("wrong username or password", code="unauthenticated")
    # the login state is read and written on its own connection: the caller's may hold an older snapshot
    with conn.engine.connect() as own:
        own.execution_options(sqlite_immediate=True)
        with own.begin():
            until, actor = _login(own, row, workspace, password, now)
    if actor is not None:
        return actor
    if until is not None:
        raise AccountLocked(f"too many wrong passwords: login is locked until {until:%Y-%m-%d %H:%M} UTC",
                            hint="wait, or ask an administrator to set a new password (crm user set-password)")
    raise AuthenticationRequired("wrong username or password", code="unauthenticated")


def _login(own: Connection, row: Any, workspace: Workspace, password: str, now: dt.datetime
           ) -> tuple[dt.datetime | None, Actor | None]:
    """(lockout end, None) for a refused login -- counted -- or (None, the actor) for a good one."""
    until = passwords.locked_until(own, row.id, now)
    if until is not None:
        return until, None
    if row.active and verify_password(password, row.password_hash):
        if _has_failures(own, row.id):
            passwords.clear(own, row.id)
        return None, _actor(row, workspace)
    return passwords.record_failure(own, row.id, now), None


def _has_failures(conn: Connection, uid: int) -> bool:
    f = crm_login_failures
    return conn.execute(select(f.c.user_id).where(f.c.user_id == uid)).first() is not None


# --------------------------------------------------------------------------- the directory expressions read


_u, _t = crm_users, crm_teams
#: built once and run through the driver: building the statement per call cost more than running it
_DIRECTORY = rawsql.Query(
    select(_u.c.id, _u.c.display_name, _u.c.username, _u.c.team_id, _u.c.active, _u.c.manager_id,
           _t.c.name.label("team_name"), _t.c.manager_id.label("team_manager"))
    .select_from(_u.outerjoin(_t, _t.c.id == _u.c.team_id)).where(_u.c.id == bindparam("b_id")))


def directory_entry(conn: Connection, uid: Any) -> dict[str, Any] | None:
    """What expressions may read of user ``uid`` (``owner.team``, ``manager_of(owner)``), or None.

    Keys: ``name`` (display name), ``username``, ``team`` (team name), ``team_id``, ``active`` and
    ``manager`` -- the user's own manager, else the manager of the user's team unless that is the user
    themself, else None (the SQL form is ``engine.runtime.sqlfuncs.manager_of``).
    """
    row = _DIRECTORY.first(conn, {"b_id": uid})
    if row is None:
        return None
    team_manager = row.team_manager if row.team_manager != row.id else None
    return {"name": row.display_name, "username": row.username, "team": row.team_name, "team_id": row.team_id,
            "active": bool(row.active), "manager": row.manager_id if row.manager_id is not None else team_manager}


# --------------------------------------------------------------------------- API tokens


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(uow: UnitOfWork, user: UserRef, name: str, *, expires_at: dt.datetime | None = None) -> str:
    """A new API token for ``user``; returns the plain token (shown once, never stored).

    Users may create tokens for themselves; admins for anyone.  A token with
    ``expires_at`` stops working at that moment.  A deactivated user gets none (BadRequest
    ``inactive_user``): every request with it would be refused.
    """
    uow.require_writable()
    uid = user_id(uow.conn, user)
    if not uow.actor.is_admin and uow.actor.user_id != uid:
        raise PermissionDenied("you may only create tokens for yourself", code="forbidden")
    _require_active(uow.conn, uid)
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise ValidationFailed("invalid token name", details={"name": ["must be 1 to 100 characters"]})
    now = uow.clock.now()
    if expires_at is not None and expires_at <= now:
        raise ValidationFailed("the token would be expired already", details={"expires": ["must be in the future"]})
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    uow.conn.execute(insert(crm_api_tokens).values(user_id=uid, name=name, token_hash=token_hash(token),
                                                   prefix=token[:12], created_at=now, expires_at=expires_at))
    return token


def _require_active(conn: Connection, uid: int) -> None:
    """BadRequest ``inactive_user`` naming the user when user ``uid`` is deactivated."""
    row = conn.execute(select(crm_users.c.username, crm_users.c.active).where(crm_users.c.id == uid)).one()
    if not row.active:
        name = row.username
        raise BadRequest(f"user {name!r} is deactivated: a token for them would be refused on every request",
                         code="inactive_user", details={"user": name},
                         hint=f"reactivate them first (crm user reactivate {name}, or POST "
                              f"/api/v1/users/{name}/reactivate), then create the token")


def revoke_token(uow: UnitOfWork, prefix: str) -> int:
    """Revoke the actor's (or, for admins, anyone's) tokens starting with ``prefix``; returns the count.

    Takes effect on the next request of every server process (the
    authentication epoch changes, see :mod:`engine.runtime.markers`).
    """
    uow.require_writable()
    t = crm_api_tokens
    stmt = update(t).where(t.c.prefix == prefix[:12], t.c.revoked_at.is_(None))
    if not uow.actor.is_admin:
        stmt = stmt.where(t.c.user_id == uow.actor.user_id)
    count = int(uow.conn.execute(stmt.values(revoked_at=uow.clock.now())).rowcount)
    if count:
        markers.bump_auth(uow.conn)
    return count


@dataclass(frozen=True, slots=True)
class TokenUse:
    """A valid token as looked up: who it stands for, until when, and whether ``last_used_at`` is due."""

    actor: Actor
    token_id: int
    expires_at: dt.datetime | None
    touch_due: bool

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


_INVALID_HINT = "the token is unknown, revoked or expired, or its user is inactive; create one with crm token create"


def lookup_token(conn: Connection, workspace: Workspace, token: str, now: dt.datetime) -> TokenUse:
    """The valid token ``token`` on ``conn``; AuthenticationRequired if unknown, revoked, expired or inactive."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise AuthenticationRequired("invalid API token", code="unauthenticated",
                                     hint="send Authorization: Bearer <token> (create one with crm token create)")
    t, u = crm_api_tokens, crm_users
    stmt = (select(t.c.id.label("token_id"), t.c.last_used_at.label("token_used_at"),
                   t.c.expires_at.label("token_expires_at"), u)
            .join(u, u.c.id == t.c.user_id).where(t.c.token_hash == token_hash(token), t.c.revoked_at.is_(None)))
    row = conn.execute(stmt).first()
    if row is None or not row.active:
        raise AuthenticationRequired("invalid API token", code="unauthenticated", hint=_INVALID_HINT)
    use = TokenUse(_actor(row, workspace), row.token_id, row.token_expires_at,
                   row.token_used_at is None or now - row.token_used_at > TOUCH_EVERY)
    if use.expired(now):
        raise AuthenticationRequired("the API token has expired", code="token_expired",
                                     hint="create a new token with crm token create")
    return use


def touch_token(engine: Engine, token_id: int, now: dt.datetime) -> None:
    """Record that a token was used (its own short transaction; refreshed at most every few minutes)."""
    with engine.connect() as conn:
        conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            conn.execute(update(crm_api_tokens).where(crm_api_tokens.c.id == token_id).values(last_used_at=now))


def authenticate_token(runtime: Runtime, token: str) -> Actor:
    """The Actor a bearer token stands for (its own connection); AuthenticationRequired if it is not valid.

    The API resolves tokens inside each request's unit of work instead (see
    ``engine.api.gateway``); this is for tools and scripts.
    """
    now = runtime.clock.now()
    with runtime.engine.connect() as conn:
        use = lookup_token(conn, runtime.state.workspace, token, now)
    if use.touch_due:
        touch_token(runtime.engine, use.token_id, now)
    return use.actor


# --------------------------------------------------------------------------- handover


def handover(uow: UnitOfWork, from_user: UserRef, to_user: UserRef) -> dict[str, int]:
    """Give every record owned by ``from_user`` to ``to_user`` (admin only); returns entity -> count.

    Goes through the record service (``update_many`` per entity), so every
    rule, registered write step, version bump, audit row (``owner_id: from ->
    to``) and event applies exactly as for any other update; the service goes
    set-based where the entity's rules allow it.
    """
    require_admin(uow)
    src, dst = user_id(uow.conn, from_user), user_id(uow.conn, to_user)
    if not uow.conn.execute(select(crm_users.c.active).where(crm_users.c.id == dst)).scalar():
        raise BadRequest(f"user {to_user!r} is inactive", code="inactive_user", hint="hand over to an active user")
    out: dict[str, int] = {}
    for plan in uow.state.plans.values():
        if not plan.is_child:
            n = uow.records.update_many(plan.name, f"owner_id == {int(src)}", {"owner_id": int(dst)},
                                        audit_action="handover")
            if n:
                out[plan.name] = n
    return out
