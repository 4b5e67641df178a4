"""``/api/v1/users``, ``/teams`` and ``/tokens``: people administration (administrators only).

The same services as ``crm user|team|token ...`` (:mod:`engine.runtime.people.admin`): every change is an
audit row, and a change authentication depends on (roles, team, deactivation, a revoked token) takes effect
on the caller's next request in every server process.  A non-admin gets 403 before any lookup, so learns
nothing about the users.  Users and teams are named by id (digits) or by name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, NotFound, PermissionDenied, ValidationFailed
from engine.runtime import users
from engine.runtime.people import admin

bp = Blueprint("people", __name__)
MAX_TOKEN_DAYS = 3650


def _ref(raw: Any, where: str) -> str | int:
    """A user or team as the services take it: an id (digits) or a name."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or raw == "":
        raise BadRequest(f"{where} must be a name or an id", code="bad_request",
                         details={where: ["must be a name or an id"]})
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return raw


@contextmanager
def _admin_unit(*, readonly: bool = False) -> Iterator[Any]:
    """The request's unit of work, for administrators only (403 first, before anything is read)."""
    with gateway.unit(runtime(), g.principal, readonly=readonly) as uow:
        if not uow.actor.is_admin:
            raise PermissionDenied("only an administrator may manage users, teams and tokens", code="forbidden",
                                   hint="ask an administrator (crm user / crm team / crm token, or these endpoints)")
        yield uow


@bp.before_request
def _admins_only() -> None:
    """403 for a non-admin before the body or any name is read (after ``/api/v1``'s authentication)."""
    with _admin_unit(readonly=True):
        pass


def _body() -> dict[str, Any]:
    return params.json_object(request)


def _roles(body: dict[str, Any]) -> list[str] | None:
    roles = body.get("roles")
    if roles is None:
        return None
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ValidationFailed("roles must be a list of role names", details={"roles": ["must be a list of names"]})
    return roles


def _optional_ref(body: dict[str, Any], key: str) -> Any:
    return None if body[key] is None else _ref(body[key], key)


_USER_KEYS = {"username", "roles", "team", "manager", "password", "display_name", "email"}


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationFailed(f"unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(unknown)}",
                               details={k: [f"is not one of {', '.join(sorted(allowed))}"] for k in unknown})


# --------------------------------------------------------------------------- users


@bp.get("/users")
def list_users() -> Response:
    """Every user (``active=true`` only active ones)."""
    active_only = params.bool_arg(request.args, "active")
    with _admin_unit(readonly=True) as uow:
        rows = users.list_users(uow.conn, include_inactive=not active_only)
    return json_response({"items": [{"id": r.id, "username": r.username, "display_name": r.display_name,
                                     "roles": list(r.roles), "team": r.team, "manager": r.manager,
                                     "active": r.active} for r in rows]})


@bp.post("/users")
def create_user() -> Response:
    body = _body()
    _only(body, _USER_KEYS)
    if not isinstance(body.get("username"), str):
        raise ValidationFailed("the body needs a username", details={"username": ["is required"]})
    with _admin_unit() as uow:
        user = admin.create_user(
            uow, body["username"], roles=_roles(body) or [],
            team=_optional_ref(body, "team") if "team" in body else None,
            manager=_optional_ref(body, "manager") if "manager" in body else None,
            password=body.get("password"), display_name=body.get("display_name") or "", email=body.get("email"))
    return json_response(user, status=201)


@bp.get("/users/<name>")
def show_user(name: str) -> Response:
    with _admin_unit(readonly=True) as uow:
        return json_response(admin.show_user(uow.conn, _ref(name, "user"), uow.clock.now()))


@bp.patch("/users/<name>")
def update_user(name: str) -> Response:
    """Change roles, team, manager, display name, email or password (any subset)."""
    body = _body()
    _only(body, _USER_KEYS - {"username"})
    kwargs: dict[str, Any] = {"roles": _roles(body), "display_name": body.get("display_name")}
    for key in ("team", "manager"):
        if key in body:
            kwargs[key] = _optional_ref(body, key)
    if "email" in body:
        kwargs["email"] = body["email"]
    with _admin_unit() as uow:
        ref = _ref(name, "user")
        if "password" in body:
            admin.set_password(uow, ref, body["password"])
        return json_response(admin.update_user(uow, ref, **kwargs))


@bp.post("/users/<name>/deactivate")
def deactivate_user(name: str) -> Response:
    """No login of the user works from the next request and their tokens are revoked for good; answers how
    many tokens went and their open records."""
    with _admin_unit() as uow:
        return json_response(admin.deactivate(uow, _ref(name, "user")))


@bp.post("/users/<name>/reactivate")
def reactivate_user(name: str) -> Response:
    with _admin_unit() as uow:
        ref = _ref(name, "user")
        admin.reactivate(uow, ref)
        return json_response(admin.show_user(uow.conn, ref, uow.clock.now()))


# --------------------------------------------------------------------------- teams


@bp.get("/teams")
def list_teams() -> Response:
    with _admin_unit(readonly=True) as uow:
        return json_response({"items": admin.list_teams(uow.conn)})


@bp.post("/teams")
def create_team() -> Response:
    body = _body()
    _only(body, {"name", "manager", "parent"})
    if not isinstance(body.get("name"), str):
        raise ValidationFailed("the body needs a name", details={"name": ["is required"]})
    with _admin_unit() as uow:
        admin.create_team(uow, body["name"], manager=_optional_ref(body, "manager") if "manager" in body else None,
                          parent=_optional_ref(body, "parent") if "parent" in body else None)
        return json_response(_team(uow, body["name"]), status=201)


def _team(uow: Any, ref: str | int) -> dict[str, Any]:
    tid = users.team_id(uow.conn, ref)
    return next(t for t in admin.list_teams(uow.conn) if t["id"] == tid)


@bp.patch("/teams/<name>")
def update_team(name: str) -> Response:
    """Set the manager and/or the parent team (null: none)."""
    body = _body()
    _only(body, {"manager", "parent"})
    with _admin_unit() as uow:
        ref = _ref(name, "team")
        if "manager" in body:
            admin.set_manager(uow, ref, _optional_ref(body, "manager"))
        if "parent" in body:
            admin.set_parent(uow, ref, _optional_ref(body, "parent"))
        return json_response(_team(uow, ref))


@bp.post("/teams/<name>/members")
def add_member(name: str) -> Response:
    body = _body()
    _only(body, {"user"})
    if "user" not in body:
        raise ValidationFailed("the body needs the user", details={"user": ["is required"]})
    with _admin_unit() as uow:
        ref = _ref(name, "team")
        added = admin.add_member(uow, ref, _ref(body["user"], "user"))
        return json_response(_team(uow, ref) | {"added": added}, status=201 if added else 200)


@bp.delete("/teams/<name>/members/<member>")
def remove_member(name: str, member: str) -> Response:
    with _admin_unit() as uow:
        ref = _ref(name, "team")
        if not admin.remove_member(uow, ref, _ref(member, "user")):
            raise ValidationFailed(f"{member!r} is not an extra member of team {name!r}",
                                   details={"user": ["is not an extra member"]})
        return json_response(_team(uow, ref))


# --------------------------------------------------------------------------- tokens


@bp.get("/tokens")
def list_tokens() -> Response:
    """Tokens (never the token itself): ``user`` one user's, ``all=true`` revoked ones too."""
    who = request.args.get("user")
    show_all = params.bool_arg(request.args, "all")
    with _admin_unit(readonly=True) as uow:
        rows = admin.list_tokens(uow.conn, user=_ref(who, "user") if who else None, include_revoked=show_all)
    return json_response({"items": [{k: r[k] for k in ("id", "prefix", "name", "user", "created_at", "last_used_at",
                                                         "expires_at", "revoked_at")} for r in rows]})


@bp.post("/tokens")
def create_token() -> Response:
    """A token for ``user`` named ``name``, valid ``expires_in_days`` (default: no end); shown once."""
    body = _body()
    _only(body, {"user", "name", "expires_in_days"})
    missing = [key for key in ("user", "name") if body.get(key) is None]
    problems = {key: ["is required"] for key in missing}
    if "name" not in problems and not isinstance(body["name"], str):
        problems["name"] = ["must be text"]
    if problems:
        message = f"the body needs {' and '.join(missing)}" if missing else "the token's name must be text"
        raise ValidationFailed(message, details=problems)
    days = body.get("expires_in_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 0 < days <= MAX_TOKEN_DAYS):
        raise ValidationFailed("expires_in_days must be a whole number of days",
                               details={"expires_in_days": [f"must be 1 to {MAX_TOKEN_DAYS}"]})
    with _admin_unit() as uow:
        until = uow.clock.now() + dt.timedelta(days=days) if days else None
        token, row = admin.create_token(uow, _ref(body["user"], "user"), body["name"], expires_at=until)
    return json_response({"token": token, "prefix": token[:12], "name": body["name"], "user": row["user"],
                          "expires_at": until}, status=201)


@bp.post("/tokens/<prefix>/revoke")
def revoke_token(prefix: str) -> Response:
    """Revoke the active tokens starting with ``prefix`` (8+ characters): refused from the next request."""
    with _admin_unit() as uow:
        count = admin.revoke(uow, prefix)
    if not count:
        raise NotFound(f"no active token {'is' if len(prefix) > 12 else 'starts with'} {prefix[:60]!r}",
                       code="unknown_token", hint="GET /api/v1/tokens lists the active tokens' prefixes")
    return json_response({"revoked": count})


# --------------------------------------------------------------------------- OpenAPI

_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_REF = {"type": ["string", "integer"], "description": "a name or an id"}
_NULL_REF = {"type": ["string", "integer", "null"], "description": "a name or an id; null: none"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
_LIST = {"type": "array", "items": _STR}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_USER = _obj(id=_INT, username=_STR, display_name=_STR, email={"type": ["string", "null"]}, roles=_LIST,
             team={"type": ["string", "null"]}, teams=_LIST, manager={"type": ["string", "null"]}, active=_BOOL,
             has_password=_BOOL, locked_until=_TIME, tokens=_INT, created_at=_TIME)
_TEAM = _obj(id=_INT, name=_STR, manager={"type": ["string", "null"]}, parent={"type": ["string", "null"]},
             teams=_LIST, members=_LIST, everyone={"type": "integer", "description": "users in the team and below"})
_TOKEN = _obj(id=_INT, prefix=_STR, name=_STR, user=_STR, created_at=_TIME, last_used_at=_TIME, expires_at=_TIME,
              revoked_at=_TIME)
_OPEN = _obj(user=_STR, revoked_tokens=_INT,
             open_records={"type": "object", "description": "entity -> {count, ids}: what to hand over",
                           "additionalProperties": _obj(count=_INT, ids={"type": "array", "items": _INT})})
_USER_BODY = _obj(username=_STR, roles=_LIST, team=_NULL_REF, manager=_NULL_REF, password=_STR, display_name=_STR,
                  email={"type": ["string", "null"]})


def _items(schema: dict[str, Any], what: str) -> dict[str, Any]:
    return apidoc.json_body(_obj(items={"type": "array", "items": schema}), what)


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    def op(op_id: str, summary: str, ok: dict[str, Any], *errs: str, body: dict[str, Any] | None = None,
           params_: list[dict[str, Any]] | None = None, tag: str = "users") -> dict[str, Any]:
        return apidoc.op(op_id, tag, summary + " (administrators only)", {**ok, **apidoc.errors("401", "403", *errs)},
                         body=body, params=params_)

    user, team = [apidoc.path_param("name", _REF)], [apidoc.path_param("name", _REF)]
    one_user = {"200": apidoc.json_body(_USER, "The user")}
    one_team = {"200": apidoc.json_body(_TEAM, "The team")}
    return {
        "/users": {
            "get": op("listUsers", "Every user", {"200": _items(_USER, "Users")},
                      params_=[apidoc.query_param("active", _BOOL, "only active users")]),
            "post": op("createUser", "A new user", {"201": apidoc.json_body(_USER, "The user")}, "400", "404",
                       body=_USER_BODY | {"required": ["username", "roles"]})},
        "/users/{name}": {
            "get": op("showUser", "One user", one_user, "404", params_=user),
            "patch": op("updateUser", "Change roles, team, manager, display name, email or password", one_user,
                        "400", "404", body=_USER_BODY, params_=user)},
        "/users/{name}/deactivate": {"post": op(
            "deactivateUser", "No login from the next request and the user's tokens revoked for good; lists the "
            "open records to hand over",
            {"200": apidoc.json_body(_OPEN, "The open records")}, "400", "404", params_=user)},
        "/users/{name}/reactivate": {"post": op("reactivateUser", "The user may sign in again; their old tokens "
                                                "stay revoked (create a new one)", one_user, "404", params_=user)},
        "/teams": {
            "get": op("listTeams", "Every team with its manager, parent, sub-teams and members",
                      {"200": _items(_TEAM, "Teams")}, tag="teams"),
            "post": op("createTeam", "A new team, optionally inside another",
                       {"201": apidoc.json_body(_TEAM, "The team")}, "400", "404",
                       body=_obj(name=_STR, manager=_NULL_REF, parent=_NULL_REF) | {"required": ["name"]},
                       tag="teams")},
        "/teams/{name}": {"patch": op("updateTeam", "Set the manager and/or the parent team", one_team, "400", "404",
                                      body=_obj(manager=_NULL_REF, parent=_NULL_REF), params_=team, tag="teams")},
        "/teams/{name}/members": {"post": op(
            "addTeamMember", "A user joins the team besides their main team", one_team | {"201": one_team["200"]},
            "400", "404", body=_obj(user=_REF) | {"required": ["user"]}, params_=team, tag="teams")},
        "/teams/{name}/members/{member}": {"delete": op(
            "removeTeamMember", "End a user's extra membership", one_team, "400", "404",
            params_=[*team, apidoc.path_param("member", _REF)], tag="teams")},
        "/tokens": {
            "get": op("listTokens", "API tokens (never the token itself)", {"200": _items(_TOKEN, "Tokens")}, "404",
                      params_=[apidoc.query_param("user", _STR, "one user's tokens"),
                               apidoc.query_param("all", _BOOL, "revoked tokens too")], tag="tokens"),
            "post": op("createToken", "A token for a user, shown once",
                       {"201": apidoc.json_body(_obj(token=_STR, prefix=_STR, name=_STR, user=_STR, expires_at=_TIME),
                                                "The token")}, "400", "404",
                       body=_obj(user=_REF, name=_STR, expires_in_days={"type": "integer", "minimum": 1,
                                                                         "maximum": MAX_TOKEN_DAYS})
                       | {"required": ["user", "name"]}, tag="tokens")},
        "/tokens/{prefix}/revoke": {"post": op(
            "revokeToken", "Revoke the tokens starting with the prefix: refused from the very next request",
            {"200": apidoc.json_body(_obj(revoked=_INT), "How many")}, "400", "404", "409",
            params_=[apidoc.path_param("prefix")], tag="tokens")},
    }
