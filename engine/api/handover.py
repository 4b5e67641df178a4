"""``POST /users/<from>/handover {"to": user}``: give every record a user owns to another user (admins only).

The same service as ``crm handover FROM TO`` (:func:`engine.runtime.users.handover`): each entity's records
move with ``update_many`` through the record service, so rules, write steps (stage gates included), audit
rows (``handover``) and events apply. Users are given by username or id; the follow-up history stays on the
customer records, so nothing is lost when staff leave.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest, PermissionDenied
from engine.runtime import users

bp = Blueprint("handover", __name__)


def _user(raw: Any, where: str) -> str | int:
    """A user as the service takes it: an id (digits) or a username."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or raw == "":
        raise BadRequest(f"{where} must be a username or a user id", code="bad_request",
                         details={where: ["must be a username or a user id"]})
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return raw


@bp.post("/users/<from_user>/handover")
def handover(from_user: str) -> Response:
    """Every record ``from_user`` owns goes to ``to``; answers the count moved per entity."""
    body = params.json_object(request)
    if "to" not in body:
        raise BadRequest("the body needs the user to hand over to", code="bad_request",
                         hint='send {"to": "<username or id>"}', details={"to": ["is required"]})
    source, target = _user(from_user, "from"), _user(body["to"], "to")
    with gateway.unit(runtime(), g.principal) as uow:
        if not uow.actor.is_admin:  # before any lookup, so a non-admin learns nothing about the users
            raise PermissionDenied("only an administrator may hand records over", code="forbidden",
                                   hint="ask an administrator (crm handover FROM TO, or this endpoint)")
        if source == target or users.user_id(uow.conn, source) == users.user_id(uow.conn, target):
            raise BadRequest("a user cannot hand over to themself", code="bad_request",
                             hint="name another user in 'to'")
        moved = users.handover(uow, source, target)
    return json_response({"from": from_user, "to": body["to"], "moved": moved, "total": sum(moved.values())})


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    result = {"type": "object", "properties": {
        "from": {"type": "string"}, "to": {"type": ["string", "integer"]},
        "moved": {"type": "object", "additionalProperties": {"type": "integer"},
                  "description": "entity -> records handed over"},
        "total": {"type": "integer"}}}
    return {"/users/{from}/handover": {"post": apidoc.op(
        "handoverUser", "users", "Give every record a user owns to another user (admins only)",
        {"200": apidoc.json_body(result, "What moved"), **apidoc.errors("400", "401", "403", "404", "422")},
        body={"type": "object", "required": ["to"], "properties": {"to": {"type": ["string", "integer"]}}},
        params=[apidoc.path_param("from")])}}
