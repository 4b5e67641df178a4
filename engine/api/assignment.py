"""``POST /api/v1/records/<entity>/<id>/assign``: give a record to a user, or run the assignment rules again."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.scoring import record_id
from engine.api.views import json_response, runtime
from engine.errors import BadRequest
from engine.runtime.sales import assignment

bp = Blueprint("assignment", __name__)


@bp.post("/records/<entity>/<rid>/assign")
def assign(entity: str, rid: str) -> Response:
    """``{"to": "<username>"}`` gives the record to that (active) user; ``{}`` runs the rules of the
    entity's assignments with ``on: [reassign]``.  Either way the caller must be allowed to update the
    record; the new owner is notified and the change audited with what chose it."""
    body = params.json_object(request) if request.get_data() else {}
    unknown = sorted(set(body) - {"to"})
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} in the body", code="bad_request",
                         hint='send {"to": "<username>"}, or {} to run the assignment rules')
    record = record_id(rid)
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        if "to" in body:
            rule = assignment.reassign_to(uow, entity, record, body["to"]).describe()
        else:
            rule = assignment.reassign_by_rules(uow, entity, record)
        with uow.elevated():
            now = uow.records.get(entity, record)
    return json_response({"entity": entity, "id": record, "owner_id": now.get("owner_id"),
                          "pool": now.get(assignment.POOL_FIELD), "rule": rule, "version": now.get("version")})


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    out = {"type": "object", "properties": {
        "entity": {"type": "string"}, "id": {"type": "integer"}, "owner_id": {"type": ["integer", "null"]},
        "pool": {"type": ["string", "null"]}, "rule": {"type": "string"}, "version": {"type": "integer"}}}
    return {"/records/{entity}/{id}/assign": {"post": apidoc.op(
        "assignRecord", "assignment", "Give the record to a user ({to}), or run the assignment rules ({})",
        {"200": apidoc.json_body(out, "The new owner and what chose it"),
         **apidoc.errors("400", "401", "403", "404", "409")},
        body={"type": "object", "properties": {"to": {"type": "string"}}},
        params=[apidoc.path_param("entity"), apidoc.path_param("id")])}}
