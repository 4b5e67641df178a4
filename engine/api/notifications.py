"""``/api/v1/notifications``: the caller's notifications, newest first; mark some or all read."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.errors import BadRequest
from engine.runtime import notify

bp = Blueprint("notifications", __name__)


def _id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(f"{raw!r} is not a notification id", code="bad_request")
    return int(raw)


@bp.get("/notifications")
def list_notifications() -> Response:
    """``?unread=true`` only unread ones; ``limit`` (1-200, default 50); ``before=<id>`` pages back."""
    unread = params.bool_arg(request.args, "unread")
    limit = params.int_arg(request.args, "limit", 50, 1, notify.MAX_PAGE)
    before = request.args.get("before")
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        uid = uow.actor.user_id
        items = notify.list_for(uow.conn, uid, unread=unread, limit=limit,
                                before=_id(before) if before else None, locale=uow.workspace.locale)
        count = notify.unread_count(uow.conn, uid)
    return json_response({"items": [n.to_dict() for n in items], "unread": count,
                          "next_before": items[-1].id if len(items) == limit else None})


@bp.post("/notifications/<nid>/read")
def read_one(nid: str) -> Response:
    with gateway.unit(runtime(), g.principal) as uow:
        n = notify.mark_read(uow, [_id(nid)])
    return json_response({"marked": n})


@bp.post("/notifications/read")
def read_many() -> Response:
    """Body ``{"ids": [...]}`` marks those; an empty body (or ``{}``) marks all."""
    body = params.json_object(request) if request.get_data() else {}
    ids = body.get("ids")
    if ids is not None and not isinstance(ids, list):
        raise BadRequest("ids must be a list of notification ids", code="bad_request")
    with gateway.unit(runtime(), g.principal) as uow:
        n = notify.mark_read(uow, ids)
    return json_response({"marked": n})


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    item = {"type": "object", "properties": {
        "id": {"type": "integer"}, "kind": {"type": "string"}, "entity": {"type": ["string", "null"]},
        "record_id": {"type": ["integer", "null"]}, "text": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "read_at": {"type": ["string", "null"], "format": "date-time"}}}
    page = {"type": "object", "properties": {"items": {"type": "array", "items": item},
                                              "unread": {"type": "integer"},
                                              "next_before": {"type": ["integer", "null"]}}}
    marked = apidoc.json_body({"type": "object", "properties": {"marked": {"type": "integer"}}}, "How many")
    return {
        "/notifications": {"get": apidoc.op(
            "listNotifications", "notifications", "The caller's notifications, newest first",
            {"200": apidoc.json_body(page, "A page"), **apidoc.errors("400", "401")},
            params=[apidoc.query_param("unread", {"type": "boolean"}),
                    apidoc.query_param("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                    apidoc.query_param("before", {"type": "integer"})])},
        "/notifications/{id}/read": {"post": apidoc.op(
            "readNotification", "notifications", "Mark one notification read",
            {"200": marked, **apidoc.errors("401", "404")}, params=[apidoc.path_param("id")])},
        "/notifications/read": {"post": apidoc.op(
            "readNotifications", "notifications", "Mark some ({ids}) or all notifications read",
            {"200": marked, **apidoc.errors("400", "401", "404")},
            body={"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"}}}})},
    }
