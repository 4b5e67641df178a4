"""``POST /records/<entity>/<id>/convert``: a lead becomes an account, a contact and an opportunity.

Body (all optional): ``{"account_id": 12, "create_opportunity": false, "values": {"opportunity":
{"amount": 50000}}, "conversion": "lead_to_customer"}``.  One transaction: every record is created
through the record service (checks, gates, duplicate rules apply), or none is.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.dedupe import record_id
from engine.api.views import json_response, runtime
from engine.errors import BadRequest
from engine.runtime.sales.conversion import convert, pick

bp = Blueprint("conversion", __name__)


def _body() -> dict[str, Any]:
    body = params.json_object(request) if request.get_data() else {}
    known = {"account_id", "use", "create_opportunity", "skip", "values", "conversion"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} in the conversion body", code="bad_request",
                         hint=f"the body may hold {', '.join(sorted(known))}")
    for key, kind in (("use", dict), ("skip", list), ("values", dict)):
        if key in body and not isinstance(body[key], kind):
            raise BadRequest(f"{key} must be {'an object' if kind is dict else 'a list'}", code="bad_request")
    if "create_opportunity" in body and not isinstance(body["create_opportunity"], bool):
        raise BadRequest("create_opportunity must be true or false", code="bad_request")
    return body


@bp.post("/records/<entity>/<rid>/convert")
def convert_record(entity: str, rid: str) -> Response:
    """Convert the record; 201 with the source after it and the records made (or reused)."""
    source = record_id(rid)
    body = _body()
    with gateway.unit(runtime(), g.principal) as uow:
        gateway.entity(uow, entity)
        conv = pick(uow.workspace, entity, body.get("conversion"))
        use = dict(body.get("use") or {})
        if body.get("account_id") is not None:
            use[conv.reuse or "account"] = body["account_id"]
        skip = set(body.get("skip") or ())
        if body.get("create_opportunity") is False:
            skip.add("opportunity")
        done = convert(uow, entity, source, name=conv.name, use=use, skip=skip, values=body.get("values"))
        out = done.to_dict()
        for ent, rec in done.records.items():
            if rec is not None and (ent, rec["id"]) in uow.notes:
                rec.update(uow.notes[(ent, rec["id"])])
    return json_response(out, 201)


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    body = {"type": "object", "additionalProperties": False, "properties": {
        "account_id": {"type": "integer", "minimum": 1, "description": "an existing account to use"},
        "create_opportunity": {"type": "boolean", "description": "false: no opportunity"},
        "values": {"type": "object", "additionalProperties": {"type": "object"},
                   "description": "entity -> {field: value} overriding the mapping"},
        "use": {"type": "object", "additionalProperties": {"type": "integer"}},
        "skip": {"type": "array", "items": {"type": "string"}},
        "conversion": {"type": "string", "description": "which conversion, when the entity has several"}}}
    done = {"type": "object", "properties": {
        "conversion": {"type": "string"}, "source": apidoc.FREE,
        "records": {"type": "object", "additionalProperties": {"type": ["object", "null"]}},
        "reused": {"type": "array", "items": {"type": "string"}},
        "relinked": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    return {"/records/{entity}/{id}/convert": {"post": apidoc.op(
        "convertRecord", "conversion", "Convert a lead into an account, a contact and an opportunity",
        {"201": apidoc.json_body(done, "The lead, converted, and the records made or reused"),
         **apidoc.errors("400", "401", "403", "404", "409", "422")},
        body=body, params=[apidoc.path_param("entity"), apidoc.path_param("id", {"type": "integer"})])}}
