"""``GET /api/v1/search?q=``: global search across the entities' searchable fields (docs/search.md)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, request

from engine.api import apidoc, gateway, params
from engine.api.views import json_response, runtime
from engine.runtime.search import service

bp = Blueprint("search", __name__)


@bp.get("/search")
def search() -> Response:
    """``q`` the text; ``entity`` (comma-separated) limits the entities; ``limit`` 1-100 (default 20)."""
    q = request.args.get("q")
    limit = params.int_arg(request.args, "limit", service.DEFAULT_LIMIT, 1, service.MAX_LIMIT)
    raw = request.args.get("entity")
    names = tuple(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip())) if raw else None  # each once
    with gateway.unit(runtime(), g.principal, readonly=True) as uow:
        for name in names or ():
            gateway.entity(uow, name)
        found = service.search_page(uow, q or "", entities=names, limit=limit)
    return json_response({"items": [h.to_dict() for h in found.hits], "truncated": found.truncated})


@apidoc.register
def _paths(_ws: Any) -> dict[str, Any]:
    hit = {"type": "object", "required": ["entity", "id", "title", "rank", "matched", "record"], "properties": {
        "entity": {"type": "string"}, "id": {"type": "integer"}, "title": {"type": "string"},
        "rank": {"type": "string", "enum": list(service.RANKS),
                 "description": "exact > prefix > contains > similar (PostgreSQL's typo-tolerant pass)"},
        "matched": {"type": "array", "items": {"type": "string"}, "description": "the fields holding the text"},
        "record": {"type": "object", "description": "id, title and searchable fields as the caller sees them"}}}
    body = {"type": "object", "required": ["items", "truncated"], "properties": {
        "items": {"type": "array", "items": hit},
        "truncated": {"type": "boolean", "description": "more records hold the text than were ranked: the hits "
                      f"are the best of the newest {service.CANDIDATES} (docs/search.md)"}}}
    query = [
        {**apidoc.query_param("q", {"type": "string", "minLength": 1, "maxLength": service.MAX_QUERY},
                              "The text to find (a substring of a searchable field, case-insensitive)"),
         "required": True},
        apidoc.query_param("entity", {"type": "string"}, "Comma-separated entities to search (default: all)"),
        apidoc.query_param("limit", {"type": "integer", "minimum": 1, "maximum": service.MAX_LIMIT,
                                     "default": service.DEFAULT_LIMIT}, "How many hits"),
    ]
    return {"/search": {"get": apidoc.op(
        "search", "search", "Records whose searchable fields contain the text, best first, as the caller may see them",
        {"200": apidoc.json_body(body, "Hits, best first"), **apidoc.errors("400", "401", "403", "404")},
        params=query)}}
